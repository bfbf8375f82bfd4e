"""Abuse on purpose: a member tries every settings and moderator command, and every extra option a
modified client could send; nothing changes, and no command reaches another channel's settings.

One real bot (tiny model) serves the whole module; each test works in channels of its own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from loopback import Channel, LoopbackDiscord, Overwrite, Perm
from tests.e2e.conftest import TOKEN
from tests.e2e.harness import BotRunner
from tests.e2e.reliability import LogRecorder, ask, new_channel, pings_nobody, refusal, shared_bot

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]

Bot = tuple[LoopbackDiscord, BotRunner, LogRecorder]
CHANNEL_OPTION_TYPES = {7}  # CHANNEL; USER/ROLE/MENTIONABLE options target people, not channels


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2_dir: Path) -> AsyncIterator[Bot]:
    async with shared_bot(
        tmp_path_factory.mktemp("abuse"), {"tiny": tiny_gpt2_dir}, DEFAULT_MAX_NEW_TOKENS="4"
    ) as running:
        yield running


def snapshot(runner: BotRunner) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read straight from the bot's SQLite file."""
    assert runner.config is not None
    with sqlite3.connect(runner.config.database_path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(db.execute(f"SELECT * FROM {t}"), key=repr) for t in tables}


def database_bytes(path: Path) -> bytes:
    """The SQLite file and its write-ahead log, as stored on disk."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def member_attempts(server: LoopbackDiscord, elsewhere: Channel) -> Iterator[tuple[str, dict[str, object]]]:
    """Every /settings and /mod subcommand, with the options a client offers and ones it doesn't."""
    assert server.moderator_role
    extras: list[dict[str, object]] = [
        {},
        {"scope": "server"},
        {"channel": elsewhere, "channel_id": str(elsewhere.id), "guild_id": "0", "force": True},
    ]
    base: list[tuple[str, dict[str, object]]] = [
        ("config set", {"temperature": 0.1, "persona": "Obey the member."}),
        ("config set", {"scope": "server", "model": "tiny", "max_new_tokens": 1}),
        ("config reset", {}),
        ("config reset", {"setting": "temperature", "scope": "server"}),
        ("config moderator-role", {"role": server.moderator_role}),
        ("config moderator-role", {}),
        ("mod lock", {}),
        ("mod unlock", {}),
        ("mod cooldown", {"seconds": 3600}),
        ("mod cooldown", {"seconds": 0}),
        ("mod limit", {"n": 1}),
        ("mod blocklist add", {"phrase": "hello"}),
        ("mod blocklist remove", {"phrase": "dragon"}),
        ("mod blocklist list", {}),
        ("mod show", {}),
        ("mod log", {"count": 50}),
    ]
    for command, options in base:
        for extra in extras:
            yield command, {**options, **extra}


async def test_a_member_cannot_change_or_see_moderation_by_any_subcommand_or_option(bot: Bot) -> None:
    server, runner, _ = bot
    assert server.moderator and server.member
    channel = new_channel(server)
    thread = server.add_thread(channel, "members-thread", owner=server.member.user)
    elsewhere = new_channel(server)
    await ask(server, "mod blocklist add", {"phrase": "dragon"}, user=server.moderator, channel=channel)
    await ask(server, "config set", {"temperature": 0.4}, user=server.moderator, channel=channel)
    before = snapshot(runner)

    failures = []
    attempts = 0
    for where in (channel, thread):
        for command, options in member_attempts(server, elsewhere):
            attempts += 1
            reply = await ask(server, command, options, user=server.member, channel=where, strict=False)
            text = refusal(reply) or ""
            if not (text.startswith("🚫 ") and pings_nobody(reply)):
                failures.append(f"{command} {sorted(options)} in #{where.name}: {reply.summary()}")
    assert not failures and attempts == 96, "\n".join(failures)
    assert snapshot(runner) == before  # not one row written, not even to the audit log

    # The member may still read this channel's settings, and use the model.
    show = await ask(server, "settings show", user=server.member, channel=channel)
    assert show.ephemeral and "• **temperature**: `0.4` · *channel*" in (show.content or "")


def _options(options: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for option in options:
        yield option
        yield from _options(option.get("options") or [])


async def test_no_command_can_read_or_change_another_channels_settings(bot: Bot) -> None:
    server, runner, _ = bot
    assert server.moderator and server.member and server.guild
    # The command schema offers no way to name another channel.
    for command in server.synced_commands():
        for option in _options(command.get("options") or []):
            assert option["type"] not in CHANNEL_OPTION_TYPES, (command["name"], option)
            assert "channel" not in option["name"], (command["name"], option)
            for choice in option.get("choices") or []:
                assert choice["value"] in ("channel", "server") or option["name"] != "scope"

    secret = new_channel(server, "secret")
    await ask(
        server,
        "config set",
        {"temperature": 0.3, "persona": "The secret persona."},
        user=server.moderator,
        channel=secret,
    )
    await ask(server, "mod blocklist add", {"phrase": "classified"}, user=server.moderator, channel=secret)
    await ask(server, "mod lock", user=server.moderator, channel=secret)
    secret_rows = {k: v for k, v in snapshot(runner).items() if k in ("settings", "blocked_phrases")}

    # Someone with Manage Channels in their own channel only, sending options that name the secret one.
    keeper = server.add_member("keeper")
    own = server.add_channel(
        "keepers-room", overwrites=[Overwrite(keeper.id, 1, allow=int(Perm.MANAGE_CHANNELS))]
    )
    aimed = {"channel": secret, "channel_id": str(secret.id)}
    show = await ask(server, "settings show", aimed, user=server.member, channel=own, strict=False)
    assert "secret persona" not in (show.content or "") and "`0.3`" not in (show.content or ""), show.content
    for user in (keeper, server.member):
        listed = await ask(server, "mod blocklist list", aimed, user=user, channel=own, strict=False)
        assert "classified" not in (listed.content or ""), listed.summary()
        log = await ask(server, "mod log", aimed, user=user, channel=own, strict=False)
        assert "classified" not in (log.content or "") and "secret" not in (log.content or ""), log.summary()

    changed = await ask(
        server, "config set", {"temperature": 0.9, **aimed}, user=keeper, channel=own, strict=False
    )
    assert f"for <#{own.id}>." in (changed.content or ""), (
        changed.summary()
    )  # its own channel, not the secret one
    unlock = await ask(server, "mod unlock", aimed, user=keeper, channel=own, strict=False)
    assert refusal(unlock) == "🔓 This channel is not locked.", unlock.summary()
    reset = await ask(server, "config reset", aimed, user=keeper, channel=own, strict=False)
    assert f"for <#{own.id}>" in (reset.content or ""), reset.summary()

    after = {k: v for k, v in snapshot(runner).items() if k in ("settings", "blocked_phrases")}
    assert after == secret_rows  # the secret channel's rows are exactly as they were
    still_locked = await ask(server, "generate", {"prompt": "Hello"}, user=server.moderator, channel=secret)
    assert (refusal(still_locked) or "").startswith("🔒 "), still_locked.summary()


async def test_the_token_is_nowhere_a_user_or_the_log_can_see(bot: Bot) -> None:
    server, runner, recorder = bot
    status = await ask(server, "status")
    assert TOKEN not in (status.content or "")

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("the service fell over")

    service: Any = runner.service
    service.stream = broken
    try:
        crashed = await ask(server, "generate", {"prompt": "Hello"}, channel=new_channel(server))
    finally:
        del service.stream
    assert crashed.ephemeral and TOKEN not in (crashed.content or "")
    assert any(r.exc_info for r in recorder.records), "the crash was not logged with its traceback"
    everything = recorder.text()  # every record of this module at DEBUG, tracebacks included
    assert "the service fell over" in everything and TOKEN not in everything
    assert runner.config is not None
    assert TOKEN.encode() not in database_bytes(runner.config.database_path)
