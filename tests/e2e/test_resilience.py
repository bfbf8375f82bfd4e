"""Replies still arrive through gateway drops, rate limits and server errors; shutdown tells users."""

from __future__ import annotations

import pytest

from core.replies import RESTARTING
from loopback import InteractionRecord, LoopbackDiscord
from tests.e2e.harness import BotRunner, all_text, has_footer, no_pings, run

pytestmark = pytest.mark.timeout(90)

LONG = {"DEFAULT_MODEL": "long", "MAX_NEW_TOKENS_CAP": "1024"}


def streaming(record: InteractionRecord) -> bool:
    """A preview of the reply is showing: the generation is under way."""
    return bool(record.edits) and record.edits[-1].content.endswith("…")


async def test_the_reply_arrives_although_the_gateway_drops_mid_generation(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**LONG)
    reply = await server.invoke("generate", {"prompt": "Once upon a time", "max_new_tokens": 500})
    await reply.wait_for(streaming, 30)
    await server.drop_gateway()
    await reply.wait_for(has_footer, 60)
    await reply.wait_final(30)
    assert not reply.is_thinking and "\n-# 500 tokens · " in all_text(reply)

    # The bot resumes its session and keeps answering.
    await server.wait_connected(30)
    after = await run(server, "help")
    assert after.ephemeral and (after.content or "").startswith("**Transcord**")


async def test_a_rate_limited_edit_is_retried_and_the_final_text_arrives(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**LONG)
    limited = server.inject_429("PATCH", "/messages/@original", count=2, retry_after=0.3)
    reply = await run(
        server,
        "generate",
        {"prompt": "Once upon a time", "max_new_tokens": 300},
        until=has_footer,
        timeout=60,
    )
    assert limited.hits == 2
    assert [c.status for c in reply.calls if c.fault] == [429, 429]
    assert "\n-# 300 tokens · " in (reply.content or "")
    assert not reply.rejected and no_pings(reply)


@pytest.mark.parametrize(
    ("status", "method", "path"), [(500, "POST", "/webhooks/"), (503, "PATCH", "/@original")]
)
async def test_a_server_error_on_the_final_parts_is_retried(
    server: LoopbackDiscord, runner: BotRunner, status: int, method: str, path: str
) -> None:
    await runner.start()
    prompt = " ".join(f"word{i}" for i in range(900))[:6000].rstrip()
    failing = server.inject_error(status, method, path, count=1)
    reply = await run(server, "generate", {"prompt": prompt, "max_new_tokens": 10}, until=has_footer)

    assert failing.hits == 1
    parts = [m.content for m in reply.messages if not m.deleted]
    assert len(parts) >= 4, reply.summary()
    joined = "".join(parts)
    assert joined.startswith(f"**{prompt}**") and "\n-# 10 tokens · " in joined
    assert not reply.is_thinking


async def test_shutdown_tells_the_user_a_cut_reply_stopped_because_of_a_restart(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    transcord = await runner.start(SHUTDOWN_GRACE_S="0.2", **LONG)
    reply = await server.invoke("generate", {"prompt": "Once upon a time", "max_new_tokens": 1000})
    await reply.wait_for(streaming, 30)

    await transcord.shutdown()

    await reply.wait_for(lambda r: r.content is not None and not r.content.endswith("…"), 10)
    content = reply.content or ""
    assert not reply.is_thinking
    assert content.endswith("\n\n" + RESTARTING) or has_footer(reply), content[-300:]
    assert content.startswith("**Once upon a time**")
    assert transcord.is_closed()


async def test_shutdown_lets_a_reply_finish_within_the_grace_period(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    transcord = await runner.start(SHUTDOWN_GRACE_S="30")
    reply = await server.invoke("generate", {"prompt": "Once upon a time", "max_new_tokens": 100})
    await reply.wait_for(lambda r: r.deferred, 10)

    await transcord.shutdown()

    assert has_footer(reply), reply.summary()
    assert RESTARTING not in all_text(reply) and not reply.is_thinking
