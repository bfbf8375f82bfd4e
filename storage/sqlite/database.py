"""The SQLite database under the repositories: one connection, its lock, transactions, migrations.

One aiosqlite connection per database; an asyncio lock keeps its transactions from
interleaving, and ``BEGIN IMMEDIATE`` plus the busy timeout serialise writers across
processes. Migrations are the numbered SQL files in ``storage/migrations``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from storage.types import SchemaError

log = logging.getLogger("storage")

BUSY_TIMEOUT_MS = 5000
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def migrations() -> list[tuple[str, ...]]:
    """The statements of each numbered migration file, in order (001_… takes version 0 to 1)."""
    out = []
    for number, path in enumerate(sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql")), 1):
        if int(path.name[:3]) != number:
            raise RuntimeError(f"migration {path.name} is out of sequence (expected {number:03d}_…)")
        out.append(split_statements(path.read_text(encoding="utf-8")))
    return out


def split_statements(script: str) -> tuple[str, ...]:
    """A script's statements (SQLite decides where each ends, comments and strings included)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in current.splitlines()
    ):
        raise ValueError(f"an unfinished statement at the end of a migration: {current.strip()[:80]!r}")
    return tuple(statements)


class Database:
    """Open with ``await Database.open(path)``; the repositories share it."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.conn = db
        self.lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> Database:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        db = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
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
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self.lock:
            try:
                # IMMEDIATE takes the write lock up front, so a second process waits
                # (busy timeout) instead of failing halfway through.
                await self.conn.execute("BEGIN IMMEDIATE")
                yield self.conn
                await self.conn.commit()
            except BaseException:
                await asyncio.shield(self.conn.rollback())  # a no-op if BEGIN never ran
                raise


class Repository:
    """What each SQLite repository shares: the connection, its lock, and transactions."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.conn
        self._lock = database.lock

    def _transaction(self) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
        return self._database.transaction()


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
    steps = migrations()
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
