"""Generated replies: one row per reply, replaced whole on each save; and the replies being
written, each with what edits it should its process die before it ends."""

from __future__ import annotations

import time
from dataclasses import astuple

from storage.repositories.base import Repository, marks
from storage.types import ReplyRecord, UnfinishedReply

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
# In UnfinishedReply's field order; a reply begun again (Regenerate, Continue) replaces its note.
_UNFINISHED_KEY, *_UNFINISHED_REST = (
    "reply_id", "owner", "guild_id", "channel_id", "began_at", "shown", "application_id",
    "interaction_token", "message_id",
)  # fmt: skip
UNFINISHED = ", ".join((_UNFINISHED_KEY, *_UNFINISHED_REST))
_BEGIN = (
    f"INSERT INTO unfinished_replies ({UNFINISHED}) VALUES ({marks(1 + len(_UNFINISHED_REST))})"
    f" ON CONFLICT ({_UNFINISHED_KEY}) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _UNFINISHED_REST)}"
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

    async def begin_writing(self, unfinished: UnfinishedReply) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(_BEGIN, *astuple(unfinished))

    async def end_writing(self, reply_id: int) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM unfinished_replies WHERE reply_id = $1", reply_id)

    async def unfinished(self, *, began_before: float, owner: str) -> list[UnfinishedReply]:
        async with self._db.reading() as db:
            rows = await db.fetch(
                f"SELECT {UNFINISHED} FROM unfinished_replies WHERE began_at < $1 AND owner <> $2"
                " ORDER BY began_at, reply_id",
                began_before,
                owner,
            )
        return [UnfinishedReply(*row) for row in rows]

    async def take_over(self, reply_id: int, *, from_owner: str, owner: str) -> bool:
        async with self._db.transaction() as tx:
            taken = await tx.execute(
                "UPDATE unfinished_replies SET owner = $1 WHERE reply_id = $2 AND owner = $3",
                owner,
                reply_id,
                from_owner,
            )
        return taken == 1

    async def _one(self, column: str, value: int) -> ReplyRecord | None:
        async with self._db.reading() as db:
            row = await db.fetchrow(f"SELECT {COLUMNS} FROM replies WHERE {column} = $1", value)
        return None if row is None else ReplyRecord(*row)
