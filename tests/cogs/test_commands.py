"""The cogs' own logic, driven through the real bot and app commands with a fake model service.

The bot, its cogs, the store and the loopback server are real; only the model is scripted
(:mod:`tests.cogs.fakes`), so each test controls what the model says, how fast, and how it fails.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time

import pytest

import app as bot_module
from core.replies import GENERIC_ERROR, RESTARTING
from loopback import LoopbackDiscord
from model_service import (
    GenerationParams,
    InternalError,
    ModelServiceAPI,
    ModelUnavailableError,
    OverloadedError,
    RequestTimeoutError,
    ValidationError,
)
from storage.types import ReplyRecord
from tests.cogs.fakes import FakeService, Script
from tests.e2e.harness import BotRunner, all_text, has_footer, no_pings, run

pytestmark = pytest.mark.timeout(30)

CORE = ("cogs.generate", "cogs.chat", "cogs.fill_mask", "cogs.settings", "cogs.status")
INTERVAL = 0.2


@pytest.fixture
async def transcord(runner: BotRunner) -> bot_module.Transcord:
    return await runner.start(extensions=CORE)


def test_the_fake_implements_the_service_protocol() -> None:
    assert isinstance(FakeService(), ModelServiceAPI)


# -- the request a command builds ------------------------------------------------------------------


async def test_generate_uses_the_channel_defaults_when_nothing_is_set(
    server: LoopbackDiscord, fake: FakeService, transcord: bot_module.Transcord
) -> None:
    await run(server, "generate", {"prompt": "Once upon a time"}, until=has_footer)
    [request] = fake.generation_requests
    assert request.prompt == "Once upon a time"
    assert request.mode == "completion" and request.system_prompt is None and request.model is None
    assert request.params == GenerationParams(max_new_tokens=128, temperature=0.7, top_p=0.95)


async def test_options_override_channel_settings_and_the_persona_is_for_chat_only(
    server: LoopbackDiscord, fake: FakeService, transcord: bot_module.Transcord
) -> None:
    settings = {
        "model": "other",
        "max_new_tokens": 64,
        "temperature": 0.3,
        "top_k": 40,
        "repetition_penalty": 1.2,
        "persona": "You are a pirate.",
    }
    await run(server, "config set", settings, user=server.moderator)
    await run(server, "config set", {"scope": "server", "top_p": 0.5}, user=server.owner)

    options = {"prompt": "Ahoy", "max_new_tokens": 10, "temperature": 1.2}
    await run(server, "generate", options, until=has_footer)
    await run(server, "chat say", {"message": "Ahoy"}, until=has_footer)
    await run(server, "generate", {"prompt": "Ahoy", "top_p": 0.9}, channel=server.thread, until=has_footer)

    completion, chat, in_thread = fake.generation_requests
    assert (completion.mode, completion.system_prompt, completion.model) == ("completion", None, "other")
    assert completion.params == GenerationParams(
        max_new_tokens=10, temperature=1.2, top_p=0.5, top_k=40, repetition_penalty=1.2
    )
    assert (chat.mode, chat.system_prompt, chat.model, chat.prompt) == (
        "chat",
        "You are a pirate.",
        "other",
        "Ahoy",
    )
    assert chat.params == GenerationParams(
        max_new_tokens=64, temperature=0.3, top_p=0.5, top_k=40, repetition_penalty=1.2
    )
    # The thread inherits the channel's and the server's settings; its own option wins.
    assert in_thread.params == GenerationParams(
        max_new_tokens=64, temperature=0.3, top_p=0.9, top_k=40, repetition_penalty=1.2
    )
    assert in_thread.system_prompt is None and in_thread.model == "other"


async def test_a_stored_max_new_tokens_above_a_lowered_cap_is_clamped(
    server: LoopbackDiscord, fake: FakeService, runner: BotRunner
) -> None:
    await runner.start(extensions=CORE)
    await run(server, "config set", {"max_new_tokens": 500}, user=server.moderator)
    fake.cap = 100
    await runner.restart(MAX_NEW_TOKENS_CAP="100")
    reply = await run(server, "generate", {"prompt": "Hi"}, until=has_footer)
    assert fake.generation_requests[-1].params.max_new_tokens == 100
    assert not reply.ephemeral


@pytest.mark.parametrize(("fill_model", "expected_model"), [(None, "other"), ("fake", None)])
async def test_fill_uses_the_fill_model_or_else_the_channels_model(
    server: LoopbackDiscord,
    fake: FakeService,
    runner: BotRunner,
    fill_model: str | None,
    expected_model: str | None,
) -> None:
    await runner.start(extensions=CORE, **({"FILL_MODEL": fill_model} if fill_model else {}))
    await run(server, "config set", {"model": "other"}, user=server.moderator)
    reply = await run(server, "fill", {"text": "The capital of France is [MASK].", "top_k": 2})

    [request] = fake.fill_requests
    assert (request.model, request.top_k) == (expected_model, 2)
    assert reply.callback_type == 4 and not reply.ephemeral  # fast: answered without "thinking…"
    lines = (reply.content or "").splitlines()
    assert lines[1] == "`1.` `█████████░░░`  75.0%  **Paris**"
    assert lines[2] == "`2.` `██░░░░░░░░░░`  20.0%  **Rome**"
    assert lines[3].startswith(f"-# {expected_model or 'fake'} · masked LM · ")


async def test_a_slow_fill_shows_thinking_then_the_answer(
    server: LoopbackDiscord, fake: FakeService, transcord: bot_module.Transcord
) -> None:
    fake.fill_delay = 1.5
    reply = await run(server, "fill", {"text": "The capital of France is [MASK]."})
    assert reply.deferred and not reply.is_thinking and not reply.ephemeral
    assert "**Paris**" in (reply.content or "")


# -- errors become replies in one place ----------------------------------------------------------

ERRORS: list[tuple[BaseException, str, bool]] = [
    (ValidationError("`prompt` must not be empty"), "❌ `prompt` must not be empty", False),
    (OverloadedError("busy", retry_after=7.4), "⏳ The model is busy right now; try again in 7 s.", False),
    (OverloadedError("busy"), "⏳ The model is busy right now; try again in 5 s.", False),
    (RequestTimeoutError("the request timed out"), "⌛ the request timed out", False),
    (ModelUnavailableError("model `other` can't generate"), "❌ model `other` can't generate", False),
    (InternalError("tensor shapes do not match"), GENERIC_ERROR, True),
    (RuntimeError("unexpected"), GENERIC_ERROR, True),
]
ERROR_IDS = [
    "validation",
    "overloaded",
    "overloaded-no-hint",
    "timeout",
    "unavailable",
    "internal",
    "unexpected",
]


def error_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(("error", "text", "logged"), ERRORS, ids=ERROR_IDS)
async def test_a_refusal_at_admission_is_an_immediate_ephemeral_reply(
    server: LoopbackDiscord,
    fake: FakeService,
    transcord: bot_module.Transcord,
    caplog: pytest.LogCaptureFixture,
    error: BaseException,
    text: str,
    logged: bool,
) -> None:
    fake.refuse = error
    for command, options in (("generate", {"prompt": "Hi"}), ("fill", {"text": "A [MASK]."})):
        reply = await run(server, command, options)
        assert reply.callback_type == 4 and reply.ephemeral, reply.summary()
        assert reply.content == text and no_pings(reply)
    failures = error_logs(caplog)
    if logged:
        # Unknown errors: logged with their traceback, once per command.
        assert len(failures) == 2 and all(r.exc_info and r.exc_info[1] is error for r in failures)
    else:
        assert failures == []


@pytest.mark.parametrize(("error", "text", "logged"), ERRORS[3:], ids=ERROR_IDS[3:])
async def test_an_error_after_thinking_removes_the_placeholder_and_tells_only_the_user(
    server: LoopbackDiscord,
    fake: FakeService,
    transcord: bot_module.Transcord,
    caplog: pytest.LogCaptureFixture,
    error: BaseException,
    text: str,
    logged: bool,
) -> None:
    fake.script = Script(error=error, error_after=0)
    reply = await run(server, "generate", {"prompt": "Hi"})
    assert reply.deferred and reply.original is not None and reply.original.deleted, reply.summary()
    [notice] = reply.followups
    assert notice.ephemeral and notice.content == text
    assert not reply.is_thinking and no_pings(reply)
    assert bool(error_logs(caplog)) == logged
    assert fake.streams[0].closed


async def test_an_error_mid_stream_keeps_the_text_shown_and_says_it_stopped(
    server: LoopbackDiscord, fake: FakeService, transcord: bot_module.Transcord
) -> None:
    fake.script = Script(
        deltas=("Once", " upon", " a", " time"), delay=0.3, error=InternalError("x"), error_after=2
    )
    stopped = await server.invoke("generate", {"prompt": "Tell me"})
    reply = await stopped.wait_for(lambda r: GENERIC_ERROR in (r.content or ""), 10)
    assert reply.content == f"**Tell me**Once upon …\n\n{GENERIC_ERROR}"
    assert not reply.followups and not reply.is_thinking
    assert fake.streams[0].closed


async def test_a_failing_fill_after_thinking_is_reported_ephemerally(
    server: LoopbackDiscord, fake: FakeService, transcord: bot_module.Transcord
) -> None:
    fake.fill_delay, fake.fill_error = 1.3, RequestTimeoutError("the request timed out")
    reply = await run(server, "fill", {"text": "A [MASK]."})
    assert reply.deferred and reply.original is not None and reply.original.deleted
    assert [(m.ephemeral, m.content) for m in reply.followups] == [(True, "⌛ the request timed out")]


# -- streaming and long output ------------------------------------------------------------------


async def test_edits_are_throttled_to_the_interval(
    server: LoopbackDiscord, fake: FakeService, transcord: bot_module.Transcord
) -> None:
    fake.script = Script(deltas=[f" w{i}" for i in range(20)], delay=0.05)
    reply = await run(server, "generate", {"prompt": "Go"}, until=has_footer)

    previews = reply.edits[:-1]
    assert reply.original is not None
    duration = reply.edits[-1].at - reply.original.versions[0].at
    assert 2 <= len(previews) <= duration / INTERVAL + 2, (len(previews), duration)
    assert all(b.at - a.at >= INTERVAL * 0.8 for a, b in itertools.pairwise(previews))
    result = fake.streams[0].result
    assert result is not None
    words = "".join(f" w{i}" for i in range(20))
    footer = f"-# 20 tokens · {result.elapsed_s:.1f} s · fake · stopped at the token limit"
    assert reply.content == f"**Go**{words}\n{footer}"


async def test_a_burst_of_deltas_makes_one_preview_and_the_final_text(
    server: LoopbackDiscord, fake: FakeService, transcord: bot_module.Transcord
) -> None:
    fake.script = Script(deltas=[f" w{i}" for i in range(20)])
    reply = await run(server, "generate", {"prompt": "Go"}, until=has_footer)
    assert len(reply.edits) <= 2, [v.content for v in reply.edits]


async def test_long_output_is_split_into_messages_and_nothing_is_lost(
    server: LoopbackDiscord, fake: FakeService, transcord: bot_module.Transcord
) -> None:
    text = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(120))
    fake.script = Script(deltas=[text[i : i + 500] for i in range(0, len(text), 500)])
    reply = await run(server, "generate", {"prompt": "Go"}, until=has_footer)

    parts = [m for m in reply.messages if not m.deleted]
    assert len(parts) >= 4, reply.summary()
    assert all(len(m.content) <= 2000 and not m.ephemeral for m in parts)
    joined = all_text(reply)
    assert joined.startswith("**Go**" + text.rstrip("\n")[:100])
    # Split at line ends: each line is whole in exactly one message.
    for i in range(120):
        line = f"Line {i}: the quick brown fox jumps over the lazy dog."
        assert sum(line in m.content for m in parts) == 1, line
    assert re.search(r"\n-# \d+ tokens · ", parts[-1].content)
    assert not any(m.content.endswith("…") for m in parts)


LIMIT = " · stopped at the token limit"


@pytest.mark.parametrize(
    ("script", "body", "tail"),
    [
        (Script(deltas=()), "*(the model produced no text)*", LIMIT),
        (Script(finish_reason="timeout"), "Hello there.", " · stopped: time limit reached"),
        (Script(finish_reason="eos"), "Hello there.", ""),
        (
            Script(prompt_truncated=True),
            "Hello there.",
            " · prompt cut from the left to fit the model's context" + LIMIT,
        ),
    ],
    ids=["no-text", "timeout", "eos", "truncated"],
)
async def test_the_footer_says_why_a_reply_ended(
    server: LoopbackDiscord,
    fake: FakeService,
    transcord: bot_module.Transcord,
    script: Script,
    body: str,
    tail: str,
) -> None:
    fake.script = script
    reply = await run(server, "generate", {"prompt": "Go"}, until=has_footer)
    shown, _, footer = (reply.content or "").rpartition("\n")
    assert shown == f"**Go**{body}"
    assert re.fullmatch(rf"-# {len(script.deltas)} tokens · \d+\.\d s · fake{re.escape(tail)}", footer), (
        footer
    )


async def test_mentions_in_prompts_and_output_ping_nobody(
    server: LoopbackDiscord, fake: FakeService, transcord: bot_module.Transcord
) -> None:
    fake.script = Script(deltas=(" @everyone", f" <@{server.owner.id}>" if server.owner else ""))
    reply = await run(server, "chat say", {"message": "@here hi"}, until=has_footer)
    assert "@everyone" in (reply.content or "")
    assert no_pings(reply)


# -- shutdown ------------------------------------------------------------------------------------


async def test_shutdown_tells_a_user_still_waiting_for_the_first_word(
    server: LoopbackDiscord, fake: FakeService, runner: BotRunner
) -> None:
    transcord = await runner.start(extensions=CORE, SHUTDOWN_GRACE_S="0.2")
    fake.script = Script(first_delay=30)
    reply = await server.invoke("generate", {"prompt": "Go"})
    await reply.wait_for(lambda r: r.is_thinking, 10)
    await transcord.shutdown()
    assert not reply.is_thinking, reply.summary()
    assert reply.content == f"**Go**\n\n{RESTARTING}"
    assert fake.streams[0].closed


async def test_shutdown_does_not_leave_a_slow_fill_thinking(
    server: LoopbackDiscord, fake: FakeService, runner: BotRunner
) -> None:
    transcord = await runner.start(extensions=CORE, SHUTDOWN_GRACE_S="0.2")
    fake.fill_delay = 30
    reply = await server.invoke("fill", {"text": "A [MASK]."})
    await reply.wait_for(lambda r: r.is_thinking, 10)
    await transcord.shutdown()  # returns once the cut replies have been told why
    assert not reply.is_thinking, reply.summary()
    assert reply.content == RESTARTING


async def test_commands_during_shutdown_are_refused_with_a_reason(
    server: LoopbackDiscord, fake: FakeService, runner: BotRunner
) -> None:
    transcord = await runner.start(extensions=CORE, SHUTDOWN_GRACE_S="5")
    fake.script = Script(deltas=("a", "b"), delay=1.0)
    first = await server.invoke("generate", {"prompt": "Go"})
    await first.wait_for(lambda r: r.deferred, 10)
    stopping = asyncio.create_task(transcord.shutdown())
    await asyncio.sleep(0.1)
    late = await run(server, "generate", {"prompt": "Too late"})
    assert late.ephemeral and late.content == "❌ The bot is restarting; please try again in a minute."
    await stopping
    assert has_footer(first) and RESTARTING not in all_text(first)


async def test_shutdown_waits_for_what_a_command_does_after_its_model_call(
    server: LoopbackDiscord, fake: FakeService, runner: BotRunner
) -> None:
    """The last write of a reply (and the release of its slot) comes after the model's last word:
    a shutdown that starts in between still lets it finish before the store closes."""
    transcord = await runner.start(extensions=CORE, SHUTDOWN_GRACE_S="5")
    fake.script = Script(deltas=("a", "b"))
    saves: list[str | None] = []
    saving = asyncio.Event()
    store = transcord.store.replies
    save = store.save_reply

    async def slow_save(reply: ReplyRecord) -> None:
        if reply.finish_reason is not None:  # the final save, after the model has finished
            saving.set()
            await asyncio.sleep(0.5)
        await save(reply)
        saves.append(reply.finish_reason)

    store.save_reply = slow_save  # type: ignore[method-assign]
    reply = await server.invoke("generate", {"prompt": "Go"})
    await asyncio.wait_for(saving.wait(), 10)  # the model is done; the reply is being saved
    await transcord.shutdown()
    assert saves and saves[-1] is not None, saves  # the final save ran before the store closed
    stored = await store.reply(reply.id)
    assert stored is not None and stored.finish_reason is not None and stored.text.endswith("ab")
    channel_id = int(reply.payload["channel"]["id"])
    assert await transcord.store.limits.inflight(channel_id, now=time.time()) == 0  # its slot given back


async def test_status_reports_the_service_and_help_lists_every_command(
    server: LoopbackDiscord, fake: FakeService, runner: BotRunner
) -> None:
    transcord = await runner.start()  # every extension: /help must explain each synced command
    assert transcord.failed_extensions == {}
    status = await run(server, "status")
    assert status.ephemeral
    assert "• **fake** on transformers, `cpu` (float32, 135.0M params): generate, fill-mask" in (
        status.content or ""
    )
    assert "Recent latency: n/a · speed: n/a" in (status.content or "")
    assert "failed to load" not in (status.content or "")
    help_ = await run(server, "help")
    synced = {c["name"] for c in server.synced_commands()}
    shown = "".join(m.content for m in help_.messages)  # a long help comes in parts
    mentioned = set(re.findall(r"\*\*/([a-z-]+)", shown))
    assert mentioned == synced - {"help"}
