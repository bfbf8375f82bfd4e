"""/settings end to end: who may change what, inheritance into threads, persistence across a restart."""

from __future__ import annotations

import re

import pytest

import app as bot_module
from loopback import InteractionRecord, InvalidInvocation, LoopbackDiscord, Overwrite, Perm
from tests.e2e.harness import BotRunner, has_footer, no_pings, run

pytestmark = pytest.mark.timeout(60)

NEEDS_MANAGE_CHANNELS = (
    "🚫 Changing settings needs the Manage Channels permission or this server's moderator role."
)
NEEDS_MANAGE_SERVER = (
    "🚫 Changing settings needs the Manage Server permission or this server's moderator role."
)


def shown(record: InteractionRecord, key: str) -> tuple[str, str]:
    """(value, source) of one line of ``/settings show``."""
    match = re.search(rf"^• \*\*{key}\*\*: (.+) · \*(.+)\*$", record.content or "", re.MULTILINE)
    assert match, record.content
    return match.group(1), match.group(2)


def refused(record: InteractionRecord, text: str) -> bool:
    return record.callback_type == 4 and record.ephemeral and record.content == text


async def test_a_moderator_changes_a_channel_setting_publicly(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    assert server.moderator and server.general
    reply = await run(server, "config set", {"temperature": 0.3, "top_k": 40}, user=server.moderator)

    assert not reply.ephemeral
    assert reply.content == (
        f"⚙️ <@{server.moderator.id}> set **temperature** → `0.3`, **top_k** → `40` for <#{server.general.id}>."
    )
    assert no_pings(reply)  # the mention is shown, nobody is pinged
    show = await run(server, "settings show")
    assert show.ephemeral
    assert shown(show, "temperature") == ("`0.3`", "channel")
    assert shown(show, "top_k") == ("`40`", "channel")
    assert shown(show, "top_p") == ("`0.95`", "bot default")
    assert "models available: tiny, bert, long" in (show.content or "")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"temperature": 0.3}, NEEDS_MANAGE_CHANNELS),
        ({"scope": "channel", "persona": "Be rude."}, NEEDS_MANAGE_CHANNELS),
        ({"scope": "server", "temperature": 0.3}, NEEDS_MANAGE_SERVER),
        ({"scope": "server", "model": "bert", "max_new_tokens": 5}, NEEDS_MANAGE_SERVER),
    ],
)
async def test_a_plain_member_is_refused_and_nothing_changes(
    server: LoopbackDiscord, transcord: bot_module.Transcord, options: dict[str, object], expected: str
) -> None:
    with pytest.raises(InvalidInvocation, match="Discord hides /config from member"):
        await server.invoke("config set", options, user=server.member)
    assert server.guild is not None
    server.grant_command("config", server.guild)  # an admin opened /config to everyone: still refused
    reply = await run(server, "config set", options, user=server.member)
    assert refused(reply, expected), reply.summary()

    reset = await run(server, "config reset", {"scope": str(options.get("scope", "channel"))})
    assert refused(reset, expected), reset.summary()
    show = await run(server, "settings show")
    assert all(source == "bot default" for source in re.findall(r" · \*(.+)\*$", show.content or "", re.M))


async def test_the_owner_names_a_moderator_role_whose_members_may_change_settings(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    helpers = server.add_role("Helpers")  # no permissions of its own
    helper = server.add_member("helper", [helpers])
    server.grant_command("config", helpers)  # Integrations: the role sees /config
    before = await run(server, "config set", {"temperature": 0.5}, user=helper)
    assert refused(before, NEEDS_MANAGE_CHANNELS)

    # Naming the role needs Manage Server: a moderator (Manage Channels) may not.
    by_moderator = await run(server, "config moderator-role", {"role": helpers}, user=server.moderator)
    assert refused(by_moderator, "🚫 Setting the moderator role needs the Manage Server permission.")
    named = await run(server, "config moderator-role", {"role": helpers}, user=server.owner)
    assert named.content == f"🛡️ Members of <@&{helpers.id}> may now change settings."
    assert no_pings(named)

    after = await run(server, "config set", {"temperature": 0.5}, user=helper)
    assert not after.ephemeral and "**temperature** → `0.5`" in (after.content or "")
    server_wide = await run(server, "config set", {"scope": "server", "top_k": 7}, user=helper)
    assert "for the server default" in (server_wide.content or ""), server_wide.summary()
    with pytest.raises(InvalidInvocation):
        await server.invoke("config set", {"temperature": 0.5}, user=server.member)

    cleared = await run(server, "config moderator-role", user=server.owner)
    assert cleared.content == "🛡️ Moderator role cleared."
    again = await run(server, "config set", {"temperature": 0.6}, user=helper)
    assert refused(again, NEEDS_MANAGE_CHANNELS)


async def test_manage_channels_in_one_channel_does_not_reach_the_server_default(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    assert server.guild
    keeper = server.add_member("keeper")
    own = server.add_channel(
        "keepers-room", overwrites=[Overwrite(keeper.id, 1, allow=int(Perm.MANAGE_CHANNELS))]
    )
    here = await run(server, "config set", {"temperature": 0.2}, user=keeper, channel=own)
    assert not here.ephemeral, here.summary()
    with pytest.raises(InvalidInvocation, match="Discord hides /config from keeper"):
        await server.invoke("config set", {"temperature": 0.2}, user=keeper)  # not in #general
    server_wide = await run(
        server, "config set", {"scope": "server", "temperature": 0.2}, user=keeper, channel=own
    )
    assert refused(server_wide, NEEDS_MANAGE_SERVER), server_wide.summary()


async def test_a_thread_inherits_its_channel_until_it_sets_its_own(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    assert server.thread and server.moderator
    await run(server, "config set", {"scope": "server", "top_k": 9}, user=server.owner)
    await run(server, "config set", {"max_new_tokens": 5, "temperature": 0.3}, user=server.moderator)

    show = await run(server, "settings show", channel=server.thread)
    assert shown(show, "max_new_tokens") == ("`5`", "channel")
    assert shown(show, "temperature") == ("`0.3`", "channel")
    assert shown(show, "top_k") == ("`9`", "server default")
    # What a user notices: a reply in the thread stops at the channel's 5 tokens.
    reply = await run(
        server, "generate", {"prompt": "Once upon a time"}, channel=server.thread, until=has_footer
    )
    assert "\n-# 5 tokens · " in (reply.content or ""), reply.summary()

    own = await run(server, "config set", {"temperature": 1.1}, user=server.moderator, channel=server.thread)
    assert f"for <#{server.thread.id}>" in (own.content or "")
    show = await run(server, "settings show", channel=server.thread)
    assert shown(show, "temperature") == ("`1.1`", "this thread")
    channel = await run(server, "settings show")
    assert shown(channel, "temperature") == ("`0.3`", "channel")


async def test_settings_survive_a_restart_and_reset_restores_inheritance(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    assert server.moderator and server.general
    await runner.start()
    persona = "You are a cheerful pirate."
    await run(server, "config set", {"persona": persona, "model": "long"}, user=server.moderator)
    await run(server, "config set", {"scope": "server", "temperature": 0.4}, user=server.owner)

    await runner.restart()
    show = await run(server, "settings show", channel=server.thread)
    assert shown(show, "persona") == (f"“{persona}”", "channel")
    assert shown(show, "model") == ("`long`", "channel")
    assert shown(show, "temperature") == ("`0.4`", "server default")

    reset = await run(server, "config reset", {"setting": "persona"}, user=server.moderator)
    assert reset.content == (
        f"⚙️ <@{server.moderator.id}> reset persona for <#{server.general.id}>; inherited values apply."
    )
    show = await run(server, "settings show")
    assert shown(show, "persona") == ("*(none)*", "bot default")
    assert shown(show, "model") == ("`long`", "channel")
    everything = await run(server, "config reset", user=server.moderator)
    assert "reset model for" in (everything.content or "")
    show = await run(server, "settings show")
    assert shown(show, "model") == ("*(the bot's default)*", "bot default")
    assert shown(show, "temperature") == ("`0.4`", "server default")
    nothing = await run(server, "config reset", user=server.moderator)
    assert nothing.ephemeral and (nothing.content or "").startswith("Nothing to reset")


async def test_status_and_help_answer_only_the_asker(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    status = await run(server, "status")
    assert status.callback_type == 4 and status.ephemeral, status.summary()
    text = status.content or ""
    assert text.startswith("**Status**")
    assert re.search(r"^• \*\*tiny\*\* on transformers, `cpu` \(float32, ", text, re.M), text
    assert re.search(r"^Queue: 0/256 requests", text, re.M), text
    assert no_pings(status)

    help_ = await run(server, "help")
    assert help_.callback_type == 4 and help_.ephemeral
    synced = {c["name"] for c in server.synced_commands()}
    shown = "".join(m.content for m in help_.messages)  # a long help comes in parts
    for name in ("generate", "chat", "fill", "settings", "status"):
        assert f"**/{name}" in shown
        assert name in synced
