"""The meta table in SQLite: the bot's own bookkeeping, key -> value."""

from __future__ import annotations

from storage.sqlite.database import Repository

_UPSERT_META = """
    INSERT INTO meta (key, value) VALUES (?, ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""


class SQLiteMeta(Repository):
    async def get_meta(self, key: str) -> str | None:
        async with self._lock, self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else row[0]

    async def set_meta(self, key: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(_UPSERT_META, (key, value))
