"""A real discord.py bot against the loopback server: sync, replies, edits, follow-ups, Discord's rules."""

from __future__ import annotations

import aiohttp
import discord
import pytest

from loopback import InvalidInvocation, LoopbackDiscord, Overwrite, Perm
from tests.loopback.demo_bot import DemoBot

pytestmark = pytest.mark.timeout(30)


async def test_setup_hook_syncs_global_and_guild_commands(server: LoopbackDiscord, bot: DemoBot) -> None:
    global_names = {c["name"] for c in server.synced_commands()}
    assert {"ping", "secret", "tools", "pick", "modonly"} <= global_names
    assert [c["name"] for c in server.synced_commands(server.guild)] == ["guildonly"]
    assert all(
        c["id"].isdigit() and c["application_id"] == str(server.application_id)
        for c in server.synced_commands()
    )
    assert bot.application_id == server.application_id
    handle = await server.invoke("guildonly")
    await handle.wait_content("guild command")
    assert handle.payload["data"]["guild_id"] == str(server.guild.id if server.guild else 0)


async def test_deferred_reply_edited_twice_then_followed_up(server: LoopbackDiscord, bot: DemoBot) -> None:
    handle = await server.invoke("ping")
    await handle.wait_followups(1)
    assert handle.deferred and not handle.ephemeral and not handle.is_thinking
    assert [v.content for v in handle.edits] == ["pong 1", "pong 2"]
    assert handle.edits[1].embeds[0]["title"] == "Done"
    assert handle.edits[0].at <= handle.edits[1].at
    assert handle.content == "pong 2"
    [followup] = handle.followups
    assert followup.content == "follow-up" and followup.ephemeral and followup is not handle.original
    # The bot was built with AllowedMentions.none(): every body it sent says so.
    assert len(handle.allowed_mentions) == 3
    assert all(m is not None and m["parse"] == [] for m in handle.allowed_mentions)
    assert not server.unmatched_calls


async def test_ephemeral_reply_stays_out_of_the_channel(server: LoopbackDiscord, bot: DemoBot) -> None:
    handle = await server.invoke("secret")
    await handle.wait_response()
    assert handle.callback_type == 4 and handle.ephemeral and not handle.deferred
    assert handle.content == "only you can see this"
    assert server.general is not None
    assert handle.original not in server.channel_messages(server.general)


async def test_member_thread_and_permissions_reach_discord_py(server: LoopbackDiscord, bot: DemoBot) -> None:
    assert server.moderator and server.member and server.thread and server.general
    handle = await server.invoke("whoami", user=server.moderator, channel=server.thread)
    await handle.wait_response()
    assert handle.content == (
        f"user={server.moderator.id} channel={server.thread.id} kind=Thread parent={server.general.id} "
        f"manage_channels=True bot_can_send=True guild={server.thread.guild_id}"
    )
    plain = await server.invoke("whoami", user=server.member)
    await plain.wait_response()
    assert "kind=TextChannel" in (plain.content or "") and "manage_channels=False" in (plain.content or "")


async def test_typed_options_in_a_subcommand_group(server: LoopbackDiscord, bot: DemoBot) -> None:
    handle = await server.invoke("tools calc add", {"a": 2, "b": 0.5, "label": "total"})
    await handle.wait_response()
    assert handle.content == "total: 2 + 0.5 = 2.5"
    loud = await server.invoke("tools", {"a": 1, "b": 2, "loud": True}, subcommand="calc add")
    await loud.wait_response()
    assert loud.content == "SUM: 1 + 2.0 = 3.0"  # an integer for `b` still arrives as a float


async def test_autocomplete_result_is_recorded(server: LoopbackDiscord, bot: DemoBot) -> None:
    handle = await server.autocomplete("pick", {"fruit": "ap"}, focused="fruit")
    await handle.wait_response()
    assert handle.callback_type == 8
    assert handle.choices == [{"name": "Apple", "value": "apple"}, {"name": "Apricot", "value": "apricot"}]


async def test_first_followup_after_a_public_defer_fills_the_thinking_message(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    handle = await server.invoke("quietdefer")
    await handle.wait_followups(2)
    first, second = handle.followups
    # Discord ignores the follow-up's ephemeral flag here: the defer was public.
    assert first is handle.original and not first.ephemeral and first.content == "after defer"
    assert second is not handle.original and second.ephemeral


async def test_commands_with_default_permissions_are_hidden_from_members(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    with pytest.raises(InvalidInvocation, match="default_member_permissions"):
        await server.invoke("modonly", user=server.member)
    handle = await server.invoke("modonly", user=server.moderator)
    await handle.wait_content("hello, moderator")


async def test_too_long_content_is_refused_like_discord(server: LoopbackDiscord, bot: DemoBot) -> None:
    handle = await server.invoke("long")
    await handle.wait_content("too long, sorry")
    [refused] = handle.rejected
    assert refused.status == 400 and refused.error and refused.error["code"] == 50035
    assert bot.demo is not None
    [error] = bot.demo.errors
    assert isinstance(error, discord.HTTPException) and "2000 or fewer" in str(error)


async def test_answering_after_the_deadline_gets_unknown_interaction(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    server.state.response_deadline = 0.2
    handle = await server.invoke("late")
    await handle.wait_for(lambda h: h.expired, timeout=5)
    assert not handle.responded
    demo = bot.demo
    assert demo is not None
    await server.wait_for(lambda: bool(demo.errors), what="the bot to see the error")
    assert isinstance(demo.errors[0], discord.NotFound) and demo.errors[0].code == 10062


async def test_attachments_are_recorded_and_served(server: LoopbackDiscord, bot: DemoBot) -> None:
    handle = await server.invoke("file")
    await handle.wait_followups(2)
    [hello] = handle.followups[0].attachments
    assert (hello.filename, hello.data, hello.description) == ("hello.txt", b"hello world", "greeting")
    [raw] = handle.followups[1].attachments
    assert raw.data == b"\x00\x01"
    async with aiohttp.ClientSession() as http:
        assert server.general is not None
        async with http.get(server.state.attachment_url(server.general.id, hello)) as resp:
            assert await resp.read() == b"hello world"


async def test_unexpected_endpoints_are_recorded(server: LoopbackDiscord, bot: DemoBot) -> None:
    handle = await server.invoke("stray")
    await handle.wait_content("done")
    assert [c.path for c in server.unmatched_calls] == ["/nonexistent/1"]


async def test_followups_edit_by_id_and_the_original_can_be_deleted(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    handle = await server.invoke("tidy")
    await handle.wait_for(lambda h: h.original is not None and h.original.deleted)
    assert handle.content is None
    [kept] = handle.followups
    assert kept.content == "kept (edited), original was 'temporary'"
    assert [v.content for v in kept.versions] == ["kept", "kept (edited), original was 'temporary'"]
    assert kept.edited_iso is not None
    assert [(c.method, c.path.rsplit("/", 1)[-1]) for c in handle.calls] == [
        ("POST", "callback"),
        ("GET", "@original"),
        ("POST", handle.token),
        ("PATCH", str(kept.id)),
        ("DELETE", "@original"),
    ]


async def test_channel_messages_obey_the_bots_permissions(server: LoopbackDiscord, bot: DemoBot) -> None:
    assert server.general is not None and server.guild is not None
    handle = await server.invoke("announce")
    await handle.wait_response()
    [posted] = [m for m in server.channel_messages(server.general) if m.kind == "channel"]
    assert posted.content == "announcement"
    bot_role = next(r for r in server.guild.roles.values() if r.bot_id == server.bot_user.id)
    closed = server.add_channel("read-only", overwrites=[Overwrite(bot_role.id, 0, deny=Perm.SEND_MESSAGES)])
    await server.wait_for(lambda: bot.get_channel(closed.id) is not None)
    refused = await server.invoke("announce", channel=closed)
    await refused.wait_response()
    assert bot.demo is not None
    [error] = bot.demo.errors
    assert isinstance(error, discord.Forbidden) and error.code == 50013


async def test_callback_without_with_response_answers_204(server: LoopbackDiscord, bot: DemoBot) -> None:
    handle = await server.invoke("slow")  # the bot defers; then we answer a second one by hand
    await handle.wait_response()
    payload = server.build_interaction("secret")
    raw = await server.send_raw_interaction({**payload, "type": 99})  # discord.py ignores unknown types
    url = f"{server.api_base}/interactions/{raw.id}/{raw.token}/callback"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"type": 4, "data": {"content": "by hand"}}) as resp:
            assert resp.status == 204
        async with http.post(url + "?with_response=true", json={"type": 4, "data": {"content": "x"}}) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 40060
        headers = {"Authorization": f"Bot {server.token}"}
        commands_url = f"{server.api_base}/applications/{server.application_id}/commands"
        async with http.get(commands_url, headers=headers) as resp:
            assert {c["name"] for c in await resp.json()} == {c["name"] for c in server.synced_commands()}
    assert raw.content == "by hand"
    assert bot.demo is not None
    bot.demo.gate.set()
