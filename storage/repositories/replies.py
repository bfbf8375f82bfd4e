"""Generated replies: one row per reply, replaced whole on each save."""

from __future__ import annotations

import time
from dataclasses import astuple

from storage.repositories.base import Repository, marks
from storage.types import ReplyRecord

# In ReplyRecord's field order, so a row is a record and a record a row.
COLUMNS = (
    "id, channel_id, requester_id, kind, request, header, text, generated_tokens, finish_reason,"
    " message_id, turn_id, created_at, updated_at"
)
# What a save changes; created_at is kept.
CHANGING = (
    "message_id", "request", "header", "text", "generated_tokens", "finish_reason", "turn_id", "updated_at"
)  # fmt: skip
_UPSERT = (
    f"INSERT INTO replies ({COLUMNS}) VALUES ({marks(len(COLUMNS.split(',')))})"
    f" ON CONFLICT (id) DO UPDATE SET {', '.join(f'{column} = excluded.{column}' for column in CHANGING)}"
)


class Replies(Repository):
    async def save_reply(self, reply: ReplyRecord) -> None:
        now = time.time()
        row = (*astuple(reply)[:-2], now, now)
        async with self._db.transaction() as tx:
            await tx.execute(_UPSERT, *row)

    async def reply(self, reply_id: int) -> ReplyRecord | None:
        return await self._one("id", reply_id)

    async def reply_by_message(self, message_id: int) -> ReplyRecord | None:
        return await self._one("message_id", message_id)

    async def prune_replies(self, *, before: float) -> int:
        async with self._db.transaction() as tx:
            return await tx.execute("DELETE FROM replies WHERE updated_at < $1", before)

    async def _one(self, column: str, value: int) -> ReplyRecord | None:
        async with self._db.reading() as db:
            row = await db.fetchrow(f"SELECT {COLUMNS} FROM replies WHERE {column} = $1", value)
        return None if row is None else ReplyRecord(*row)
