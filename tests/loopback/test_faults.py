"""Injected REST faults and malformed payloads, against a real discord.py bot."""

from __future__ import annotations

import time

import pytest

from loopback import BotStopped, LoopbackDiscord
from tests.fixtures.loopback_bot import run_bot
from tests.loopback.demo_bot import DemoBot

pytestmark = pytest.mark.timeout(30)


async def test_a_429_on_an_edit_is_retried_and_the_edit_arrives(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    rule = server.inject_429("PATCH", "/messages/@original", retry_after=0.3)
    handle = await server.invoke("ping")
    await handle.wait_followups(1)
    assert [v.content for v in handle.edits] == ["pong 1", "pong 2"]
    assert rule.hits == 1
    patches = [c for c in handle.calls if c.method == "PATCH"]
    assert [c.status for c in patches] == [429, 200, 200]
    assert patches[1].at - patches[0].at >= 0.29  # discord.py honoured retry_after
    assert not handle.rejected  # a rate limit is not a refusal


async def test_a_500_on_a_followup_is_retried(server: LoopbackDiscord, bot: DemoBot) -> None:
    rule = server.inject_error(500, "POST", f"/webhooks/{server.application_id}/")
    handle = await server.invoke("ping")
    await handle.wait_followups(1, timeout=10)
    assert rule.hits == 1
    assert [c.status for c in handle.calls if c.method == "POST" and "/webhooks/" in c.path] == [500, 200]


async def test_added_latency_delays_the_reply(server: LoopbackDiscord, bot: DemoBot) -> None:
    server.inject_delay(0.3, "POST", "/callback")
    started = time.monotonic()
    handle = await server.invoke("secret")
    await handle.wait_response()
    assert time.monotonic() - started >= 0.3


async def test_a_malformed_dispatch_fails_the_wait_at_once_not_at_timeout(server: LoopbackDiscord) -> None:
    bot = DemoBot()
    started = time.monotonic()
    with pytest.raises(BotStopped) as stopped:
        async with run_bot(bot, server):
            payload = server.build_interaction("secret")
            del payload["attachment_size_limit"]  # discord.py reads it with data[...]
            server.send_raw_dispatch("INTERACTION_CREATE", payload)
            await server.wait_for(lambda: False, timeout=20, what="something that never comes")
    assert time.monotonic() - started < 5
    assert isinstance(stopped.value.__cause__, KeyError)
    assert "attachment_size_limit" in str(stopped.value.__cause__)
