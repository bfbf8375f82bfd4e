"""Characters through the loopback Discord: moderators make them, they speak through one webhook of
the bot's per channel under their own name and avatar, mention nobody, and remember per channel."""

from __future__ import annotations

import pytest

import app as bot_module
from loopback import LoopbackDiscord
from loopback.records import MessageRecord
from loopback.world import Perm
from tests.e2e.harness import BotRunner, all_text, run
from tests.e2e.test_chat import Spy

pytestmark = pytest.mark.timeout(120)
FOOTER = "\n-# "


def grant_webhooks(server: LoopbackDiscord) -> None:
    bot_id = server.bot_user.id
    role = next(r for r in server.guild.roles.values() if r.bot_id == bot_id)  # type: ignore[union-attr]
    role.permissions |= Perm.MANAGE_WEBHOOKS


def webhook_messages(server: LoopbackDiscord) -> list[MessageRecord]:
    return [m for m in server.state.messages.values() if m.webhook_author is not None and not m.deleted]


def webhook_calls(server: LoopbackDiscord) -> list:
    return [
        c for c in server.state.calls if c.path.startswith("/webhooks/") and c.method in ("POST", "PATCH")
    ]


async def finished(server: LoopbackDiscord, count: int) -> MessageRecord:
    await server.wait_for(
        lambda: len([m for m in webhook_messages(server) if FOOTER in m.content]) >= count,
        30,
        "a character's answer",
    )
    return [m for m in webhook_messages(server) if FOOTER in m.content][count - 1]


async def test_characters_are_made_by_moderators_and_speak_through_one_webhook(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    spy = Spy(runner)
    refused = await run(server, "character create", {"name": "Mira", "persona": "A pirate."})
    assert "moderator" in all_text(refused)
    taken = await run(
        server, "character create", {"name": "moderator", "persona": "x"}, user=server.moderator
    )
    assert "name of" in all_text(taken)
    clyde = await run(
        server, "character create", {"name": "Clyde Bot", "persona": "x"}, user=server.moderator
    )
    assert "Discord refuses" in all_text(clyde)
    made = await run(
        server, "character create", {"name": "Mira", "persona": "A pirate captain."}, user=server.moderator
    )
    assert "Mira" in all_text(made) and "ready" in all_text(made)
    await run(
        server,
        "character create",
        {"name": "Bard", "persona": "A singer.", "avatar_url": "https://example.com/bard.png"},
        user=server.moderator,
    )
    listing = await run(server, "character list")
    assert "Mira" in all_text(listing) and "Bard" in all_text(listing)

    # Without Manage Webhooks: a clear refusal naming the permission.
    nope = await run(server, "chat say", {"message": "hi", "character": "Mira"})
    await server.wait_idle(quiet=0.5, timeout=15)
    assert "Manage Webhooks" in all_text(nope)

    grant_webhooks(server)
    await run(server, "chat say", {"message": "Ahoy @everyone", "character": "Mira"})
    first = await finished(server, 1)
    assert first.webhook_author is not None and first.webhook_author["username"] == "Mira"
    assert first.webhook_author["avatar"]  # the drawn initial, set as the webhook's avatar
    assert spy.last.system_prompt is not None and "A pirate captain." in spy.last.system_prompt

    # An @mention starting with a character's name: that character answers, with its URL avatar.
    await server.post_message(server.general, f"<@{server.bot_user.id}> Bard, sing for us")
    second = await finished(server, 2)
    assert second.webhook_author is not None and second.webhook_author["username"] == "Bard"
    assert second.webhook_author["avatar_url"] == "https://example.com/bard.png"
    assert spy.last.prompt == "sing for us"

    # A Discord reply to Mira's message goes on with Mira, in her memory of this channel (the bot
    # mentioned: without the Message Content intent it reads nothing else).
    await server.post_message(server.general, f"<@{server.bot_user.id}> and then?", reply_to=first)
    third = await finished(server, 3)
    assert third.webhook_author is not None and third.webhook_author["username"] == "Mira"
    assert [t.text for t in spy.last.history if t.role == "user"] == ["Ahoy @everyone"]

    # One webhook for the channel, and nothing a character said could mention anyone.
    assert len(server.channel_webhooks.webhooks) == 1
    calls = webhook_calls(server)
    bodies = [c.json for c in calls if isinstance(c.json, dict) and ("content" in c.json)]
    assert bodies and all(b.get("allowed_mentions") == {"parse": []} for b in bodies)
    assert all(c.status < 400 for c in calls)

    deleted = await run(server, "character delete", {"name": "bard"}, user=server.moderator)
    assert "gone" in all_text(deleted)
    log = [(e.action, e.detail) for e in await transcord.store.rules.audit_log(server.guild.id, [])]  # type: ignore[union-attr]
    assert ("character delete", "Bard") in log and ("character create", "Mira") in log


async def test_a_character_speaks_in_a_thread_through_the_parents_webhook(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    grant_webhooks(server)
    await run(server, "character create", {"name": "Mira", "persona": "A pirate."}, user=server.moderator)
    await run(server, "chat say", {"message": "hello", "character": "Mira"}, channel=server.thread)
    answer = await finished(server, 1)
    assert answer.channel_id == server.thread.id  # type: ignore[union-attr]
    hook = next(iter(server.channel_webhooks.webhooks.values()))
    assert hook.channel_id == server.general.id  # type: ignore[union-attr]
    posts = [c for c in webhook_calls(server) if c.method == "POST"]
    assert posts and all(c.query.get("thread_id") == str(server.thread.id) for c in posts)  # type: ignore[union-attr]
