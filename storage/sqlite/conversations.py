"""/chat's conversations in SQLite: turns per (channel, owner), an exchange per transaction."""

from __future__ import annotations

import time

from storage.sqlite.database import Repository
from storage.types import ConversationKey, ConversationTurn


class SQLiteConversations(Repository):
    async def recent_turns(
        self, key: ConversationKey, *, since: float | None = None, limit: int = 40
    ) -> list[ConversationTurn]:
        async with self._lock:
            cursor = await self._db.execute(
                "SELECT role, text, author, asker_id, created_at FROM conversation_turns"
                " WHERE channel_id = ? AND owner_id = ? AND created_at >= ? ORDER BY id DESC LIMIT ?",
                (key.channel_id, key.owner_id, since if since is not None else 0.0, limit),
            )
            rows = await cursor.fetchall()
        return [
            ConversationTurn(role, text, author, asker_id, created)
            for role, text, author, asker_id, created in reversed(list(rows))
        ]

    async def add_exchange(
        self, key: ConversationKey, *, asker_id: int, author: str, message: str, reply: str
    ) -> int:
        now = time.time()
        insert = (
            "INSERT INTO conversation_turns (channel_id, owner_id, asker_id, role, author, text, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        async with self._transaction() as db:
            await db.execute(insert, (key.channel_id, key.owner_id, asker_id, "user", author, message, now))
            cursor = await db.execute(
                insert, (key.channel_id, key.owner_id, asker_id, "assistant", None, reply, now)
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    async def revise_turn(self, turn_id: int, text: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE conversation_turns SET text = ? WHERE id = ? AND role = 'assistant'", (text, turn_id)
            )
            return cursor.rowcount > 0

    async def prune_turns(self, *, before: float) -> int:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM conversation_turns WHERE created_at < ?", (before,))
            return cursor.rowcount

    async def forget(self, channel_id: int, *, asker_id: int | None = None) -> int:
        async with self._transaction() as db:
            if asker_id is None:
                cursor = await db.execute(
                    "DELETE FROM conversation_turns WHERE channel_id = ?", (channel_id,)
                )
            else:
                cursor = await db.execute(
                    "DELETE FROM conversation_turns WHERE channel_id = ? AND asker_id = ?",
                    (channel_id, asker_id),
                )
            return cursor.rowcount
