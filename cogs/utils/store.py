"""The bot's SQLite store: schema migrations, scoped channel settings, and a meta table.

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
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Literal

import aiosqlite

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
        async with self._transaction() as db:
            await db.executemany(_UPSERT_SETTING, rows)
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
    async with db.execute("PRAGMA journal_mode = WAL") as cursor:
        (mode,) = await cursor.fetchone() or ("?",)
    if mode != "wal":
        log.warning("SQLite journal_mode is %s, not wal", mode)  # e.g. ':memory:'
    await db.execute("PRAGMA synchronous = NORMAL")
    await db.execute("PRAGMA foreign_keys = ON")
    await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


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
