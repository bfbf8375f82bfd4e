"""Shared fixtures for the store tests: a database file and a store open on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cogs.utils.settings import ChannelSettings
from cogs.utils.store import Store


@pytest.fixture
def store_defaults() -> ChannelSettings:
    """The config-level settings the store falls back to; a test module may override it."""
    return ChannelSettings()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "transcord.db"


@pytest.fixture
async def store(db_path: Path, store_defaults: ChannelSettings) -> AsyncIterator[Store]:
    async with await Store.open(db_path, store_defaults) as opened:
        yield opened
