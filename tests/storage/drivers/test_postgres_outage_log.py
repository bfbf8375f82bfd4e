"""A PostgreSQL server away for a while is one warning line at a time in the log, not a traceback."""

from __future__ import annotations

import asyncio
import logging

import pytest

from storage.connect import open_postgres
from storage.types import StoreUnavailable
from tests.storage.drivers.test_postgres import Proxy
from tests.storage.test_settings_contract import CHANNEL, CONFIG, GUILD, put


@pytest.fixture
def backend() -> str:
    return "postgres"


async def test_the_pool_reconnecting_to_a_server_that_is_away_logs_no_traceback(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await Proxy.before(database)
    store = await open_postgres(proxy.route(database), CONFIG)
    caplog.set_level(logging.WARNING)
    try:
        await put(store, "channel", CHANNEL, top_k=3)
        await proxy.close()  # the server is gone: the pool tries to restore its floor, and fails
        with pytest.raises(StoreUnavailable):
            await store.settings.effective(GUILD, CHANNEL)
        await asyncio.sleep(2.5)  # the pool's first retries (1 s, then 2 s apart)
        pool = [r for r in caplog.records if r.name == "asyncpg.pool"]
        assert pool, "the pool said nothing while the server was away"
        assert all(r.exc_info is None and "\n" not in r.getMessage() for r in pool)
        assert any("Connect" in r.getMessage() or "refused" in r.getMessage() for r in pool)
    finally:
        await store.close()
        await proxy.close()
