"""Start-up: commands are synced only when they changed; the token never reaches the log."""

from __future__ import annotations

import logging

import pytest

from loopback import LoopbackDiscord
from tests.e2e.conftest import TOKEN
from tests.e2e.harness import BotRunner, has_footer, run

pytestmark = pytest.mark.timeout(60)

CORE = ("cogs.generate", "cogs.chat", "cogs.fill_mask", "cogs.settings", "cogs.status")


def command_puts(server: LoopbackDiscord) -> list[str]:
    return [c.path for c in server.calls_to("PUT", "/commands") if c.status == 200]


async def test_commands_are_synced_once_and_again_only_when_changed_or_forced(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(extensions=CORE)
    app = server.application_id
    assert command_puts(server) == [f"/applications/{app}/commands"]
    names = {c["name"] for c in server.synced_commands()}
    assert {"generate", "chat", "fill", "settings", "status", "help"} <= names

    await runner.restart()  # same database, same commands: Discord is not asked again
    assert len(command_puts(server)) == 1
    reply = await run(server, "status")  # the commands synced before still work
    assert reply.ephemeral and (reply.content or "").startswith("**Status**")

    await runner.restart(FORCE_COMMAND_SYNC="true")
    assert len(command_puts(server)) == 2

    await runner.stop()
    await runner.start(extensions=CORE[:3])  # /status and /help are gone: the change is synced
    assert len(command_puts(server)) == 3
    assert "status" not in {c["name"] for c in server.synced_commands()}


async def test_guild_ids_sync_to_those_guilds(server: LoopbackDiscord, runner: BotRunner) -> None:
    assert server.guild
    await runner.start(DISCORD_GUILD_IDS=str(server.guild.id))
    app = server.application_id
    assert command_puts(server) == [f"/applications/{app}/guilds/{server.guild.id}/commands"]
    assert server.synced_commands() == []
    assert "generate" in {c["name"] for c in server.synced_commands(server.guild)}
    reply = await run(server, "generate", {"prompt": "Hello", "max_new_tokens": 3}, until=has_footer)
    assert reply.payload["data"]["guild_id"] == str(server.guild.id)

    await runner.restart(DISCORD_GUILD_IDS=str(server.guild.id))
    assert len(command_puts(server)) == 1


async def test_the_token_never_appears_in_the_log(
    server: LoopbackDiscord, runner: BotRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await runner.start(LOG_LEVEL="DEBUG")
    assert runner.config is not None and runner.config.token == TOKEN
    assert TOKEN not in repr(runner.config)

    await run(server, "generate", {"prompt": "Hello", "max_new_tokens": 3}, until=has_footer)
    refused = await run(server, "generate", {"prompt": "Hello", "top_p": 0.0})
    assert refused.ephemeral

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("the model fell over")

    runner.service.stream = broken  # type: ignore[union-attr,method-assign]
    failed = await run(server, "generate", {"prompt": "Hello"})
    assert failed.ephemeral and "Something went wrong" in (failed.content or "")
    await runner.stop()

    assert any("the model fell over" in record.getMessage() or record.exc_info for record in caplog.records)
    assert any(
        record.name.startswith("discord.") and record.levelno == logging.DEBUG for record in caplog.records
    )
    for record in caplog.records:
        assert TOKEN not in record.getMessage(), record
    assert TOKEN not in caplog.text  # tracebacks included
