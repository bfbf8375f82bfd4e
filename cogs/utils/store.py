"""The bot's SQLite store: schema migrations, scoped channel settings, a meta table, and
moderation (channel rules, blocked phrases, an audit log) and story mode (stories, players, turns).

One aiosqlite connection per ``Store``; an asyncio lock keeps its transactions from
interleaving, and ``BEGIN IMMEDIATE`` plus the busy timeout serialise writers across
processes. Settings are stored one row per key, so changes to different keys never
overwrite each other and the same key is last-writer-wins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import aiosqlite

from cogs.utils.moderation import (
    MAX_COOLDOWN_S,
    MAX_INFLIGHT,
    MAX_PHRASES,
    Blocklist,
    ChannelRules,
    normalize_phrase,
)
from cogs.utils.replies import UserFacingError
from cogs.utils.settings import SETTING_KEYS, ChannelSettings, check_setting_key, validate_setting
from model_service.errors import ValidationError
from model_service.types import MAX_NEW_TOKENS_LIMIT

log = logging.getLogger(__name__)

Scope = Literal["guild", "channel"]  # a thread is a 'channel' with its own id
Source = Literal["thread", "channel", "guild", "default"]
BUSY_TIMEOUT_MS = 5000

# Append only: migration N (1-based) takes the schema from version N-1 to N. Each runs in
# one transaction together with its version bump.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE settings (
            scope TEXT NOT NULL CHECK (scope IN ('guild', 'channel')),
            scope_id INTEGER NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,  -- JSON
            updated_by INTEGER NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (scope, scope_id, key)
        )""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    # 2: moderation. Rules per channel (a thread is a channel with its own id), blocked
    # phrases, and an audit log of moderator actions and settings changes.
    (
        """CREATE TABLE channel_moderation (
            channel_id INTEGER PRIMARY KEY,
            locked INTEGER NOT NULL DEFAULT 0 CHECK (locked IN (0, 1)),
            cooldown_s INTEGER NOT NULL DEFAULT 0 CHECK (cooldown_s >= 0),
            max_inflight INTEGER NOT NULL DEFAULT 0 CHECK (max_inflight >= 0),
            updated_by INTEGER NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE blocked_phrases (
            channel_id INTEGER NOT NULL,
            phrase TEXT NOT NULL,  -- normalised: lower-case, single spaces
            added_by INTEGER NOT NULL,
            added_at REAL NOT NULL,
            PRIMARY KEY (channel_id, phrase)
        )""",
        """CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            scope TEXT NOT NULL CHECK (scope IN ('guild', 'channel')),
            scope_id INTEGER NOT NULL,
            actor_id INTEGER NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL,
            at REAL NOT NULL
        )""",
        "CREATE INDEX audit_log_by_scope ON audit_log (scope, scope_id, id)",
    ),
    # 3: story mode. One open story per channel; turns are numbered per story (seq) inside
    # the write transaction, so concurrent additions are ordered and none is lost. Undone
    # turns are kept, marked, for the record.
    (
        """CREATE TABLE stories (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id INTEGER,
            channel_id INTEGER NOT NULL,
            starter_id INTEGER NOT NULL,
            premise TEXT NOT NULL,
            turn_mode TEXT NOT NULL CHECK (turn_mode IN ('free', 'round-robin')),
            max_players INTEGER NOT NULL CHECK (max_players >= 1),
            status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'ended')),
            created_at REAL NOT NULL,
            ended_by INTEGER,
            ended_at REAL
        )""",
        "CREATE UNIQUE INDEX one_open_story_per_channel ON stories (channel_id) WHERE status = 'open'",
        """CREATE TABLE story_players (
            story_id INTEGER NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            joined_at REAL NOT NULL,
            PRIMARY KEY (story_id, user_id)
        )""",
        """CREATE TABLE story_turns (
            story_id INTEGER NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('opening', 'player', 'bot')),
            author_id INTEGER,  -- NULL: the bot
            author_name TEXT NOT NULL,
            text TEXT NOT NULL,
            created_at REAL NOT NULL,
            undone_by INTEGER,
            undone_at REAL,
            PRIMARY KEY (story_id, seq)
        )""",
    ),
]

_UPSERT_SETTING = """
    INSERT INTO settings (scope, scope_id, key, value, updated_by, updated_at)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (scope, scope_id, key) DO UPDATE SET
        value = excluded.value, updated_by = excluded.updated_by, updated_at = excluded.updated_at
"""
_UPSERT_META = """
    INSERT INTO meta (key, value) VALUES (?, ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""


class SchemaError(RuntimeError):
    """The database file was written by a newer Transcord than this one."""


class Store:
    """Open with ``await Store.open(path, defaults)``; close with ``close()`` or ``async with``."""

    def __init__(self, db: aiosqlite.Connection, defaults: ChannelSettings) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self.defaults = defaults

    @classmethod
    async def open(cls, path: str | os.PathLike[str], defaults: ChannelSettings) -> Store:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        db = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            await _configure(db)
            await _migrate(db, path)
        except BaseException:
            await db.close()
            raise
        return cls(db, defaults)

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- settings -------------------------------------------------------------------

    async def effective(
        self, guild_id: int | None, channel_id: int, parent_id: int | None = None
    ) -> ChannelSettings:
        """What applies in a channel or thread: per key, the most specific scope wins."""
        layers = await self._layers(guild_id, channel_id, parent_id)
        merged: dict[str, object] = {}
        for _, values in layers:
            merged.update(values)
        return self.defaults.merged(merged)

    async def explain(
        self, guild_id: int | None, channel_id: int, parent_id: int | None = None
    ) -> dict[str, tuple[object, Source]]:
        """Each effective value with the scope it comes from, for ``/settings show``."""
        out: dict[str, tuple[object, Source]] = {
            key: (getattr(self.defaults, key), "default") for key in SETTING_KEYS
        }
        for source, values in await self._layers(guild_id, channel_id, parent_id):
            out.update({key: (value, source) for key, value in values.items()})
        return out

    async def scope_values(self, scope: Scope, scope_id: int) -> dict[str, object]:
        """What this scope sets explicitly (not inherited), in declared key order."""
        _check_scope(scope)
        return (await self._rows([(scope, scope_id)])).get((scope, scope_id), {})

    async def set_values(
        self,
        scope: Scope,
        scope_id: int,
        values: Mapping[str, object],
        *,
        actor_id: int,
        max_new_tokens_cap: int,
        model_names: Collection[str] | None,
    ) -> dict[str, object]:
        """Validate every value, then write them all in one transaction; returns what was stored."""
        _check_scope(scope)
        clean = {
            key: validate_setting(key, value, max_new_tokens_cap=max_new_tokens_cap, model_names=model_names)
            for key, value in values.items()
        }
        if not clean:
            return {}
        now = time.time()
        rows = [(scope, scope_id, key, _encode(v), actor_id, now) for key, v in clean.items()]
        detail = ", ".join(f"{key}={_brief(value)}" for key, value in clean.items())
        async with self._transaction() as db:
            await db.executemany(_UPSERT_SETTING, rows)
            await _audit(db, scope, scope_id, actor_id, "config set", detail, now)
        log.info("%s %s: %s set %s", scope, scope_id, actor_id, ", ".join(clean))
        return clean

    async def reset(
        self, scope: Scope, scope_id: int, keys: Iterable[str] | None = None, *, actor_id: int
    ) -> list[str]:
        """Drop explicit values so the scope falls back again; returns the keys removed."""
        _check_scope(scope)
        wanted = [keys] if isinstance(keys, str) else list(SETTING_KEYS if keys is None else keys)
        for key in wanted:
            check_setting_key(key)
        marks = ", ".join("?" * len(wanted))
        sql = f"DELETE FROM settings WHERE scope = ? AND scope_id = ? AND key IN ({marks}) RETURNING key"
        async with self._transaction() as db:
            async with db.execute(sql, (scope, scope_id, *wanted)) as cursor:
                removed = {row[0] for row in await cursor.fetchall()}
            if removed:
                keys_removed = ", ".join(key for key in SETTING_KEYS if key in removed)
                await _audit(db, scope, scope_id, actor_id, "config reset", keys_removed, time.time())
        if removed:
            log.info("%s %s: %s reset %s", scope, scope_id, actor_id, ", ".join(sorted(removed)))
        return [key for key in SETTING_KEYS if key in removed]

    # --- meta -----------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self._lock, self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else row[0]

    async def set_meta(self, key: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(_UPSERT_META, (key, value))

    # --- moderation -----------------------------------------------------------------

    async def channel_rules(self, channel_id: int) -> ChannelRules:
        """What moderators set for this channel or thread (not its parent's)."""
        async with self._lock:
            return await _read_rules(self._db, channel_id)

    async def set_channel_rules(
        self,
        channel_id: int,
        *,
        actor_id: int,
        locked: bool | None = None,
        cooldown_s: int | None = None,
        max_inflight: int | None = None,
    ) -> ChannelRules:
        """Change some of a channel's rules and log each change, in one transaction."""
        changes = _rule_changes(locked, cooldown_s, max_inflight)
        now = time.time()
        async with self._transaction() as db:
            await db.execute(
                _UPSERT_RULES,
                {
                    "channel_id": channel_id,
                    "locked": None if locked is None else int(locked),
                    "cooldown_s": cooldown_s,
                    "max_inflight": max_inflight,
                    "actor_id": actor_id,
                    "now": now,
                },
            )
            for action, detail in changes:
                await _audit(db, "channel", channel_id, actor_id, action, detail, now)
            return await _read_rules(db, channel_id)

    async def add_blocked_phrase(self, channel_id: int, phrase: str, *, actor_id: int) -> bool:
        """Block a phrase here; False if it already was. Refuses past ``MAX_PHRASES``."""
        phrase = normalize_phrase(phrase)
        now = time.time()
        async with self._transaction() as db:
            async with db.execute(
                "SELECT COUNT(*), SUM(phrase = ?) FROM blocked_phrases WHERE channel_id = ?",
                (phrase, channel_id),
            ) as cursor:
                count, present = await cursor.fetchone() or (0, 0)
            if present:
                return False
            if count >= MAX_PHRASES:
                raise UserFacingError(
                    f"This channel already blocks {MAX_PHRASES} phrases, the most it may; remove one first."
                )
            await db.execute(
                "INSERT INTO blocked_phrases (channel_id, phrase, added_by, added_at) VALUES (?, ?, ?, ?)",
                (channel_id, phrase, actor_id, now),
            )
            await _audit(db, "channel", channel_id, actor_id, "blocklist add", phrase, now)
        return True

    async def remove_blocked_phrase(self, channel_id: int, phrase: str, *, actor_id: int) -> bool:
        """Unblock a phrase here; False if it was not blocked."""
        phrase = normalize_phrase(phrase)
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM blocked_phrases WHERE channel_id = ? AND phrase = ?", (channel_id, phrase)
            )
            removed = cursor.rowcount > 0
            if removed:
                await _audit(db, "channel", channel_id, actor_id, "blocklist remove", phrase, time.time())
        return removed

    async def record_action(
        self, scope: Scope, scope_id: int, *, actor_id: int, action: str, detail: str = ""
    ) -> None:
        """Add an entry to the audit log (moderator actions that change no stored rule)."""
        _check_scope(scope)
        async with self._transaction() as db:
            await _audit(db, scope, scope_id, actor_id, action, detail, time.time())

    async def audit_log(
        self, guild_id: int | None, channel_ids: Sequence[int], *, limit: int = 20
    ) -> list[AuditEntry]:
        """The newest entries about these channels and (with ``guild_id``) the server's defaults."""
        scopes: list[tuple[str, int]] = [("channel", c) for c in channel_ids]
        if guild_id is not None:
            scopes.append(("guild", guild_id))
        if not scopes:
            return []
        where = " OR ".join(["(scope = ? AND scope_id = ?)"] * len(scopes))
        sql = (
            "SELECT id, scope, scope_id, actor_id, action, detail, at FROM audit_log "
            f"WHERE {where} ORDER BY id DESC LIMIT ?"
        )
        params = [part for pair in scopes for part in pair] + [limit]
        async with self._lock, self._db.execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        return [AuditEntry(*row) for row in rows]

    # --- stories --------------------------------------------------------------------

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
    ) -> Story | None:
        """Open a story with its starter as the first player; None if one is already open here."""
        now = time.time()
        async with self._transaction() as db:
            try:
                cursor = await db.execute(
                    "INSERT INTO stories (guild_id, channel_id, starter_id, premise, turn_mode, max_players,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (guild_id, channel_id, starter_id, premise, turn_mode, max_players, now),
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

    # --- internals ------------------------------------------------------------------

    async def _layers(
        self, guild_id: int | None, channel_id: int, parent_id: int | None
    ) -> list[tuple[Source, dict[str, object]]]:
        """The scopes that apply, least specific first."""
        chain: list[tuple[Source, Scope, int]] = []
        if guild_id is not None:
            chain.append(("guild", "guild", guild_id))
        if parent_id is not None and parent_id != channel_id:
            chain += [("channel", "channel", parent_id), ("thread", "channel", channel_id)]
        else:
            chain.append(("channel", "channel", channel_id))
        rows = await self._rows([(scope, scope_id) for _, scope, scope_id in chain])
        return [(source, rows.get((scope, scope_id), {})) for source, scope, scope_id in chain]

    async def _rows(self, scopes: list[tuple[Scope, int]]) -> dict[tuple[str, int], dict[str, object]]:
        where = " OR ".join(["(scope = ? AND scope_id = ?)"] * len(scopes))
        params = [part for pair in scopes for part in pair]
        sql = f"SELECT scope, scope_id, key, value FROM settings WHERE {where}"
        async with self._lock, self._db.execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        out: dict[tuple[str, int], dict[str, object]] = {}
        for scope, scope_id, key, raw in sorted(rows, key=lambda row: _KEY_ORDER.get(row[2], 0)):
            value = _decode(scope, scope_id, key, raw)
            if value is not _INVALID:
                out.setdefault((scope, scope_id), {})[key] = value
        return out

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                # IMMEDIATE takes the write lock up front, so a second process waits
                # (busy timeout) instead of failing halfway through.
                await self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                await self._db.commit()
            except BaseException:
                await asyncio.shield(self._db.rollback())  # a no-op if BEGIN never ran
                raise


# --- moderation and stories: row types and helpers -------------------------------------

TurnMode = Literal["free", "round-robin"]
TurnKind = Literal["opening", "player", "bot"]
JoinResult = Literal["joined", "already", "full", "closed"]
NewTurn = tuple[TurnKind, int | None, str, str]  # kind, author id (None: the bot), author name, text

_UPSERT_RULES = """
    INSERT INTO channel_moderation (channel_id, locked, cooldown_s, max_inflight, updated_by, updated_at)
    VALUES (:channel_id, COALESCE(:locked, 0), COALESCE(:cooldown_s, 0), COALESCE(:max_inflight, 0),
            :actor_id, :now)
    ON CONFLICT (channel_id) DO UPDATE SET
        locked = COALESCE(:locked, locked),
        cooldown_s = COALESCE(:cooldown_s, cooldown_s),
        max_inflight = COALESCE(:max_inflight, max_inflight),
        updated_by = excluded.updated_by, updated_at = excluded.updated_at
"""
_STORY_COLUMNS = "id, guild_id, channel_id, starter_id, premise, turn_mode, max_players, status, created_at"


@dataclass(frozen=True)
class AuditEntry:
    id: int
    scope: str
    scope_id: int
    actor_id: int
    action: str
    detail: str
    at: float  # Unix time


@dataclass(frozen=True)
class Story:
    id: int
    guild_id: int | None
    channel_id: int
    starter_id: int
    premise: str
    turn_mode: TurnMode
    max_players: int
    status: Literal["open", "ended"]
    created_at: float


@dataclass(frozen=True)
class StoryPlayer:
    user_id: int
    name: str
    joined_at: float


@dataclass(frozen=True)
class StoryTurn:
    seq: int
    kind: TurnKind
    author_id: int | None
    author_name: str
    text: str
    created_at: float


def _rule_changes(
    locked: bool | None, cooldown_s: int | None, max_inflight: int | None
) -> list[tuple[str, str]]:
    """Check the new values; return the audit entries (action, detail) they make."""
    changes: list[tuple[str, str]] = []
    if locked is not None:
        changes.append(("lock", "model commands paused") if locked else ("unlock", "model commands allowed"))
    if cooldown_s is not None:
        if not 0 <= cooldown_s <= MAX_COOLDOWN_S:
            raise ValidationError(f"`seconds` must be in [0, {MAX_COOLDOWN_S}], got {cooldown_s}")
        changes.append(("cooldown", f"{cooldown_s} s per user" if cooldown_s else "off"))
    if max_inflight is not None:
        if not 0 <= max_inflight <= MAX_INFLIGHT:
            raise ValidationError(f"`n` must be in [0, {MAX_INFLIGHT}], got {max_inflight}")
        changes.append(("limit", f"{max_inflight} at once" if max_inflight else "off"))
    if not changes:
        raise ValueError("set_channel_rules needs at least one rule to change")
    return changes


async def _audit(
    db: aiosqlite.Connection, scope: str, scope_id: int, actor_id: int, action: str, detail: str, at: float
) -> None:
    await db.execute(
        "INSERT INTO audit_log (scope, scope_id, actor_id, action, detail, at) VALUES (?, ?, ?, ?, ?, ?)",
        (scope, scope_id, actor_id, action, detail, at),
    )


def _brief(value: object, limit: int = 60) -> str:
    text = "default" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _read_rules(db: aiosqlite.Connection, channel_id: int) -> ChannelRules:
    async with db.execute(
        "SELECT locked, cooldown_s, max_inflight FROM channel_moderation WHERE channel_id = ?", (channel_id,)
    ) as cursor:
        row = await cursor.fetchone()
    async with db.execute(
        "SELECT phrase FROM blocked_phrases WHERE channel_id = ? ORDER BY phrase", (channel_id,)
    ) as cursor:
        phrases = tuple(r[0] for r in await cursor.fetchall())
    locked, cooldown_s, max_inflight = row if row is not None else (0, 0, 0)
    return ChannelRules(bool(locked), int(cooldown_s), int(max_inflight), Blocklist(phrases))


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


_INVALID = object()
_KEY_ORDER = {key: i for i, key in enumerate(SETTING_KEYS)}


def _check_scope(scope: str) -> None:
    if scope not in ("guild", "channel"):
        raise ValueError(f"scope must be 'guild' or 'channel', got {scope!r}")


def _encode(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _decode(scope: str, scope_id: int, key: str, raw: str) -> object:
    """A stored value, rechecked; a bad row is skipped (the scope falls back) and logged."""
    try:
        value = json.loads(raw)
        return validate_setting(key, value, max_new_tokens_cap=MAX_NEW_TOKENS_LIMIT, model_names=None)
    except (ValueError, ValidationError) as exc:
        log.warning("ignoring stored setting %s %s %s=%r: %s", scope, scope_id, key, raw, exc)
        return _INVALID


async def _configure(db: aiosqlite.Connection) -> None:
    mode = await _enable_wal(db)
    if mode != "wal":
        log.warning("SQLite journal_mode is %s, not wal", mode)  # e.g. ':memory:'
    await db.execute("PRAGMA synchronous = NORMAL")
    await db.execute("PRAGMA foreign_keys = ON")
    await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


async def _enable_wal(db: aiosqlite.Connection) -> str:
    """Switch to WAL, waiting out another connection that is migrating the same new file.

    Changing the journal mode answers "database is locked" at once while another connection
    writes, without consulting the busy timeout; so retry until that timeout has passed.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            async with db.execute("PRAGMA journal_mode = WAL") as cursor:
                (mode,) = await cursor.fetchone() or ("?",)
            return str(mode)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def _migrate(db: aiosqlite.Connection, path: str | os.PathLike[str]) -> None:
    """Apply missing migrations, one transaction each.

    The version is read inside the write transaction, so two processes opening the same
    old file never apply a migration twice.
    """
    target = len(MIGRATIONS)
    while True:
        await db.execute("BEGIN IMMEDIATE")
        try:
            version = await _user_version(db)
            if version > target:
                raise SchemaError(
                    f"{os.fspath(path)} has schema version {version}, newer than this Transcord "
                    f"knows ({target}); upgrade Transcord or use another database file"
                )
            if version == target:
                await db.commit()
                return
            for statement in MIGRATIONS[version]:
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {version + 1}")
            await db.commit()
            log.info("migrated %s to schema version %d", os.fspath(path), version + 1)
        except BaseException:
            await db.rollback()
            raise


async def _user_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0
