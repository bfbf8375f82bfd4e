"""The meta table: the bot's own bookkeeping, key -> value."""

from __future__ import annotations

from storage.repositories.base import Repository


class Meta(Repository):
    async def get_meta(self, key: str) -> str | None:
        async with self._db.reading() as db:
            value = await db.fetchval("SELECT value FROM meta WHERE key = $1", key)
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                key,
                value,
            )
