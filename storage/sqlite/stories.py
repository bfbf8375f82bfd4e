"""Story mode in SQLite: stories, their players, their turns (numbered inside the write)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import aiosqlite

from storage.sqlite.database import Repository, _audit
from storage.types import JoinResult, NewTurn, Story, StoryPlayer, StorySkip, StoryTurn, TurnMode

_STORY_COLUMNS = "id, guild_id, channel_id, starter_id, premise, turn_mode, max_players, status, created_at, turn_timeout_s, turn_tokens"


class SQLiteStories(Repository):
    async def create_story(
        self,
        *,
        guild_id: int | None,
        channel_id: int,
        starter_id: int,
        starter_name: str,
        premise: str,
        turn_mode: TurnMode,
        max_players: int,
        turn_tokens: int = 120,
    ) -> Story | None:
        """Open a story with its starter as the first player; None if one is already open here."""
        now = time.time()
        async with self._transaction() as db:
            try:
                cursor = await db.execute(
                    "INSERT INTO stories (guild_id, channel_id, starter_id, premise, turn_mode, max_players,"
                    " created_at, turn_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (guild_id, channel_id, starter_id, premise, turn_mode, max_players, now, turn_tokens),
                )
            except sqlite3.IntegrityError:
                return None  # the partial unique index: a story is open in this channel
            story_id = cursor.lastrowid
            await db.execute(
                "INSERT INTO story_players (story_id, user_id, name, joined_at) VALUES (?, ?, ?, ?)",
                (story_id, starter_id, starter_name, now),
            )
            return await _read_story(db, "id = ?", story_id)

    async def discard_story(self, story_id: int) -> None:
        """Delete a story that never got going (its opening failed), so the channel is free again."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM stories WHERE id = ?", (story_id,))

    async def open_story(self, channel_id: int) -> Story | None:
        async with self._lock:
            return await _read_story(self._db, "channel_id = ? AND status = 'open'", channel_id)

    async def story(self, story_id: int) -> Story | None:
        async with self._lock:
            return await _read_story(self._db, "id = ?", story_id)

    async def join_story(self, story_id: int, user_id: int, name: str) -> JoinResult:
        """Add a player, unless the story is closed, full, or has them already."""
        async with self._transaction() as db:
            story = await _read_story(db, "id = ?", story_id)
            if story is None or story.status != "open":
                return "closed"
            players = await _read_players(db, story_id)
            if any(p.user_id == user_id for p in players):
                return "already"
            if len(players) >= story.max_players:
                return "full"
            await db.execute(
                "INSERT INTO story_players (story_id, user_id, name, joined_at) VALUES (?, ?, ?, ?)",
                (story_id, user_id, name, time.time()),
            )
        return "joined"

    async def story_players(self, story_id: int) -> list[StoryPlayer]:
        """Players in the order they joined (the round-robin order)."""
        async with self._lock:
            return await _read_players(self._db, story_id)

    async def story_turns(self, story_id: int) -> list[StoryTurn]:
        """The story so far, in order, without undone turns."""
        async with self._lock:
            return await _read_turns(self._db, story_id)

    async def add_story_turns(self, story_id: int, turns: Sequence[NewTurn]) -> list[StoryTurn]:
        """Append turns (a contribution and the bot's continuation) together, numbered in order.

        Returns [] if the story is no longer open: nothing is added to an ended story.
        """
        now = time.time()
        async with self._transaction() as db:
            story = await _read_story(db, "id = ?", story_id)
            if story is None or story.status != "open":
                return []
            async with db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM story_turns WHERE story_id = ?", (story_id,)
            ) as cursor:
                (last,) = await cursor.fetchone() or (0,)
            added = [
                StoryTurn(last + i, kind, author_id, author_name, text, now)
                for i, (kind, author_id, author_name, text) in enumerate(turns, 1)
            ]
            await db.executemany(
                "INSERT INTO story_turns (story_id, seq, kind, author_id, author_name, text, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(story_id, t.seq, t.kind, t.author_id, t.author_name, t.text, now) for t in added],
            )
        return added

    async def undo_story_turn(self, story_id: int, *, actor_id: int) -> list[StoryTurn]:
        """Undo the last player contribution and everything after it (the bot's continuation)."""
        now = time.time()
        async with self._transaction() as db:
            story = await _read_story(db, "id = ?", story_id)
            turns = await _read_turns(db, story_id)
            last_player = next((t for t in reversed(turns) if t.kind == "player"), None)
            if story is None or story.status != "open" or last_player is None:
                return []
            undone = [t for t in turns if t.seq >= last_player.seq]
            await db.execute(
                "UPDATE story_turns SET undone_by = ?, undone_at = ? "
                "WHERE story_id = ? AND seq >= ? AND undone_at IS NULL",
                (actor_id, now, story_id, last_player.seq),
            )
            detail = f"story #{story_id}: removed {last_player.author_name}'s turn"
            await _audit(db, "channel", story.channel_id, actor_id, "story undo", detail, now)
        return undone

    async def end_story(self, story_id: int, *, actor_id: int) -> bool:
        """Archive an open story; False if it was not open (ended meanwhile)."""
        now = time.time()
        async with self._transaction() as db:
            story = await _read_story(db, "id = ?", story_id)
            if story is None or story.status != "open":
                return False
            await db.execute(
                "UPDATE stories SET status = 'ended', ended_by = ?, ended_at = ? WHERE id = ?",
                (actor_id, now, story_id),
            )
            await _audit(db, "channel", story.channel_id, actor_id, "story end", f"story #{story_id}", now)
        return True

    async def skip_turn(self, story_id: int, skipped_id: int, *, by_id: int | None) -> bool:
        """Record that ``skipped_id``'s turn passed; False if the story is not open."""
        async with self._transaction() as db:
            story = await _read_story(db, "id = ?", story_id)
            if story is None or story.status != "open":
                return False
            await db.execute(
                "INSERT INTO story_skips (story_id, skipped_id, by_id, at) VALUES (?, ?, ?, ?)",
                (story_id, skipped_id, by_id, time.time()),
            )
            if by_id is not None:
                await _audit(
                    db,
                    "channel",
                    story.channel_id,
                    by_id,
                    "story skip",
                    f"#{story_id}: {skipped_id}",
                    time.time(),
                )
            return True

    async def story_skips(self, story_id: int) -> list[StorySkip]:
        async with self._lock:
            async with self._db.execute(
                "SELECT skipped_id, by_id, at FROM story_skips WHERE story_id = ? ORDER BY at, rowid",
                (story_id,),
            ) as cursor:
                return [StorySkip(*row) for row in await cursor.fetchall()]

    async def set_turn_timeout(self, story_id: int, seconds: float, *, actor_id: int) -> bool:
        """Set the turn timer (0: none); False if the story is not open."""
        async with self._transaction() as db:
            story = await _read_story(db, "id = ?", story_id)
            if story is None or story.status != "open":
                return False
            await db.execute("UPDATE stories SET turn_timeout_s = ? WHERE id = ?", (seconds, story_id))
            await _audit(
                db,
                "channel",
                story.channel_id,
                actor_id,
                "story timer",
                f"#{story_id}: {seconds:g} s",
                time.time(),
            )
            return True

    async def timed_stories(self) -> list[Story]:
        """Open round-robin stories with a turn timer."""
        async with self._lock:
            async with self._db.execute(
                f"SELECT {_STORY_COLUMNS} FROM stories WHERE status = 'open' AND turn_mode = 'round-robin'"
                " AND turn_timeout_s > 0 ORDER BY id"
            ) as cursor:
                return [Story(*row) for row in await cursor.fetchall()]


async def _read_story(db: aiosqlite.Connection, where: str, *params: object) -> Story | None:
    async with db.execute(f"SELECT {_STORY_COLUMNS} FROM stories WHERE {where}", params) as cursor:
        row = await cursor.fetchone()
    return None if row is None else Story(*row)


async def _read_players(db: aiosqlite.Connection, story_id: int) -> list[StoryPlayer]:
    async with db.execute(
        "SELECT user_id, name, joined_at FROM story_players WHERE story_id = ? ORDER BY joined_at, rowid",
        (story_id,),
    ) as cursor:
        return [StoryPlayer(*row) for row in await cursor.fetchall()]


async def _read_turns(db: aiosqlite.Connection, story_id: int) -> list[StoryTurn]:
    async with db.execute(
        "SELECT seq, kind, author_id, author_name, text, created_at FROM story_turns "
        "WHERE story_id = ? AND undone_at IS NULL ORDER BY seq",
        (story_id,),
    ) as cursor:
        return [StoryTurn(*row) for row in await cursor.fetchall()]
