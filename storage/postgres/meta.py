"""The meta table in Postgres: the bot's own bookkeeping, key -> value."""

from __future__ import annotations

from storage.postgres.database import Repository

_UPSERT_META = """
    INSERT INTO meta (key, value) VALUES ($1, $2)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""


class PostgresMeta(Repository):
    async def get_meta(self, key: str) -> str | None:
        value = await self._pool.fetchval("SELECT value FROM meta WHERE key = $1", key)
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(_UPSERT_META, key, value)
