"""Generated replies in Postgres: one row per reply, replaced whole on each save."""

from __future__ import annotations

import time
from dataclasses import astuple

from storage.postgres.database import Repository, affected
from storage.sqlite.replies import CHANGING, COLUMNS
from storage.types import ReplyRecord

_MARKS = ", ".join(f"${i}" for i in range(1, len(COLUMNS.split(",")) + 1))
_UPSERT = (
    f"INSERT INTO replies ({COLUMNS}) VALUES ({_MARKS})"
    f" ON CONFLICT (id) DO UPDATE SET {', '.join(f'{column} = excluded.{column}' for column in CHANGING)}"
)


class PostgresReplies(Repository):
    async def save_reply(self, reply: ReplyRecord) -> None:
        now = time.time()
        row = (*astuple(reply)[:-2], now, now)  # created_at is kept on update: not in CHANGING
        async with self._transaction() as db:
            await db.execute(_UPSERT, *row)

    async def reply(self, reply_id: int) -> ReplyRecord | None:
        return await self._one("id", reply_id)

    async def reply_by_message(self, message_id: int) -> ReplyRecord | None:
        return await self._one("message_id", message_id)

    async def prune_replies(self, *, before: float) -> int:
        async with self._transaction() as db:
            return affected(await db.execute("DELETE FROM replies WHERE updated_at < $1", before))

    async def _one(self, column: str, value: int) -> ReplyRecord | None:
        row = await self._pool.fetchrow(f"SELECT {COLUMNS} FROM replies WHERE {column} = $1", value)
        return None if row is None else ReplyRecord(*row)
