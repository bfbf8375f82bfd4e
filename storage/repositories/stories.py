"""Story mode: stories, their players, their turns (numbered inside the write).

A write that reads the story first (is it open? how many players? the last turn's number?) reads
it ``for_update``: writes from other processes to the same story take turns.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from storage.driver import Connection
from storage.repositories.base import Repository, audit
from storage.types import (
    CastMember,
    CastTurns,
    JoinResult,
    NewTurn,
    Story,
    StoryPlayer,
    StorySkip,
    StoryTurn,
    TurnMode,
)

# In Story's field order.
_STORY_COLUMNS = (
    "id, guild_id, channel_id, starter_id, premise, turn_mode, max_players, status, created_at,"
    " turn_timeout_s, turn_tokens, cast_turns, narrator"
)


def _story(row: Sequence[Any]) -> Story:
    """A story row (``_STORY_COLUMNS``), its narrator flag a bool on either database."""
    story = Story(*row)
    return dataclasses.replace(story, narrator=bool(story.narrator))


class Stories(Repository):
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
        cast_turns: CastTurns = "none",
        narrator: bool = False,
        cast: Sequence[tuple[int, str]] = (),
    ) -> Story | None:
        """Open a story with its starter as the first player and its cast (character id and name,
        in speaking order); None if one is already open here."""
        now = time.time()
        async with self._db.transaction() as tx:
            # The partial unique index allows one open story per channel; a second is not an error.
            story_id = await tx.fetchval(
                "INSERT INTO stories (guild_id, channel_id, starter_id, premise, turn_mode, max_players,"
                " created_at, turn_tokens, cast_turns, narrator) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                " ON CONFLICT (channel_id) WHERE status = 'open' DO NOTHING RETURNING id",
                guild_id,
                channel_id,
                starter_id,
                premise,
                turn_mode,
                max_players,
                now,
                turn_tokens,
                cast_turns,
                int(narrator),
            )
            if story_id is None:
                return None
            await _add_player(tx, story_id, starter_id, starter_name, now)
            await tx.executemany(
                "INSERT INTO story_cast (story_id, position, character_id, name) VALUES ($1, $2, $3, $4)",
                [(story_id, i, character_id, name) for i, (character_id, name) in enumerate(cast, 1)],
            )
            return await _read_story(tx, story_id)

    async def discard_story(self, story_id: int) -> None:
        """Delete a story that never got going (its opening failed), so the channel is free again."""
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM stories WHERE id = $1", story_id)

    async def open_story(self, channel_id: int) -> Story | None:
        async with self._db.reading() as db:
            row = await db.fetchrow(
                f"SELECT {_STORY_COLUMNS} FROM stories WHERE channel_id = $1 AND status = 'open'", channel_id
            )
        return None if row is None else _story(row)

    async def story(self, story_id: int) -> Story | None:
        async with self._db.reading() as db:
            return await _read_story(db, story_id)

    async def join_story(self, story_id: int, user_id: int, name: str) -> JoinResult:
        """Add a player, unless the story is closed, full, or has them already."""
        async with self._db.transaction() as tx:
            story = await _open_story_for_update(tx, story_id)
            if story is None:
                return "closed"
            players = await _read_players(tx, story_id)
            if any(p.user_id == user_id for p in players):
                return "already"
            if len(players) >= story.max_players:
                return "full"
            await _add_player(tx, story_id, user_id, name, time.time())
        return "joined"

    async def story_players(self, story_id: int) -> list[StoryPlayer]:
        """Players in the order they joined (the round-robin order)."""
        async with self._db.reading() as db:
            return await _read_players(db, story_id)

    async def story_turns(self, story_id: int) -> list[StoryTurn]:
        """The story so far, in order, without undone turns."""
        async with self._db.reading() as db:
            return await _read_turns(db, story_id)

    async def add_story_turns(self, story_id: int, turns: Sequence[NewTurn]) -> list[StoryTurn]:
        """Append turns (a contribution and the bot's continuation) together, numbered in order.

        Returns [] if the story is no longer open: nothing is added to an ended story.
        """
        now = time.time()
        async with self._db.transaction() as tx:
            if await _open_story_for_update(tx, story_id) is None:
                return []
            last = await tx.fetchval(
                "SELECT COALESCE(MAX(seq), 0) FROM story_turns WHERE story_id = $1", story_id
            )
            added = [_new_turn(last + i, turn, now) for i, turn in enumerate(turns, 1)]
            await tx.executemany(
                "INSERT INTO story_turns (story_id, seq, kind, author_id, author_name, text, created_at,"
                " character_id, message_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                [
                    (
                        story_id,
                        t.seq,
                        t.kind,
                        t.author_id,
                        t.author_name,
                        t.text,
                        now,
                        t.character_id,
                        t.message_id,
                    )
                    for t in added
                ],
            )
        return added

    async def undo_story_turn(self, story_id: int, *, actor_id: int) -> list[StoryTurn]:
        """Undo the last player contribution and everything after it (the bot's continuation)."""
        now = time.time()
        async with self._db.transaction() as tx:
            story = await _open_story_for_update(tx, story_id)
            turns = await _read_turns(tx, story_id)
            last_player = next((t for t in reversed(turns) if t.kind == "player"), None)
            if story is None or last_player is None:
                return []
            undone = [t for t in turns if t.seq >= last_player.seq]
            await tx.execute(
                "UPDATE story_turns SET undone_by = $1, undone_at = $2"
                " WHERE story_id = $3 AND seq >= $4 AND undone_at IS NULL",
                actor_id,
                now,
                story_id,
                last_player.seq,
            )
            detail = f"story #{story_id}: removed {last_player.author_name}'s turn"
            await audit(tx, "channel", story.channel_id, actor_id, "story undo", detail, now)
        return undone

    async def remove_story_line(self, story_id: int, seq: int, *, actor_id: int) -> StoryTurn | None:
        """Take one line out of an open story (kept, marked, for the record) and log it; None if the
        story is not open or has no such line."""
        now = time.time()
        async with self._db.transaction() as tx:
            story = await _open_story_for_update(tx, story_id)
            line = next((t for t in await _read_turns(tx, story_id) if t.seq == seq), None)
            if story is None or line is None:
                return None
            await tx.execute(
                "UPDATE story_turns SET undone_by = $1, undone_at = $2 WHERE story_id = $3 AND seq = $4",
                actor_id,
                now,
                story_id,
                seq,
            )
            detail = f"story #{story_id}: removed line {seq} ({line.author_name})"
            await audit(tx, "channel", story.channel_id, actor_id, "story remove", detail, now)
        return line

    async def story_cast(self, story_id: int) -> list[CastMember]:
        """The story's cast in speaking order, those who left included (``left_at`` set)."""
        async with self._db.reading() as db:
            rows = await db.fetch(
                "SELECT position, character_id, name, left_at FROM story_cast WHERE story_id = $1"
                " ORDER BY position",
                story_id,
            )
        return [CastMember(*row) for row in rows]

    async def leave_cast(self, story_id: int, character_id: int) -> bool:
        """Mark a cast member as gone (its character was deleted); False if it had left already."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE story_cast SET left_at = $1 WHERE story_id = $2 AND character_id = $3"
                " AND left_at IS NULL",
                time.time(),
                story_id,
                character_id,
            )
        return changed > 0

    async def end_story(self, story_id: int, *, actor_id: int) -> bool:
        """Archive an open story; False if it was not open (ended meanwhile)."""
        now = time.time()
        return await self._if_open(
            story_id,
            (actor_id, "story end", f"story #{story_id}"),
            "UPDATE stories SET status = 'ended', ended_by = $1, ended_at = $2 WHERE id = $3",
            actor_id,
            now,
            story_id,
        )

    async def skip_turn(self, story_id: int, skipped_id: int, *, by_id: int | None) -> bool:
        """Record that ``skipped_id``'s turn passed; False if the story is not open."""
        return await self._if_open(
            story_id,
            None if by_id is None else (by_id, "story skip", f"#{story_id}: {skipped_id}"),
            "INSERT INTO story_skips (story_id, skipped_id, by_id, at) VALUES ($1, $2, $3, $4)",
            story_id,
            skipped_id,
            by_id,
            time.time(),
        )

    async def story_skips(self, story_id: int) -> list[StorySkip]:
        async with self._db.reading() as db:
            rows = await db.fetch(
                "SELECT skipped_id, by_id, at FROM story_skips WHERE story_id = $1 ORDER BY at, rowid",
                story_id,
            )
        return [StorySkip(*row) for row in rows]

    async def set_turn_timeout(self, story_id: int, seconds: float, *, actor_id: int) -> bool:
        """Set the turn timer (0: none); False if the story is not open."""
        return await self._if_open(
            story_id,
            (actor_id, "story timer", f"#{story_id}: {seconds:g} s"),
            "UPDATE stories SET turn_timeout_s = $1 WHERE id = $2",
            seconds,
            story_id,
        )

    async def timed_stories(self) -> list[Story]:
        """Open round-robin stories with a turn timer."""
        async with self._db.reading() as db:
            rows = await db.fetch(
                f"SELECT {_STORY_COLUMNS} FROM stories WHERE status = 'open' AND turn_mode = 'round-robin'"
                " AND turn_timeout_s > 0 ORDER BY id"
            )
        return [_story(row) for row in rows]

    async def _if_open(
        self, story_id: int, logged: tuple[int, str, str] | None, sql: str, *args: object
    ) -> bool:
        """Run ``sql`` if the story is open (its row locked meanwhile), and log it as ``logged``
        (who, action, detail) in the same transaction; False if the story is not open."""
        async with self._db.transaction() as tx:
            story = await _open_story_for_update(tx, story_id)
            if story is None:
                return False
            await tx.execute(sql, *args)
            if logged is not None:
                await audit(tx, "channel", story.channel_id, *logged, time.time())
            return True


async def _read_story(db: Connection, story_id: int, *, suffix: str = "") -> Story | None:
    row = await db.fetchrow(f"SELECT {_STORY_COLUMNS} FROM stories WHERE id = $1{suffix}", story_id)
    return None if row is None else _story(row)


async def _open_story_for_update(tx: Connection, story_id: int) -> Story | None:
    """The story if it is open, its row locked until the transaction ends; else None."""
    story = await _read_story(tx, story_id, suffix=tx.for_update)
    return story if story is not None and story.status == "open" else None


async def _add_player(tx: Connection, story_id: int, user_id: int, name: str, at: float) -> None:
    await tx.execute(
        "INSERT INTO story_players (story_id, user_id, name, joined_at) VALUES ($1, $2, $3, $4)",
        story_id,
        user_id,
        name,
        at,
    )


async def _read_players(db: Connection, story_id: int) -> list[StoryPlayer]:
    rows = await db.fetch(
        "SELECT user_id, name, joined_at FROM story_players WHERE story_id = $1 ORDER BY joined_at, rowid",
        story_id,
    )
    return [StoryPlayer(*row) for row in rows]


async def _read_turns(db: Connection, story_id: int) -> list[StoryTurn]:
    rows = await db.fetch(
        "SELECT seq, kind, author_id, author_name, text, created_at, character_id, message_id FROM story_turns"
        " WHERE story_id = $1 AND undone_at IS NULL ORDER BY seq",
        story_id,
    )
    return [StoryTurn(*row) for row in rows]


def _new_turn(seq: int, turn: NewTurn, at: float) -> StoryTurn:
    kind, author_id, author_name, text, *cast = turn
    character_id, message_id = (*cast, None, None)[:2]
    return StoryTurn(seq, kind, author_id, author_name, text, at, character_id, message_id)
