"""The small interface every repository is written against, once, whatever the database.

A repository's SQL uses numbered placeholders (``$1``, ``$2``, ...) and the SQL that SQLite and
PostgreSQL share (``ON CONFLICT``, ``RETURNING``, ``CAST``, ``CASE``). What differs between them
lives in a driver (``storage/drivers``): how placeholders are written, how a transaction starts
and serialises writers, how a lock on a name is taken, which errors mean "the database is away".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = Sequence[Any]  # a result row: its columns in the order the query names them


class Connection(Protocol):
    """One connection, inside a transaction (writes) or not (reads)."""

    # Appended to a SELECT inside a transaction to lock the rows it reads until the commit, where
    # the database locks rows ("FOR UPDATE" on PostgreSQL); empty where a transaction already
    # holds the whole database (SQLite's BEGIN IMMEDIATE).
    for_update: str

    async def execute(self, sql: str, *args: object) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    async def fetch(self, sql: str, *args: object) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: object) -> Row | None: ...

    async def fetchval(self, sql: str, *args: object) -> Any:
        """The first column of the first row, or None if there is none."""
        ...

    async def lock(self, namespace: int, key: int | str) -> None:
        """Hold a lock on (namespace, key) until the transaction ends, across every process on
        the database: for a check-then-write that has no row to lock yet (counting a channel's
        phrases, its requests in flight). A no-op where transactions already run one at a time."""
        ...


class Driver(Protocol):
    """A database the repositories share: reads, write transactions, closing."""

    def reading(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for reads (several in a row see one database)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises.

        Writes of one process run one at a time, in the order they were called.
        """
        ...

    async def close(self) -> None: ...
