"""The SQLite driver itself: WAL, the numbered SQL migrations, files of other versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage import SchemaError, Storage, schema
from tests.storage.conftest import Opener
from tests.storage.test_settings_contract import CHANNEL, CONFIG, GUILD, put, tables, user_version


@pytest.fixture
def backend() -> str:
    """These tests are about the SQLite file, whatever other backends the contract runs on."""
    return "sqlite"


def test_migrations_are_the_numbered_sql_files_in_order() -> None:
    names = sorted(p.name for p in schema.MIGRATIONS_DIR.glob("*.sql"))
    assert names == [
        "001_settings_and_meta.sql",
        "002_moderation.sql",
        "003_stories.sql",
        "004_conversations.sql",
        "005_story_turn_passing.sql",
        "006_replies.sql",
        "007_story_turn_length.sql",
        "008_limits.sql",
        "009_token_quotas.sql",
        "010_characters.sql",
        "011_story_cast.sql",
        "012_unfinished_replies.sql",
    ]
    assert [len(statements) for statements in schema.migrations()] == [2, 4, 4, 2, 2, 2, 1, 3, 3, 1, 5, 1]


def test_statements_split_where_sqlite_says_they_end() -> None:
    script = "-- a comment; with a semicolon\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nCREATE TABLE b (y);\n"
    assert schema.split_statements(script) == (
        "-- a comment; with a semicolon\nCREATE TABLE a (x TEXT DEFAULT ';');",
        "CREATE TABLE b (y);",
    )


# --- the file itself and migrations -------------------------------------------------


async def test_wal_mode_is_on(store: Storage, db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    await put(store, "channel", CHANNEL, top_k=2)
    assert db_path.with_name(db_path.name + "-wal").exists()


async def test_a_version_0_file_is_migrated(db_path: Path, open_storage: Opener) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE unrelated (x)")  # a file that exists but has no schema yet
    assert user_version(db_path) == 0

    async with await open_storage(CONFIG) as store:
        await put(store, "channel", CHANNEL, top_k=9)
        assert (await store.settings.effective(GUILD, CHANNEL)).top_k == 9
    assert user_version(db_path) == len(schema.migrations())
    assert {"settings", "meta", "unrelated"} <= tables(db_path)


async def test_an_older_version_gets_only_the_missing_migrations(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, open_storage: Opener
) -> None:
    async with await open_storage(CONFIG) as store:
        await put(store, "channel", CHANNEL, top_k=9)
    current = len(schema.migrations())
    assert user_version(db_path) == current

    later = ("CREATE TABLE blocklist (guild_id INTEGER, word TEXT)", "CREATE INDEX bl ON blocklist (word)")
    steps = schema.migrations()
    monkeypatch.setattr(schema, "migrations", lambda: [*steps, later])
    async with await open_storage(CONFIG) as store:
        assert (await store.settings.effective(GUILD, CHANNEL)).top_k == 9  # data kept
    assert user_version(db_path) == current + 1
    assert "blocklist" in tables(db_path)


async def test_a_failing_migration_leaves_the_file_as_it_was(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, open_storage: Opener
) -> None:
    async with await open_storage(CONFIG):
        pass
    broken = ("CREATE TABLE half_done (x)", "CREATE TABLE oops (")
    steps = schema.migrations()
    monkeypatch.setattr(schema, "migrations", lambda: [*steps, broken])
    with pytest.raises(sqlite3.OperationalError):
        await open_storage(CONFIG)
    assert user_version(db_path) == len(steps)
    assert "half_done" not in tables(db_path)


async def test_a_file_from_a_newer_version_is_refused(db_path: Path, open_storage: Opener) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaError) as info:
        await open_storage(CONFIG)
    message = str(info.value)
    assert (
        "schema version 99" in message
        and f"knows ({len(schema.migrations())})" in message
        and str(db_path) in message
    )
    assert user_version(db_path) == 99  # untouched
    assert "settings" not in tables(db_path)
