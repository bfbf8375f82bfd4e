"""The gateway with a real discord.py bot: drops, RESUME replay, RECONNECT, INVALID_SESSION, live events."""

from __future__ import annotations

import asyncio

import pytest

from loopback import Change, LoopbackDiscord
from tests.fixtures.loopback_bot import run_bot
from tests.loopback.demo_bot import DemoBot

pytestmark = pytest.mark.timeout(30)


def kinds(server: LoopbackDiscord) -> list[str]:
    return [e.kind for e in server.gateway.events]


async def test_gateway_dropped_mid_command_resumes_and_the_reply_arrives(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    assert bot.demo is not None
    handle = await server.invoke("slow")
    await handle.wait_response()
    assert handle.is_thinking
    await server.drop_gateway(4000)
    await server.wait_for(lambda: "resume" in kinds(server) and server.gateway.connected(), what="a RESUME")
    await server.wait_for(lambda: bot.resumes == 1, what="on_resumed")
    bot.demo.gate.set()
    await handle.wait_content("finally")
    assert not handle.is_thinking
    assert kinds(server).count("identify") == 1  # resumed, never re-identified
    after = await server.invoke("secret")
    await after.wait_response()


async def test_events_sent_while_disconnected_are_replayed_on_resume(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    await server.drop_gateway(None)  # no close frame: the client sees the stream end
    handle = await server.invoke("secret")  # queued in the session, not sent
    await handle.wait_content("only you can see this")
    [resume] = [e for e in server.gateway.events if e.kind == "resume"]
    assert "replayed 1 event(s)" in resume.detail


async def test_reconnect_opcode_makes_the_bot_resume(server: LoopbackDiscord, bot: DemoBot) -> None:
    server.send_reconnect()
    await server.wait_for(lambda: bot.resumes == 1, what="on_resumed")
    handle = await server.invoke("secret")
    await handle.wait_response()


async def test_invalid_session_makes_the_bot_identify_again(server: LoopbackDiscord, bot: DemoBot) -> None:
    server.invalidate_session(resumable=False)
    await server.wait_for(
        lambda: kinds(server).count("identify") == 2 and server.gateway.connected(), what="IDENTIFY"
    )
    assert len(server.gateway.sessions) == 1
    handle = await server.invoke("secret")
    await handle.wait_response()


async def test_world_changes_reach_a_connected_bot(server: LoopbackDiscord, bot: DemoBot) -> None:
    channel = server.add_channel("late-arrival")
    assert server.general is not None
    thread = server.add_thread(server.general, "late-thread")
    role = server.add_role("Storyteller")
    await server.wait_for(lambda: bot.get_channel(channel.id) is not None, what="CHANNEL_CREATE")
    guild = bot.get_guild(channel.guild_id)
    assert guild is not None
    await server.wait_for(lambda: guild.get_thread(thread.id) is not None, what="THREAD_CREATE")
    await server.wait_for(lambda: guild.get_role(role.id) is not None, what="GUILD_ROLE_CREATE")
    handle = await server.invoke("whoami", channel=thread)
    await handle.wait_content("kind=Thread")
    server.add_member("newcomer")  # GUILD_MEMBER_ADD needs the privileged members intent
    [session] = server.gateway.sessions.values()
    sent = [frame["t"] for frame in session.sent]
    assert "THREAD_CREATE" in sent and "GUILD_MEMBER_ADD" not in sent


async def test_plain_json_frames_work_without_compression() -> None:
    async with LoopbackDiscord(compress_gateway=False) as server:
        bot = DemoBot()
        async with run_bot(bot, server):
            handle = await server.invoke("ping")
            await handle.wait_followups(1)
        assert server.gateway.received[0]["op"] in (1, 2)


async def test_subscribers_see_each_change_as_it_happens(server: LoopbackDiscord, bot: DemoBot) -> None:
    seen: list[Change] = []
    unsubscribe = server.subscribe(seen.append)
    handle = await server.invoke("ping")
    live: list[str] = []

    async def render() -> None:
        async for change in handle.changes():
            if change.kind in ("edit", "followup") and change.message is not None:
                live.append(change.message.content)
            if change.kind == "followup":
                return

    await asyncio.wait_for(render(), timeout=10)
    unsubscribe()
    assert live == ["pong 1", "pong 2", "follow-up"]
    wanted = [c.kind for c in seen if c.kind in ("interaction", "callback", "edit", "followup")]
    assert wanted == ["interaction", "callback", "edit", "edit", "followup"]


async def test_a_heartbeat_is_acknowledged_a_round_trip_later_as_discord_does() -> None:
    # discord.py times an ACK against the moment its heartbeat's send returned; an ACK at once
    # (loopback's zero latency) can arrive before that, and it logs "Can't keep up … behind".
    import time

    import aiohttp

    from loopback.gateway import ACK_DELAY_S, HEARTBEAT, HEARTBEAT_ACK, HELLO

    async with LoopbackDiscord(compress_gateway=False) as server, aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{server.gateway.url}?v=10&encoding=json") as ws:
            assert (await ws.receive_json())["op"] == HELLO
            sent = time.monotonic()
            await ws.send_json({"op": HEARTBEAT, "d": None})
            assert (await ws.receive_json(timeout=5))["op"] == HEARTBEAT_ACK
            assert time.monotonic() - sent >= ACK_DELAY_S * 0.9
