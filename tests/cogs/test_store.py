"""The settings store on a real SQLite file: fallback, persistence, concurrency, migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from cogs.utils import store as store_module
from cogs.utils.settings import ChannelSettings
from cogs.utils.store import SchemaError, Store
from model_service.errors import ValidationError

GUILD, CHANNEL, THREAD, OTHER = 10, 20, 30, 40
MOD_A, MOD_B = 1001, 1002
CONFIG = ChannelSettings(temperature=0.8, max_new_tokens=100)
MODELS = ("smollm2", "tiny")


@pytest.fixture
def store_defaults() -> ChannelSettings:
    return CONFIG


async def put(store: Store, scope: str, scope_id: int, actor: int = MOD_A, **values: object) -> dict:
    return await store.set_values(
        scope, scope_id, values, actor_id=actor, max_new_tokens_cap=256, model_names=MODELS
    )


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# --- reading settings ---------------------------------------------------------------


async def test_a_fresh_channel_gets_the_config_defaults(store: Store) -> None:
    assert await store.effective(GUILD, CHANNEL) == CONFIG
    assert await store.effective(None, CHANNEL) == CONFIG  # a DM: no guild
    assert await store.scope_values("channel", CHANNEL) == {}


async def test_fallback_chain_thread_parent_guild_config_per_key(store: Store) -> None:
    await put(store, "guild", GUILD, temperature=0.1, top_k=5, persona="guild voice")
    await put(store, "channel", CHANNEL, temperature=0.2, top_p=0.5)
    await put(store, "channel", THREAD, temperature=0.3)

    in_thread = await store.effective(GUILD, THREAD, parent_id=CHANNEL)
    assert in_thread.temperature == 0.3  # the thread's own
    assert in_thread.top_p == 0.5  # from the parent channel
    assert (in_thread.top_k, in_thread.persona) == (5, "guild voice")  # from the guild
    assert in_thread.max_new_tokens == 100  # from the config

    in_channel = await store.effective(GUILD, CHANNEL)
    assert (in_channel.temperature, in_channel.top_p, in_channel.top_k) == (0.2, 0.5, 5)

    elsewhere = await store.effective(GUILD, OTHER)
    assert (elsewhere.temperature, elsewhere.top_p) == (0.1, CONFIG.top_p)

    other_guild = await store.effective(GUILD + 1, OTHER)
    assert other_guild == CONFIG


async def test_explain_says_where_each_value_comes_from(store: Store) -> None:
    await put(store, "guild", GUILD, top_k=5)
    await put(store, "channel", CHANNEL, top_p=0.5)
    await put(store, "channel", THREAD, model="tiny")

    shown = await store.explain(GUILD, THREAD, CHANNEL)
    assert shown["model"] == ("tiny", "thread")
    assert shown["top_p"] == (0.5, "channel")
    assert shown["top_k"] == (5, "guild")
    assert shown["temperature"] == (0.8, "default")
    assert list(shown) == list(store_module.SETTING_KEYS)
    assert (await store.explain(GUILD, CHANNEL))["top_p"] == (0.5, "channel")


async def test_values_are_stored_normalised_and_returned(store: Store) -> None:
    stored = await put(store, "channel", CHANNEL, temperature="0.25", max_new_tokens="64")
    assert stored == {"temperature": 0.25, "max_new_tokens": 64}
    assert await store.scope_values("channel", CHANNEL) == stored


async def test_settings_survive_close_and_reopen(db_path: Path) -> None:
    async with await Store.open(db_path, CONFIG) as first:
        await put(first, "guild", GUILD, persona="Speak like a pirate. ☠")
        await put(first, "channel", CHANNEL, model="tiny", top_k=40)
        await first.set_meta("command_hash", "abc123")

    new_config = ChannelSettings(temperature=0.3)
    async with await Store.open(db_path, new_config) as second:
        settings = await second.effective(GUILD, CHANNEL)
        assert (settings.model, settings.top_k, settings.persona) == ("tiny", 40, "Speak like a pirate. ☠")
        assert settings.temperature == 0.3  # unset keys follow the new config
        assert await second.get_meta("command_hash") == "abc123"


async def test_meta_round_trips_and_overwrites(store: Store) -> None:
    assert await store.get_meta("command_hash") is None
    await store.set_meta("command_hash", "one")
    await store.set_meta("command_hash", "two")
    assert await store.get_meta("command_hash") == "two"


# --- refusing bad input -------------------------------------------------------------


async def test_unknown_key_is_refused_and_nothing_is_written(store: Store) -> None:
    with pytest.raises(ValidationError) as info:
        await put(store, "channel", CHANNEL, temperature=0.5, foo=1)
    assert "unknown setting `foo`" in info.value.message
    assert await store.scope_values("channel", CHANNEL) == {}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"top_p": 1.5}, "`top_p` must be in (0, 1], got 1.5"),
        ({"max_new_tokens": 512}, "`max_new_tokens` must be in [1, 256], got 512"),
        ({"model": "gpt-9"}, "unknown model `gpt-9`; available: smollm2, tiny"),
    ],
)
async def test_bad_value_is_refused_with_a_clear_message_and_nothing_written(
    store: Store, values: dict, message: str
) -> None:
    await put(store, "channel", CHANNEL, temperature=0.4)
    with pytest.raises(ValidationError) as info:
        await put(store, "channel", CHANNEL, temperature=0.9, **values)
    assert info.value.message == message
    assert await store.scope_values("channel", CHANNEL) == {"temperature": 0.4}


async def test_reset_with_an_unknown_key_changes_nothing(store: Store) -> None:
    await put(store, "channel", CHANNEL, top_k=3)
    with pytest.raises(ValidationError, match="unknown setting `colour`"):
        await store.reset("channel", CHANNEL, ["top_k", "colour"], actor_id=MOD_A)
    assert await store.scope_values("channel", CHANNEL) == {"top_k": 3}


async def test_a_corrupt_stored_value_falls_back_instead_of_breaking_the_channel(
    store: Store, db_path: Path
) -> None:
    await put(store, "channel", CHANNEL, top_k=3, top_p=0.5)
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE settings SET value = '7.5' WHERE key = 'top_p'")
    settings = await store.effective(GUILD, CHANNEL)
    assert (settings.top_k, settings.top_p) == (3, CONFIG.top_p)


# --- reset --------------------------------------------------------------------------


async def test_reset_restores_the_fallback(store: Store) -> None:
    await put(store, "guild", GUILD, temperature=0.1)
    await put(store, "channel", CHANNEL, temperature=0.2, top_k=7, persona="x")

    assert await store.reset("channel", CHANNEL, ["temperature", "top_p"], actor_id=MOD_A) == ["temperature"]
    settings = await store.effective(GUILD, CHANNEL)
    assert (settings.temperature, settings.top_k) == (0.1, 7)

    assert await store.reset("channel", CHANNEL, "top_k", actor_id=MOD_A) == ["top_k"]
    assert await store.reset("channel", CHANNEL, actor_id=MOD_A) == ["persona"]
    assert await store.effective(GUILD, CHANNEL) == CONFIG.merged({"temperature": 0.1})
    assert await store.reset("channel", CHANNEL, actor_id=MOD_A) == []


# --- concurrency --------------------------------------------------------------------


async def test_two_moderators_on_different_keys_lose_nothing(store: Store) -> None:
    writes = []
    for i in range(1, 21):
        writes.append(put(store, "channel", CHANNEL, MOD_A, temperature=i / 10))
        writes.append(put(store, "channel", CHANNEL, MOD_B, top_k=i))
    await asyncio.gather(*writes)
    assert await store.scope_values("channel", CHANNEL) == {"temperature": 2.0, "top_k": 20}


async def test_same_key_is_last_writer_wins(store: Store) -> None:
    writes = [
        put(store, "channel", CHANNEL, MOD_A if i % 2 else MOD_B, max_new_tokens=i) for i in range(1, 41)
    ]
    await asyncio.gather(*writes)
    assert (await store.effective(GUILD, CHANNEL)).max_new_tokens == 40


async def test_two_stores_on_one_file_write_concurrently_without_losing_anything(db_path: Path) -> None:
    channels = range(100, 140)
    async with await Store.open(db_path, CONFIG) as one, await Store.open(db_path, CONFIG) as two:
        await asyncio.gather(
            *(put(one, "channel", c, MOD_A, temperature=0.5, persona=f"p{c}") for c in channels),
            *(put(two, "channel", c, MOD_B, top_k=c - 99) for c in channels),
            *(put(one, "guild", GUILD, MOD_A, top_p=0.9) for _ in range(10)),
            *(put(two, "guild", GUILD, MOD_B, top_p=0.9) for _ in range(10)),
        )
        for c in channels:
            expected = {"temperature": 0.5, "top_k": c - 99, "persona": f"p{c}"}
            assert await one.scope_values("channel", c) == expected
            assert await two.scope_values("channel", c) == expected
    async with await Store.open(db_path, CONFIG) as reopened:
        assert (await reopened.effective(GUILD, 139)).top_k == 40


async def test_two_processes_opening_a_new_file_at_once_both_work(db_path: Path) -> None:
    one, two = await asyncio.gather(Store.open(db_path, CONFIG), Store.open(db_path, CONFIG))
    async with one, two:
        await put(one, "channel", CHANNEL, top_k=2)
        assert (await two.effective(GUILD, CHANNEL)).top_k == 2
    assert user_version(db_path) == len(store_module.MIGRATIONS)


# --- the file itself and migrations -------------------------------------------------


async def test_wal_mode_is_on(store: Store, db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    await put(store, "channel", CHANNEL, top_k=2)
    assert db_path.with_name(db_path.name + "-wal").exists()


async def test_a_version_0_file_is_migrated(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE unrelated (x)")  # a file that exists but has no schema yet
    assert user_version(db_path) == 0

    async with await Store.open(db_path, CONFIG) as store:
        await put(store, "channel", CHANNEL, top_k=9)
        assert (await store.effective(GUILD, CHANNEL)).top_k == 9
    assert user_version(db_path) == len(store_module.MIGRATIONS)
    assert {"settings", "meta", "unrelated"} <= tables(db_path)


async def test_an_older_version_gets_only_the_missing_migrations(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await Store.open(db_path, CONFIG) as store:
        await put(store, "channel", CHANNEL, top_k=9)
    current = len(store_module.MIGRATIONS)
    assert user_version(db_path) == current

    later = ("CREATE TABLE blocklist (guild_id INTEGER, word TEXT)", "CREATE INDEX bl ON blocklist (word)")
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, later])
    async with await Store.open(db_path, CONFIG) as store:
        assert (await store.effective(GUILD, CHANNEL)).top_k == 9  # data kept
    assert user_version(db_path) == current + 1
    assert "blocklist" in tables(db_path)


async def test_a_failing_migration_leaves_the_file_as_it_was(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await Store.open(db_path, CONFIG):
        pass
    broken = ("CREATE TABLE half_done (x)", "CREATE TABLE oops (")
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, broken])
    with pytest.raises(sqlite3.OperationalError):
        await Store.open(db_path, CONFIG)
    assert user_version(db_path) == len(store_module.MIGRATIONS) - 1
    assert "half_done" not in tables(db_path)


async def test_a_file_from_a_newer_version_is_refused(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaError) as info:
        await Store.open(db_path, CONFIG)
    message = str(info.value)
    assert (
        "schema version 99" in message
        and f"knows ({len(store_module.MIGRATIONS)})" in message
        and str(db_path) in message
    )
    assert user_version(db_path) == 99  # untouched
    assert "settings" not in tables(db_path)
