"""Generated replies in SQLite: one row per reply, replaced whole on each save."""

from __future__ import annotations

import time
from dataclasses import astuple

from storage.sqlite.database import Repository
from storage.types import ReplyRecord

# In ReplyRecord's field order, so a row is a record and a record a row.
COLUMNS = (
    "id, channel_id, requester_id, kind, request, header, text, generated_tokens, finish_reason,"
    " message_id, turn_id, created_at, updated_at"
)
CHANGING = (
    "message_id", "request", "header", "text", "generated_tokens", "finish_reason", "turn_id", "updated_at"
)  # fmt: skip


class SQLiteReplies(Repository):
    async def save_reply(self, reply: ReplyRecord) -> None:
        now = time.time()
        row = (*astuple(reply)[:-2], now, now)
        updates = ", ".join(f"{column} = excluded.{column}" for column in CHANGING)
        async with self._transaction() as db:
            await db.execute(
                f"INSERT INTO replies ({COLUMNS}) VALUES ({', '.join('?' * len(row))})"
                f" ON CONFLICT (id) DO UPDATE SET {updates}",
                row,
            )

    async def reply(self, reply_id: int) -> ReplyRecord | None:
        return await self._one("id", reply_id)

    async def reply_by_message(self, message_id: int) -> ReplyRecord | None:
        return await self._one("message_id", message_id)

    async def prune_replies(self, *, before: float) -> int:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM replies WHERE updated_at < ?", (before,))
            return cursor.rowcount

    async def _one(self, column: str, value: int) -> ReplyRecord | None:
        async with self._lock:
            cursor = await self._db.execute(f"SELECT {COLUMNS} FROM replies WHERE {column} = ?", (value,))
            row = await cursor.fetchone()
        return None if row is None else ReplyRecord(*row)
