"""The Postgres database under the repositories: the pool, transactions, migrations.

Reads run on any pooled connection. Writes of one process run one at a time, in the order they
were called, as they do on SQLite: the last ``/settings set`` a moderator sends is the one that
stays. Across processes, Postgres orders them: upserts wait on the row they change, and the
read-then-write transactions lock what they read first (``FOR UPDATE``, advisory locks).

The migrations are SQLite's numbered files, translated by :mod:`.dialect`, applied one
transaction each under an advisory lock, so two processes starting together never race. The
versions applied are rows of ``schema_migrations``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg

from storage.postgres.dialect import to_postgres
from storage.postgres.url import redact, scrub
from storage.sqlite import database as sqlite_database  # the files, read one way for both
from storage.types import SchemaError, StoreUnavailable

log = logging.getLogger("storage")

CONNECT_TIMEOUT_S = 10.0  # asyncpg's own default (60 s) leaves a start-up hanging on a dead host
POOL_SIZE = 8
# One key for the whole database: migrations of any schema in it take turns (they are rare).
MIGRATION_LOCK = int.from_bytes(b"transcor", "big")

_VERSIONS_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
"""

# Failures worth another start later (the server is down or busy), as opposed to a setting to fix.
_TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
)


class DatabaseUnavailable(RuntimeError):
    """The database could not be opened: unreachable, refused, or a migration failed.

    The message names the server as :func:`redact` writes it, never the password; ``transient``
    says whether starting again later may work (the server down or full) or a setting must change.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def migrations() -> list[tuple[str, ...]]:
    """The migrations, in Postgres's SQL: the same numbered files SQLite applies."""
    return [tuple(to_postgres(s) for s in step) for step in sqlite_database.migrations()]


class Database:
    """Open with ``await Database.open(url)``; the repositories share it."""

    def __init__(self, pool: asyncpg.Pool, where: str) -> None:
        self.pool = pool
        self.where = where  # the URL without its password, for messages
        self.write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> Database:
        where = redact(url)
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE, timeout=CONNECT_TIMEOUT_S)
        except (*_TRANSIENT, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailable(
                f"could not connect to the database {where} ({scrub(_reason(exc), url)})",
                transient=isinstance(exc, _TRANSIENT),
            ) from exc
        try:
            async with pool.acquire() as conn:
                await _migrate(conn, where)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, (*_TRANSIENT, asyncpg.PostgresError, asyncpg.InterfaceError)):
                raise DatabaseUnavailable(
                    f"could not migrate the database {where} ({scrub(_reason(exc), url)})",
                    transient=isinstance(exc, _TRANSIENT),
                ) from exc
            raise  # SchemaError, cancellation, a bug
        return cls(pool, where)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with unreachable_is_unavailable(self.where), self.write_lock:
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn


@asynccontextmanager
async def unreachable_is_unavailable(where: str) -> AsyncIterator[None]:
    """A server that went away mid-run becomes :class:`StoreUnavailable`, which users read as
    "try again in a minute"; the pool reconnects by itself once the server is back."""
    try:
        yield
    except _TRANSIENT as exc:
        raise StoreUnavailable(f"the database {where} is unreachable ({_reason(exc)})") from exc


class Reads:
    """The pool's one-statement calls, each through :func:`unreachable_is_unavailable`."""

    def __init__(self, pool: asyncpg.Pool, where: str) -> None:
        self._pool, self._where = pool, where

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        async with unreachable_is_unavailable(self._where):
            return await self._pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        async with unreachable_is_unavailable(self._where):
            return await self._pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: object) -> object:
        async with unreachable_is_unavailable(self._where):
            return await self._pool.fetchval(query, *args)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for several reads in a row."""
        async with unreachable_is_unavailable(self._where), self._pool.acquire() as conn:
            yield conn


class Repository:
    """What each Postgres repository shares: the pool for reads, transactions for writes."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._pool = Reads(database.pool, database.where)

    def _transaction(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return self._database.transaction()


async def _audit(
    db: asyncpg.Connection, scope: str, scope_id: int, actor_id: int, action: str, detail: str, at: float
) -> None:
    await db.execute(
        "INSERT INTO audit_log (scope, scope_id, actor_id, action, detail, at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        scope,
        scope_id,
        actor_id,
        action,
        detail,
        at,
    )


def affected(status: str) -> int:
    """The row count of a command's status, e.g. 3 for ``DELETE 3``."""
    return int(status.rsplit(" ", 1)[-1])


async def _migrate(conn: asyncpg.Connection, where: str) -> None:
    """Apply the missing migrations, one transaction each, under the migration lock.

    The version is read after taking the lock, so a second process starting at the same time
    waits, then finds the work done. Postgres's DDL is transactional: a failing migration
    leaves the database as it was.
    """
    steps = migrations()
    target = len(steps)
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(_VERSIONS_TABLE)
            version = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            if version > target:
                raise SchemaError(
                    f"{where} has schema version {version}, newer than this Transcord knows ({target}); "
                    "upgrade Transcord or use another database"
                )
            if version == target:
                return
            for statement in steps[version]:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version + 1)
        log.info("migrated %s to schema version %d", where, version + 1)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
