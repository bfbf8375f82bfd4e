"""The storage contract: every implementation of the storage protocols passes the same tests.

``store`` is a :class:`~cogs.utils.storage.Storage` of each backend in :data:`BACKENDS`, open on
a fresh database; ``open_storage(defaults)`` opens the same database again (a restart, or a
second process). A backend added here runs every contract test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from cogs.utils.settings import ChannelSettings
from cogs.utils.storage import Storage
from cogs.utils.storage.sqlite import open_sqlite

BACKENDS = ["sqlite"]
Opener = Callable[[ChannelSettings], Awaitable[Storage]]


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
def open_storage(backend: str, db_path: Path) -> Opener:
    async def opener(defaults: ChannelSettings) -> Storage:
        if backend == "sqlite":
            return await open_sqlite(db_path, defaults)
        raise AssertionError(f"unknown backend {backend}")

    return opener


@pytest.fixture
async def store(open_storage: Opener, store_defaults: ChannelSettings) -> AsyncIterator[Storage]:
    async with await open_storage(store_defaults) as opened:
        yield opened
