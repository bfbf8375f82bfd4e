"""The settings store on a real database: fallback, persistence, concurrency."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from domain.settings import SETTING_KEYS, ChannelSettings
from model_service.errors import ValidationError
from storage import Storage
from tests.storage.conftest import Opener, Sql

GUILD, CHANNEL, THREAD, OTHER = 10, 20, 30, 40
MOD_A, MOD_B = 1001, 1002
CONFIG = ChannelSettings(temperature=0.8, max_new_tokens=100)
MODELS = ("smollm2", "tiny")


@pytest.fixture
def store_defaults() -> ChannelSettings:
    return CONFIG


async def put(store: Storage, scope: str, scope_id: int, actor: int = MOD_A, **values: object) -> dict:
    return await store.settings.set_values(
        scope, scope_id, values, actor_id=actor, max_new_tokens_cap=256, model_names=MODELS
    )


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# --- reading settings ---------------------------------------------------------------


async def test_a_fresh_channel_gets_the_config_defaults(store: Storage) -> None:
    assert await store.settings.effective(GUILD, CHANNEL) == CONFIG
    assert await store.settings.effective(None, CHANNEL) == CONFIG  # a DM: no guild
    assert await store.settings.scope_values("channel", CHANNEL) == {}


async def test_fallback_chain_thread_parent_guild_config_per_key(store: Storage) -> None:
    await put(store, "guild", GUILD, temperature=0.1, top_k=5, persona="guild voice")
    await put(store, "channel", CHANNEL, temperature=0.2, top_p=0.5)
    await put(store, "channel", THREAD, temperature=0.3)

    in_thread = await store.settings.effective(GUILD, THREAD, parent_id=CHANNEL)
    assert in_thread.temperature == 0.3  # the thread's own
    assert in_thread.top_p == 0.5  # from the parent channel
    assert (in_thread.top_k, in_thread.persona) == (5, "guild voice")  # from the guild
    assert in_thread.max_new_tokens == 100  # from the config

    in_channel = await store.settings.effective(GUILD, CHANNEL)
    assert (in_channel.temperature, in_channel.top_p, in_channel.top_k) == (0.2, 0.5, 5)

    elsewhere = await store.settings.effective(GUILD, OTHER)
    assert (elsewhere.temperature, elsewhere.top_p) == (0.1, CONFIG.top_p)

    other_guild = await store.settings.effective(GUILD + 1, OTHER)
    assert other_guild == CONFIG


async def test_explain_says_where_each_value_comes_from(store: Storage) -> None:
    await put(store, "guild", GUILD, top_k=5)
    await put(store, "channel", CHANNEL, top_p=0.5)
    await put(store, "channel", THREAD, model="tiny")

    shown = await store.settings.explain(GUILD, THREAD, CHANNEL)
    assert shown["model"] == ("tiny", "thread")
    assert shown["top_p"] == (0.5, "channel")
    assert shown["top_k"] == (5, "guild")
    assert shown["temperature"] == (0.8, "default")
    assert list(shown) == list(SETTING_KEYS)
    assert (await store.settings.explain(GUILD, CHANNEL))["top_p"] == (0.5, "channel")


async def test_values_are_stored_normalised_and_returned(store: Storage) -> None:
    stored = await put(store, "channel", CHANNEL, temperature="0.25", max_new_tokens="64")
    assert stored == {"temperature": 0.25, "max_new_tokens": 64}
    assert await store.settings.scope_values("channel", CHANNEL) == stored


async def test_settings_survive_close_and_reopen(open_storage: Opener) -> None:
    async with await open_storage(CONFIG) as first:
        await put(first, "guild", GUILD, persona="Speak like a pirate. ☠")
        await put(first, "channel", CHANNEL, model="tiny", top_k=40)
        await first.meta.set_meta("command_hash", "abc123")

    new_config = ChannelSettings(temperature=0.3)
    async with await open_storage(new_config) as second:
        settings = await second.settings.effective(GUILD, CHANNEL)
        assert (settings.model, settings.top_k, settings.persona) == ("tiny", 40, "Speak like a pirate. ☠")
        assert settings.temperature == 0.3  # unset keys follow the new config
        assert await second.meta.get_meta("command_hash") == "abc123"


async def test_meta_round_trips_and_overwrites(store: Storage) -> None:
    assert await store.meta.get_meta("command_hash") is None
    await store.meta.set_meta("command_hash", "one")
    await store.meta.set_meta("command_hash", "two")
    assert await store.meta.get_meta("command_hash") == "two"


# --- refusing bad input -------------------------------------------------------------


async def test_unknown_key_is_refused_and_nothing_is_written(store: Storage) -> None:
    with pytest.raises(ValidationError) as info:
        await put(store, "channel", CHANNEL, temperature=0.5, foo=1)
    assert "unknown setting `foo`" in info.value.message
    assert await store.settings.scope_values("channel", CHANNEL) == {}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"top_p": 1.5}, "`top_p` must be in (0, 1], got 1.5"),
        ({"max_new_tokens": 512}, "`max_new_tokens` must be in [1, 256], got 512"),
        ({"model": "gpt-9"}, "unknown model `gpt-9`; available: smollm2, tiny"),
    ],
)
async def test_bad_value_is_refused_with_a_clear_message_and_nothing_written(
    store: Storage, values: dict, message: str
) -> None:
    await put(store, "channel", CHANNEL, temperature=0.4)
    with pytest.raises(ValidationError) as info:
        await put(store, "channel", CHANNEL, temperature=0.9, **values)
    assert info.value.message == message
    assert await store.settings.scope_values("channel", CHANNEL) == {"temperature": 0.4}


async def test_reset_with_an_unknown_key_changes_nothing(store: Storage) -> None:
    await put(store, "channel", CHANNEL, top_k=3)
    with pytest.raises(ValidationError, match="unknown setting `colour`"):
        await store.settings.reset("channel", CHANNEL, ["top_k", "colour"], actor_id=MOD_A)
    assert await store.settings.scope_values("channel", CHANNEL) == {"top_k": 3}


async def test_a_corrupt_stored_value_falls_back_instead_of_breaking_the_channel(
    store: Storage, sql: Sql
) -> None:
    await put(store, "channel", CHANNEL, top_k=3, top_p=0.5)
    await sql("UPDATE settings SET value = '7.5' WHERE key = 'top_p'")
    settings = await store.settings.effective(GUILD, CHANNEL)
    assert (settings.top_k, settings.top_p) == (3, CONFIG.top_p)


# --- reset --------------------------------------------------------------------------


async def test_reset_restores_the_fallback(store: Storage) -> None:
    await put(store, "guild", GUILD, temperature=0.1)
    await put(store, "channel", CHANNEL, temperature=0.2, top_k=7, persona="x")

    assert await store.settings.reset("channel", CHANNEL, ["temperature", "top_p"], actor_id=MOD_A) == [
        "temperature"
    ]
    settings = await store.settings.effective(GUILD, CHANNEL)
    assert (settings.temperature, settings.top_k) == (0.1, 7)

    assert await store.settings.reset("channel", CHANNEL, "top_k", actor_id=MOD_A) == ["top_k"]
    assert await store.settings.reset("channel", CHANNEL, actor_id=MOD_A) == ["persona"]
    assert await store.settings.effective(GUILD, CHANNEL) == CONFIG.merged({"temperature": 0.1})
    assert await store.settings.reset("channel", CHANNEL, actor_id=MOD_A) == []


# --- concurrency --------------------------------------------------------------------


async def test_two_moderators_on_different_keys_lose_nothing(store: Storage) -> None:
    writes = []
    for i in range(1, 21):
        writes.append(put(store, "channel", CHANNEL, MOD_A, temperature=i / 10))
        writes.append(put(store, "channel", CHANNEL, MOD_B, top_k=i))
    await asyncio.gather(*writes)
    assert await store.settings.scope_values("channel", CHANNEL) == {"temperature": 2.0, "top_k": 20}


async def test_same_key_is_last_writer_wins(store: Storage) -> None:
    writes = [
        put(store, "channel", CHANNEL, MOD_A if i % 2 else MOD_B, max_new_tokens=i) for i in range(1, 41)
    ]
    await asyncio.gather(*writes)
    assert (await store.settings.effective(GUILD, CHANNEL)).max_new_tokens == 40


async def test_two_stores_on_one_file_write_concurrently_without_losing_anything(
    open_storage: Opener,
) -> None:
    channels = range(100, 140)
    async with await open_storage(CONFIG) as one, await open_storage(CONFIG) as two:
        await asyncio.gather(
            *(put(one, "channel", c, MOD_A, temperature=0.5, persona=f"p{c}") for c in channels),
            *(put(two, "channel", c, MOD_B, top_k=c - 99) for c in channels),
            *(put(one, "guild", GUILD, MOD_A, top_p=0.9) for _ in range(10)),
            *(put(two, "guild", GUILD, MOD_B, top_p=0.9) for _ in range(10)),
        )
        for c in channels:
            expected = {"temperature": 0.5, "top_k": c - 99, "persona": f"p{c}"}
            assert await one.settings.scope_values("channel", c) == expected
            assert await two.settings.scope_values("channel", c) == expected
    async with await open_storage(CONFIG) as reopened:
        assert (await reopened.settings.effective(GUILD, 139)).top_k == 40


async def test_two_processes_opening_a_new_file_at_once_both_work(open_storage: Opener) -> None:
    one, two = await asyncio.gather(open_storage(CONFIG), open_storage(CONFIG))
    async with one, two:
        await put(one, "channel", CHANNEL, top_k=2)
        assert (await two.settings.effective(GUILD, CHANNEL)).top_k == 2
