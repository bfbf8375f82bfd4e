"""SQLite under the repositories: one connection, its lock, transactions, migrations.

One aiosqlite connection per database; an asyncio lock keeps its transactions from
interleaving, and ``BEGIN IMMEDIATE`` plus the busy timeout serialise writers across
processes. Since a write transaction holds the whole database, row locks and named locks are
not needed here (``for_update`` is empty, ``lock`` does nothing).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from storage import schema
from storage.driver import Row
from storage.types import SchemaError

log = logging.getLogger("storage")

BUSY_TIMEOUT_MS = 5000
_NUMBERED = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=512)
def placeholders(sql: str) -> str:
    """The repositories' ``$1`` as SQLite's numbered ``?1`` (a number may be used twice)."""
    return _NUMBERED.sub(r"?\1", sql)


class SQLiteConnection:
    for_update = ""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: object) -> int:
        cursor = await self._conn.execute(placeholders(sql), args)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self._conn.executemany(placeholders(sql), rows)

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        async with self._conn.execute(placeholders(sql), args) as cursor:
            return list(await cursor.fetchall())

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        rows = await self.fetch(sql, *args)  # all of them: a RETURNING statement runs to its end
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: object) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    async def lock(self, namespace: int, key: int | str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already runs write transactions one at a time."""


class SQLiteDriver:
    """Open with ``await SQLiteDriver.open(path)``; the repositories share it."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.conn = db
        self._lock = asyncio.Lock()
        self._connection = SQLiteConnection(db)

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> SQLiteDriver:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        db = await aiosqlite.connect(os.fspath(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            await _configure(db)
            await _migrate(db, path)
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        await self.conn.close()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[SQLiteConnection]:
        async with self._lock:
            yield self._connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteConnection]:
        async with self._lock:
            try:
                # IMMEDIATE takes the write lock up front, so a second process waits
                # (busy timeout) instead of failing halfway through.
                await self.conn.execute("BEGIN IMMEDIATE")
                yield self._connection
                await self.conn.commit()
            except BaseException:
                await asyncio.shield(self.conn.rollback())  # a no-op if BEGIN never ran
                raise


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
    steps = schema.migrations()
    target = len(steps)
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
            for statement in steps[version]:
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
