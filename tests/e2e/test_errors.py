"""What a user sees when a command is refused: ephemeral, at once, naming the parameter."""

from __future__ import annotations

import asyncio

import pytest

import app as bot_module
from loopback import InteractionRecord, LoopbackDiscord
from tests.e2e.harness import BotRunner, has_footer, no_pings, run

pytestmark = pytest.mark.timeout(60)


def refused_with(record: InteractionRecord, text: str) -> bool:
    """Answered at once (no "thinking…" first), only to the asker, with exactly ``text``."""
    return record.callback_type == 4 and record.ephemeral and record.content == text and no_pings(record)


@pytest.mark.parametrize(
    ("options", "strict", "expected"),
    [
        # Discord's client allows 0 (the option's range is [0, 1]); the service needs > 0.
        ({"top_p": 0.0}, True, "❌ `top_p` must be in (0, 1], got 0"),
        # Past the client's own checks (a modified client, or a stale command schema).
        ({"temperature": 5.0}, False, "❌ `temperature` must be in [0, 2], got 5"),
        ({"max_new_tokens": 5000}, False, "❌ `max_new_tokens` must be in [1, 512], got 5000"),
        ({"top_p": 1.5}, False, "❌ `top_p` must be in (0, 1], got 1.5"),
    ],
)
async def test_generate_refuses_a_bad_option_naming_it(
    server: LoopbackDiscord,
    transcord: bot_module.Transcord,
    options: dict[str, object],
    strict: bool,
    expected: str,
) -> None:
    reply = await run(server, "generate", {"prompt": "Once upon a time", **options}, strict=strict)
    assert refused_with(reply, expected), reply.summary()


@pytest.mark.parametrize(
    ("text", "found"),
    [("The capital of France is Paris.", "none"), ("[MASK] is the capital of [MASK].", "2")],
)
async def test_fill_refuses_text_without_exactly_one_mask(
    server: LoopbackDiscord, transcord: bot_module.Transcord, text: str, found: str
) -> None:
    reply = await run(server, "fill", {"text": text})
    expected = f"❌ `text` must contain exactly one mask (`[MASK]`, `<mask>`), found {found}"
    assert refused_with(reply, expected), reply.summary()


async def test_settings_refuse_an_unknown_model_and_keep_the_old_one(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    reply = await run(server, "config set", {"model": "nope"}, user=server.moderator)
    assert refused_with(reply, "❌ unknown model `nope`; available: bert, long, tiny"), reply.summary()
    empty = await run(server, "config set", user=server.moderator)
    assert refused_with(empty, "❌ Give at least one setting to change, e.g. `temperature: 0.3`.")
    show = await run(server, "settings show")
    assert "• **model**: *(the bot's default)* · *bot default*" in (show.content or "")


async def test_a_model_that_cannot_generate_is_explained(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    await run(server, "config set", {"model": "bert"}, user=server.moderator)
    reply = await run(server, "generate", {"prompt": "Once upon a time"})
    shown = [m for m in reply.messages if not m.deleted]
    assert len(shown) == 1 and shown[0].ephemeral, reply.summary()
    assert shown[0].content.startswith("❌ ") and "bert" in shown[0].content, shown[0].content
    assert not reply.is_thinking


async def test_when_the_queue_is_full_one_reply_is_busy_and_the_other_completes(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(QUEUE_LIMIT="1")
    options = {"prompt": "Once upon a time", "max_new_tokens": 200}
    first = await server.invoke("generate", options, user=server.member)
    second = await server.invoke("generate", options, user=server.moderator)

    def settled(record: InteractionRecord) -> bool:
        return record.callback_type == 4 or has_footer(record)

    await asyncio.gather(first.wait_for(settled, 60), second.wait_for(settled, 60))
    busy = [r for r in (first, second) if r.callback_type == 4]
    done = [r for r in (first, second) if has_footer(r)]
    assert len(busy) == 1 and len(done) == 1, [first.summary(), second.summary()]
    [refusal] = busy
    assert refusal.ephemeral and not refusal.deferred
    assert refusal.content is not None
    assert refusal.content.startswith("⏳ The model is busy right now; try again in ")
    assert refusal.content.endswith(" s.") and no_pings(refusal)
    # The refusal came at once, not after the other reply finished.
    assert refusal.callback_at is not None and done[0].original is not None
    assert refusal.callback_at < done[0].original.versions[-1].at
    await done[0].wait_final(30)
    assert not done[0].ephemeral and not done[0].is_thinking

    # Once the queue has room again, the next request goes through.
    again = await run(server, "generate", {"prompt": "Hello", "max_new_tokens": 5}, until=has_footer)
    assert "\n-# 5 tokens · " in (again.content or "")
