"""Who may run what: moderation fails closed, and moderator commands are hidden from members.

The bot, its cogs, the store and the loopback server are real; the model is the fake service,
so a test can tell that the model was never asked.
"""

from __future__ import annotations

import logging
import sqlite3

import pytest

from core.facade import MODERATION_DOWN
from loopback import LoopbackDiscord
from tests.cogs.fakes import FakeService
from tests.e2e.harness import BotRunner, has_footer, run

pytestmark = pytest.mark.timeout(60)


async def test_with_its_tables_broken_every_model_command_refuses_and_the_model_is_never_asked(
    server: LoopbackDiscord,
    runner: BotRunner,
    fake: FakeService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = runner.env["DATABASE_PATH"]
    await runner.start()
    working = await run(server, "generate", {"prompt": "Before"}, until=has_footer)
    assert not working.ephemeral
    await runner.stop()
    asked = (len(fake.generation_requests), len(fake.fill_requests))
    # The moderation table is gone (a damaged or hand-edited database); everything else is intact.
    with sqlite3.connect(database) as db:
        db.execute("ALTER TABLE channel_moderation RENAME TO channel_moderation_lost")

    await runner.start()
    for command, options in (
        ("generate", {"prompt": "Once upon a time"}),
        ("chat say", {"message": "Hello"}),
        ("fill", {"text": "The capital of France is [MASK]."}),
        ("story start", {"premise": "A dragon afraid of the dark"}),
    ):
        refused = await run(server, command, options)
        assert refused.ephemeral, (command, refused.summary())
        assert MODERATION_DOWN in (refused.content or ""), (command, refused.summary())
        assert not refused.is_thinking
    assert (len(fake.generation_requests), len(fake.fill_requests)) == asked  # the model never ran

    status = await run(server, "status")
    assert "🛡️ Moderation could not be loaded: model commands are refused until it is." in (
        status.content or ""
    )
    assert "cogs.mod" in (status.content or "")  # /mod itself could not load either
    assert any(
        r.levelno == logging.ERROR and r.getMessage().startswith("moderation could not be loaded")
        for r in caplog.records
    )

    # Repaired, the next start moderates again.
    await runner.stop()
    with sqlite3.connect(database) as db:
        db.execute("ALTER TABLE channel_moderation_lost RENAME TO channel_moderation")
    await runner.start()
    again = await run(server, "generate", {"prompt": "After"}, until=has_footer)
    assert not again.ephemeral and (again.content or "").startswith("**After**")


async def test_cogs_have_no_way_to_the_model_but_the_moderated_command(runner: BotRunner) -> None:
    transcord = await runner.start()
    assert not hasattr(transcord, "service")
    runs_a_model = {"stream", "generate", "fill_mask"}
    assert not runs_a_model & {name for name in dir(transcord.models) if not name.startswith("_")}


# -- what Discord shows whom ----------------------------------------------------------------------


async def test_moderator_groups_are_hidden_from_members_and_server_only_groups_from_dms(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start()
    synced = {c["name"]: c for c in server.synced_commands()}
    manage_channels = str(1 << 4)
    for name in ("mod", "config"):
        assert synced[name]["default_member_permissions"] == manage_channels, name
    for name in ("mod", "config", "story"):
        assert synced[name]["contexts"] == [0], name  # guild only: not in DMs or group DMs
    for name in ("generate", "chat", "fill", "settings", "status", "help"):
        assert synced[name]["default_member_permissions"] is None, name
    # /settings show stays with everyone: members may see what this channel uses.
    assert [o["name"] for o in synced["settings"]["options"]] == ["show"]
