"""The storage contract: every implementation of the storage protocols passes the same tests.

``store`` is a :class:`~storage.Storage` of each backend in :data:`BACKENDS`, open on
a fresh database (``database``: a SQLite file, or a Postgres URL with a schema of its own);
``open_storage(defaults)`` opens the same database again (a restart, or a second process), and
``sql(statement, *params)`` reaches into it behind the store's back. A backend added here runs
every contract test. Without a Postgres server the Postgres half is skipped, with the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from domain.settings import ChannelSettings
from storage import Storage
from tests.storage.backends import Location, fresh_schema, open_backend, postgres_server, run_sql

BACKENDS = ["sqlite", "postgres"]
Opener = Callable[[ChannelSettings], Awaitable[Storage]]
Sql = Callable[..., Awaitable[list[tuple]]]


@pytest.fixture
def store_defaults() -> ChannelSettings:
    """The config-level settings the store falls back to; a test module may override it."""
    return ChannelSettings()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "transcord.db"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database(backend: str, db_path: Path) -> AsyncIterator[Location]:
    """Where the test's database lives: ``db_path`` for SQLite, a fresh schema's URL for Postgres."""
    if backend == "sqlite":
        yield db_path
        return
    async with fresh_schema(postgres_server()) as url:
        yield url


@pytest.fixture
def open_storage(backend: str, database: Location) -> Opener:
    async def opener(defaults: ChannelSettings) -> Storage:
        return await open_backend(backend, database, defaults)

    return opener


@pytest.fixture
def sql(backend: str, database: Location) -> Sql:
    async def run(statement: str, *params: object) -> list[tuple]:
        return await run_sql(backend, database, statement, *params)

    return run


@pytest.fixture
async def store(open_storage: Opener, store_defaults: ChannelSettings) -> AsyncIterator[Storage]:
    async with await open_storage(store_defaults) as opened:
        yield opened
