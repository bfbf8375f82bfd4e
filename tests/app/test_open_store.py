"""The composition root opens Postgres when DATABASE_URL is set, and says plainly when it cannot."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from app.environment import load_config
from app.failures import FIX_SETTINGS, TRY_AGAIN, StartFailure
from app.root import open_store
from tests.storage.backends import fresh_schema, postgres_server

SECRET = "pg-Secret-42"


async def test_without_database_url_the_sqlite_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "data" / "bot.sqlite3"
    async with await open_store(load_config({"DATABASE_PATH": str(path)})) as store:
        await store.meta.set_meta("k", "v")
    assert path.exists()


async def test_an_unreachable_server_is_one_line_naming_database_url_without_the_password() -> None:
    config = load_config({"DATABASE_URL": f"postgresql://bot:{SECRET}@127.0.0.1:1/transcord"})
    with pytest.raises(StartFailure) as info:
        await open_store(config)
    message = info.value.message
    assert message.startswith("could not connect to the database postgresql://bot@127.0.0.1:1/transcord (")
    assert message.endswith("check DATABASE_URL and that the server is up and reachable from here")
    assert SECRET not in message and "\n" not in message
    assert info.value.exit_code == TRY_AGAIN  # the server may come up: a restart policy may retry


async def test_a_refused_password_is_a_setting_to_fix() -> None:
    parts = urlsplit(postgres_server())
    wrong = urlunsplit(
        parts._replace(netloc=f"{parts.username}:{SECRET}@{parts.hostname}:{parts.port or 5432}")
    )
    with pytest.raises(StartFailure) as info:
        await open_store(load_config({"DATABASE_URL": wrong}))
    assert info.value.exit_code == FIX_SETTINGS
    assert info.value.message.endswith("; check DATABASE_URL") and SECRET not in info.value.message


async def test_with_database_url_postgres_is_opened_and_sqlite_is_not(tmp_path: Path) -> None:
    async with fresh_schema(postgres_server()) as url:
        path = tmp_path / "unused.sqlite3"
        config = load_config({"DATABASE_URL": url, "DATABASE_PATH": str(path)})
        async with await open_store(config) as store:
            await store.meta.set_meta("k", "v")
        async with await open_store(config) as store:
            assert await store.meta.get_meta("k") == "v"
    assert not path.exists()
