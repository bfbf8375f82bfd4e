"""Faults on purpose: gateway drops, rate limits and server errors, a model that breaks, a crowd.

Whatever happens, every user's reply ends: finished and whole, or with an error that says so;
nothing stays on "thinking…", and the event loop keeps its heartbeat.
One real bot (tiny models) serves the whole module; each test works in channels of its own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core.replies import GENERIC_ERROR, split_message
from loopback import Change, FaultRule, InteractionRecord, LoopbackDiscord
from tests.e2e.harness import BotRunner
from tests.e2e.reliability import (
    GENERATION_FOOTER,
    HEARTBEAT_MS,
    LogRecorder,
    ask,
    new_channel,
    pings_nobody,
    settled,
    shared_bot,
    shown_text,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]

QUEUE_LIMIT = 8
BUSY = re.compile(r"^⏳ The model is busy right now; try again in \d+ s\.$")
Bot = tuple[LoopbackDiscord, BotRunner, LogRecorder]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot(
    tmp_path_factory: pytest.TempPathFactory, tiny_gpt2_dir: Path, long_gpt2_dir: Path
) -> AsyncIterator[Bot]:
    models = {"tiny": tiny_gpt2_dir, "long": long_gpt2_dir}
    async with shared_bot(
        tmp_path_factory.mktemp("faults"),
        models,
        QUEUE_LIMIT=str(QUEUE_LIMIT),
        MAX_NEW_TOKENS_CAP="1024",
        DEFAULT_MAX_NEW_TOKENS="8",
    ) as running:
        yield running


def streaming(record: InteractionRecord) -> bool:
    return bool(record.edits) and record.edits[-1].content.endswith("…")


def finished(record: InteractionRecord) -> bool:
    """A generation's footer is shown. (Replies that must reach N tokens ask for greedy
    decoding: a sampled end-of-text token would end them early, at random.)"""
    return bool(GENERATION_FOOTER.search(shown_text(record))) and not record.is_thinking


async def long_channel(server: LoopbackDiscord) -> Any:
    """A channel whose model is the 1024-position GPT-2: room for long, slow replies."""
    channel = new_channel(server)
    done = await ask(server, "config set", {"model": "long"}, user=server.moderator, channel=channel)
    assert not done.ephemeral, done.summary()
    return channel


# -- the gateway -----------------------------------------------------------------------------------


async def test_a_reply_arrives_through_several_gateway_drops_in_a_row(bot: Bot) -> None:
    server, _, _ = bot
    channel = await long_channel(server)
    reply = await server.invoke(
        "generate", {"prompt": "Once upon a time", "max_new_tokens": 300, "temperature": 0.0}, channel=channel
    )
    await reply.wait_for(streaming, 30)
    resumes_before = sum(e.kind == "resume" for e in server.gateway.events)

    queued: InteractionRecord | None = None
    for code in (4000, None, 4000, None):  # closed with a code, then cut without a close frame
        await server.drop_gateway(code)
        if queued is None:
            # Sent while the bot is away: replayed when it resumes, and answered.
            queued = await server.invoke("help", channel=channel)
        await server.wait_connected(30)
    assert not finished(reply), "the generation ended before the drops; make it longer"

    await reply.wait_for(finished, 60)
    assert "\n-# 300 tokens · " in shown_text(reply) and pings_nobody(reply)
    assert sum(e.kind == "resume" for e in server.gateway.events) - resumes_before == 4
    assert queued is not None
    await queued.wait_for(settled, 10)
    assert queued.ephemeral and (queued.content or "").startswith("**Transcord**")


# -- REST faults on a long, split reply ------------------------------------------------------------


async def test_rate_limits_and_server_errors_on_each_follow_up_lose_nothing(bot: Bot) -> None:
    server, _, _ = bot
    prompt = " ".join(f"word{i}" for i in range(1200))[:6000].rstrip()
    reply = await server.invoke(
        "generate", {"prompt": prompt, "max_new_tokens": 6, "temperature": 0.0}, channel=new_channel(server)
    )
    webhook = f"/webhooks/{server.application_id}/{reply.token}"
    # One fault per follow-up, each armed when the one before it got through.
    arming: list[Callable[[], FaultRule]] = [
        lambda: server.inject_429("POST", webhook, count=2, retry_after=0.2),
        lambda: server.inject_error(500, "POST", webhook),
        lambda: server.inject_error(502, "POST", webhook),
    ]
    rules = [arming.pop(0)()]

    def arm_next(change: Change) -> None:
        if change.kind == "followup" and change.interaction is reply and arming:
            rules.append(arming.pop(0)())

    unsubscribe = server.subscribe(arm_next)
    try:
        await reply.wait_for(settled, 60)
    finally:
        unsubscribe()
        server.clear_faults()

    assert [r.hits for r in rules] == [2, 1, 1], reply.summary()
    parts = [m.content for m in reply.messages if not m.deleted]
    whole = "".join(parts)
    # Each part exactly once, in order, nothing cut: the parts are the split of the whole text.
    assert len(parts) >= 4 and split_message(whole) == parts, [len(p) for p in parts]
    assert whole.startswith(f"**{prompt}**") and "\n-# 6 tokens · " in whole
    assert not reply.is_thinking and not reply.ephemeral and pings_nobody(reply)


# -- the model breaks ------------------------------------------------------------------------------


def _tiny(runner: BotRunner) -> Any:
    service: Any = runner.service
    return next(m for m in service._registry.loaded() if m.name == "tiny").model


async def test_a_model_that_raises_mid_generation_answers_with_an_error_and_the_next_command_works(
    bot: Bot,
) -> None:
    server, runner, recorder = bot
    channel = new_channel(server)
    warm = await ask(server, "generate", {"prompt": "Hello", "max_new_tokens": 2}, channel=channel)
    assert finished(warm), warm.summary()

    model = _tiny(runner)
    forward = model.forward
    calls = 0

    @functools.wraps(forward)
    def breaks_on_the_fourth_call(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls >= 4:
            raise RuntimeError("injected: the model fell over mid-generation")
        return forward(*args, **kwargs)

    model.forward = breaks_on_the_fourth_call
    try:
        options = {"prompt": "Once upon a time", "max_new_tokens": 40, "temperature": 0.0}
        first = await server.invoke("generate", options, channel=channel, user=server.member)
        second = await server.invoke("generate", options, channel=channel, user=server.owner)
        fill = await server.invoke("fill", {"text": "The capital of France is [MASK]."}, channel=channel)
        replies = [await r.wait_for(settled, 30) for r in (first, second, fill)]
    finally:
        del model.forward
    assert calls >= 4
    for reply in replies:
        assert not reply.is_thinking and pings_nobody(reply), reply.summary()
        assert GENERIC_ERROR in shown_text(reply), reply.summary()
        # Whatever was shown stays shown; the error is said publicly only after it, else privately.
        assert reply.content is None or reply.content.endswith(GENERIC_ERROR) or reply.ephemeral
    traced = [r for r in recorder.records if r.exc_info and "injected" in str(r.exc_info[1])]
    assert traced, "the model's error was not logged with its traceback"

    again = await ask(
        server,
        "generate",
        {"prompt": "Once upon a time", "max_new_tokens": 5, "temperature": 0.0},
        channel=channel,
    )
    assert "\n-# 5 tokens · " in shown_text(again), again.summary()
    filled = await ask(server, "fill", {"text": "The capital of France is [MASK]."}, channel=channel)
    assert "causal LM, sentences rescored" in (filled.content or ""), filled.summary()


# -- a crowd ---------------------------------------------------------------------------------------


class LoopLag:
    """How late a 20 ms ticker on the event loop wakes up: a blocked loop shows as lag."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.worst = max(self.worst, loop.time() - before - self.interval)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_fifty_generations_at_once_each_get_an_answer_or_an_immediate_busy_reply(bot: Bot) -> None:
    server, _, recorder = bot
    channel = new_channel(server)
    crowd = [server.add_member(f"crowd-{i}") for i in range(10)]
    connection = next(iter(server.gateway.connections))
    heartbeats = connection.heartbeats
    loop = asyncio.get_running_loop()
    started = loop.time()

    with LoopLag() as lag:
        records = [
            await server.invoke(
                "generate",
                {"prompt": f"Story {i}: once upon a time", "max_new_tokens": 24, "temperature": 0.0},
                user=crowd[i % len(crowd)],
                channel=channel,
            )
            for i in range(50)
        ]
        # The bot stays responsive while the queue is full.
        status = await ask(server, "status", channel=channel)
        await asyncio.gather(*(r.wait_for(settled, 60) for r in records))
    elapsed = loop.time() - started

    busy = [r for r in records if r.callback_type == 4]
    done = [r for r in records if r.callback_type != 4]
    for record in busy:
        assert record.ephemeral and BUSY.match(record.content or ""), record.summary()
        # Within Discord's 3 s to answer an interaction (it is about 0.1 s on an idle machine).
        assert record.callback_at is not None and record.callback_at - record.sent_at < 3.0, record.summary()
    for record in done:
        assert finished(record) and "\n-# 24 tokens · " in shown_text(record), record.summary()
        assert not record.ephemeral
    assert all(pings_nobody(r) and not r.expired and not r.is_thinking for r in records)
    assert len(done) >= QUEUE_LIMIT and busy, (len(done), len(busy))
    assert f"/{QUEUE_LIMIT} requests" in (status.content or ""), status.content

    # The event loop never stalled: heartbeats kept going and no warning about them was logged.
    stalls = [
        r.getMessage()
        for r in recorder.records
        if "heartbeat blocked" in r.getMessage() or "keep up" in r.getMessage()
    ]
    assert not stalls, stalls
    expected_beats = int(elapsed / (HEARTBEAT_MS / 1000)) - 2
    assert connection.heartbeats - heartbeats >= expected_beats, (connection.heartbeats - heartbeats, elapsed)
    logging.getLogger(__name__).info(
        "50 at once: %d answered, %d busy, %.1f s, worst loop lag %.3f s",
        len(done),
        len(busy),
        elapsed,
        lag.worst,
    )
    # Work done on the loop by mistake (a forward, a model load, a blocking query) stalls it for
    # seconds; tenths of a second are the scheduling of a shared 2-core machine (0.54 s was seen once).
    assert lag.worst < 1.0, f"the event loop stalled for {lag.worst:.2f} s"
