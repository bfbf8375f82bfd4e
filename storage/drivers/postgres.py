"""PostgreSQL under the repositories: the pool, transactions, named locks, migrations, errors.

Reads run on any pooled connection. Writes of one process run one at a time, in the order they
were called, as they do on SQLite: the last ``/config set`` a moderator sends is the one that
stays. Across processes, PostgreSQL orders them: upserts wait on the row they change, and the
read-then-write transactions lock what they read first (``FOR UPDATE``, advisory locks).

The migrations are the numbered files, translated by :mod:`storage.drivers.dialect`, applied
one transaction each under an advisory lock, so two processes starting together never race.
The versions applied are rows of ``schema_migrations``. A server that goes away mid-run is
:class:`~storage.types.StoreUnavailable`; messages name the server without its password.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from storage import schema
from storage.driver import Row
from storage.drivers.dialect import to_postgres
from storage.drivers.url import redact, scrub
from storage.types import SchemaError, StoreUnavailable

log = logging.getLogger("storage")

CONNECT_TIMEOUT_S = 10.0  # asyncpg's own default (60 s) leaves a start-up hanging on a dead host
# A statement, or the wait for a pooled connection, that takes longer is a server out of reach
# (a network that drops packets without a reset leaves a query waiting for ever otherwise).
COMMAND_TIMEOUT_S = 30.0
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
    """The migrations, in PostgreSQL's SQL: the same numbered files SQLite applies."""
    return [tuple(to_postgres(s) for s in step) for step in schema.migrations()]


def affected(status: str) -> int:
    """The row count of a command's status, e.g. 3 for ``DELETE 3``."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresConnection:
    for_update = " FOR UPDATE"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: object) -> int:
        return affected(await self._conn.execute(sql, *args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        return list(await self._conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        row: Row | None = await self._conn.fetchrow(sql, *args)  # an asyncpg Record (untyped)
        return row

    async def fetchval(self, sql: str, *args: object) -> Any:
        return await self._conn.fetchval(sql, *args)

    async def lock(self, namespace: int, key: int | str) -> None:
        # Two-key advisory locks, held until the transaction ends; the key hashed to 32 bits.
        hashed = "hashtext($2)" if isinstance(key, str) else "hashint8($2)"
        await self._conn.execute(f"SELECT pg_advisory_xact_lock($1, {hashed})", namespace, key)


class _OneLinePoolWarnings(logging.Filter):
    """asyncpg's pool logs each failed attempt to reconnect its idle floor with a traceback
    ("Failed to restore the pool connection floor; retrying"), every 1-60 s while the server is
    away. That is the server being down, which the store already reports as one line
    (StoreUnavailable): keep the warning, as one line with the reason, and drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and record.levelno <= logging.WARNING:
            record.msg = f"{record.getMessage()} ({_reason(record.exc_info[1])})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


_POOL_LOG = logging.getLogger("asyncpg.pool")
_POOL_FILTER = _OneLinePoolWarnings()


class PostgresDriver:
    """Open with ``await PostgresDriver.open(url)``; the repositories share it."""

    def __init__(self, pool: asyncpg.Pool, where: str) -> None:
        self.pool = pool
        self.where = where  # the URL without its password, for messages
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> PostgresDriver:
        where = redact(url)
        if _POOL_FILTER not in _POOL_LOG.filters:
            _POOL_LOG.addFilter(_POOL_FILTER)
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=POOL_SIZE,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
            )
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
    async def reading(self) -> AsyncIterator[PostgresConnection]:
        async with (
            unreachable_is_unavailable(self.where),
            self.pool.acquire(timeout=COMMAND_TIMEOUT_S) as conn,
        ):
            yield PostgresConnection(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresConnection]:
        async with unreachable_is_unavailable(self.where), self._write_lock:
            async with self.pool.acquire(timeout=COMMAND_TIMEOUT_S) as conn, conn.transaction():
                yield PostgresConnection(conn)


@asynccontextmanager
async def unreachable_is_unavailable(where: str) -> AsyncIterator[None]:
    """A server that went away mid-run becomes :class:`StoreUnavailable`, which users read as
    "try again in a minute"; the pool reconnects by itself once the server is back."""
    try:
        yield
    except _TRANSIENT as exc:
        raise StoreUnavailable(f"the database {where} is unreachable ({_reason(exc)})") from exc


async def _migrate(conn: asyncpg.Connection, where: str) -> None:
    """Apply the missing migrations, one transaction each, under the migration lock.

    The version is read after taking the lock, so a second process starting at the same time
    waits, then finds the work done. PostgreSQL's DDL is transactional: a failing migration
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
