"""/chat's conversations: turns per (channel, owner), an exchange per transaction."""

from __future__ import annotations

import time

from storage.repositories.base import Repository
from storage.types import ConversationKey, ConversationTurn

# The namespace of the lock a channel's writers take (see add_exchange).
_CONVERSATION_LOCK = 2
_INSERT = (
    "INSERT INTO conversation_turns (channel_id, owner_id, asker_id, role, author, text, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
)


class Conversations(Repository):
    async def recent_turns(
        self, key: ConversationKey, *, since: float | None = None, limit: int = 40
    ) -> list[ConversationTurn]:
        async with self._db.reading() as db:
            rows = await db.fetch(
                "SELECT role, text, author, asker_id, created_at FROM conversation_turns"
                " WHERE channel_id = $1 AND owner_id = $2 AND created_at >= $3 ORDER BY id DESC LIMIT $4",
                key.channel_id,
                key.owner_id,
                since if since is not None else 0.0,
                limit,
            )
        return [
            ConversationTurn(role, text, author, asker_id, created)
            for role, text, author, asker_id, created in reversed(rows)
        ]

    async def add_exchange(
        self, key: ConversationKey, *, asker_id: int, author: str, message: str, reply: str
    ) -> int:
        now = time.time()
        async with self._db.transaction() as tx:
            # Turns are read back in id order. Where ids come from a sequence that writers in
            # other processes draw from at the same time, two exchanges in one thread could
            # interleave (message, message, reply, reply); this lock, held until commit, gives
            # each exchange in a channel ids after the last one's.
            await tx.lock(_CONVERSATION_LOCK, key.channel_id)
            await tx.fetchval(_INSERT, key.channel_id, key.owner_id, asker_id, "user", author, message, now)
            turn_id = await tx.fetchval(
                _INSERT, key.channel_id, key.owner_id, asker_id, "assistant", None, reply, now
            )
        return int(turn_id)

    async def revise_turn(self, turn_id: int, text: str) -> bool:
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE conversation_turns SET text = $1 WHERE id = $2 AND role = 'assistant'", text, turn_id
            )
        return changed > 0

    async def prune_turns(self, *, before: float) -> int:
        async with self._db.transaction() as tx:
            return await tx.execute("DELETE FROM conversation_turns WHERE created_at < $1", before)

    async def forget(self, channel_id: int, *, asker_id: int | None = None) -> int:
        async with self._db.transaction() as tx:
            if asker_id is None:
                return await tx.execute("DELETE FROM conversation_turns WHERE channel_id = $1", channel_id)
            return await tx.execute(
                "DELETE FROM conversation_turns WHERE channel_id = $1 AND asker_id = $2", channel_id, asker_id
            )
