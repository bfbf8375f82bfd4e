"""The databases the contract tests run on: a SQLite file, or a fresh schema on a Postgres server.

The Postgres server is the one at ``TEST_DATABASE_URL``, which ``scripts/test-postgres`` (run by
``make check``) provides, installing and starting a local cluster when it can. Where there is
none, the Postgres tests are skipped with the reason, which pytest prints in its summary (``-ra``).
Each test gets a schema of its own (the URL's ``search_path``), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from domain.settings import ChannelSettings
from storage import Storage
from storage.connect import open_postgres, open_sqlite, redact

Location = Path | str  # a SQLite file, or a Postgres URL


async def open_backend(backend: str, where: Location, defaults: ChannelSettings) -> Storage:
    if backend == "sqlite":
        return await open_sqlite(where, defaults)
    if backend == "postgres":
        return await open_postgres(str(where), defaults)
    raise AssertionError(f"unknown backend {backend}")


def postgres_server() -> str:
    """The test server's URL; skips the test, saying why, when there is none."""
    url, reason = _probe()
    if url is None:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    return url


@cache
def _probe() -> tuple[str | None, str]:
    """Once per session: (the URL, "") if the server answers, else (None, why not)."""
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if not url:
        why = os.environ.get("TEST_DATABASE_UNAVAILABLE", "").strip()
        return None, why or "TEST_DATABASE_URL is not set (`make check` sets it via scripts/test-postgres)"

    async def connect() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        await conn.close()

    try:
        # In a thread of its own: the caller may be a fixture running on the test's event loop.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, connect()).result()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return None, f"nothing answers at TEST_DATABASE_URL {redact(url)} ({type(exc).__name__}: {exc})"
    return url, ""


@asynccontextmanager
async def fresh_schema(server: str) -> AsyncIterator[str]:
    """A new, empty schema on the server; yields a URL whose connections use only it."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
        yield with_search_path(server, name)
    finally:
        # A store a test left open would hold locks on its tables: don't wait on it forever.
        await conn.execute("SET lock_timeout = '10s'")
        await conn.execute(f"DROP SCHEMA {name} CASCADE")
        await conn.close()


def with_search_path(url: str, schema: str) -> str:
    """``url`` with asyncpg's ``search_path`` server setting (a query parameter it passes on)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, f"search_path={schema}") if q)
    return urlunsplit(parts._replace(query=query))


async def run_sql(backend: str, where: Location, statement: str, *params: object) -> list[tuple]:
    """Run one statement straight on the database, behind the store's back; ``?`` marks params."""
    if backend == "sqlite":
        with sqlite3.connect(where) as conn:
            return [tuple(row) for row in conn.execute(statement, params).fetchall()]
    numbered = iter(range(1, statement.count("?") + 1))
    conn = await asyncpg.connect(str(where))
    try:
        rows = await conn.fetch(re.sub(r"\?", lambda _: f"${next(numbered)}", statement), *params)
    finally:
        await conn.close()
    return [tuple(row) for row in rows]
