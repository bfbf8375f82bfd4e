"""/generate, /chat and /fill end to end: the real bot, the tiny real models, over the loopback server."""

from __future__ import annotations

import itertools
import re

import pytest

import app as bot_module
from loopback import LoopbackDiscord
from model_service import GenerationParams, GenerationRequest
from tests.e2e.harness import BotRunner, all_text, has_footer, no_pings, run

pytestmark = pytest.mark.timeout(120)

INTERVAL = 0.2  # STREAM_EDIT_INTERVAL_S in the test env


def footer(model: str) -> re.Pattern[str]:
    return re.compile(rf"\n-# (\d+) tokens · (\d+\.\d) s · {model}(?: · [^\n]+)?$")


FOOTER = footer("tiny")


async def test_generate_streams_edits_then_shows_prompt_continuation_and_footer(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    # The 1024-position GPT-2: a 500-token continuation runs for several edit intervals.
    await runner.start(DEFAULT_MODEL="long", MAX_NEW_TOKENS_CAP="1024")
    prompt = "Once upon a time"
    options = {"prompt": prompt, "max_new_tokens": 500, "temperature": 0}
    reply = await run(server, "generate", options, until=has_footer, timeout=90)

    assert reply.deferred and not reply.ephemeral and not reply.is_thinking
    parts = [m.content for m in reply.messages]
    final = "".join(parts)
    match = footer("long").search(final)
    assert match, final[-300:]
    assert int(match.group(1)) == 500
    # Greedy decoding is deterministic: the same request straight to the service gives the same text.
    assert runner.service is not None
    expected = await runner.service.generate(
        GenerationRequest(prompt, GenerationParams(max_new_tokens=500, temperature=0))
    )
    assert expected.text.strip()
    assert final[: match.start()] == f"**{prompt}**{expected.text}"
    assert all(len(p) <= 2000 for p in parts)

    # Streamed: growing previews ending in " …", each a prefix of the final text, paced by the interval.
    previews = reply.edits[:-1]
    assert len(previews) >= 2, reply.summary()
    for version in previews:
        assert version.content.endswith(" …") or version.content.endswith("…")
        assert len(version.content) <= 2000
        shown = version.content.removesuffix(" …")
        assert final.startswith(shown.removesuffix("…")), shown[-80:]
    gaps = [b.at - a.at for a, b in itertools.pairwise(previews)]
    assert min(gaps) >= INTERVAL * 0.8, gaps
    assert reply.edits[-1].content == parts[0]
    assert no_pings(reply)
    assert not server.unmatched_calls


async def test_chat_answers_in_the_persona_a_moderator_set(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    persona = "You are a cheerful pirate."
    changed = await run(server, "config set", {"persona": persona}, user=server.moderator)
    assert not changed.ephemeral and "persona" in (changed.content or ""), changed.summary()

    seen: list[GenerationRequest] = []
    assert runner.service is not None
    original_stream = runner.service.stream

    def spy(request: GenerationRequest, **kwargs: object) -> object:
        seen.append(request)
        return original_stream(request, **kwargs)  # type: ignore[arg-type]

    runner.service.stream = spy  # type: ignore[method-assign]
    message = "Tell me a story about a brave knight.\nPlease."
    reply = await run(server, "chat say", {"message": message}, until=has_footer)

    assert [(r.mode, r.system_prompt) for r in seen] == [("chat", persona)]
    content = reply.content or ""
    assert content.startswith("> Tell me a story about a brave knight.\n> Please.\n")
    assert FOOTER.search(content), content
    assert not reply.is_thinking and no_pings(reply)


async def test_fill_with_the_tiny_bert_ranks_guesses_with_percentages(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(FILL_MODEL="bert")
    reply = await run(server, "fill", {"text": "The capital of France is [MASK].", "top_k": 3})

    lines = (reply.content or "").splitlines()
    assert lines[0] == "**The capital of France is [MASK].**"
    ranked = lines[1:-1]
    assert len(ranked) == 3
    scores = []
    for rank, line in enumerate(ranked, 1):
        match = re.match(rf"^`{rank}\.` `[█░]{{12}}` +(\d+\.\d)%  \*\*.+\*\*$", line)
        assert match, line
        scores.append(float(match.group(1)))
    assert scores == sorted(scores, reverse=True)
    assert lines[-1].startswith("-# bert · masked LM · ")
    assert not reply.ephemeral and no_pings(reply)


async def test_fill_without_a_fill_model_uses_the_causal_fallback(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    reply = await run(server, "fill", {"text": "The capital of France is [MASK]."})

    lines = (reply.content or "").splitlines()
    assert lines[-1].startswith("-# tiny · causal LM, sentences rescored · ")
    ranked = [line for line in lines if re.match(r"^`\d+\.` `[█░]{12}` +\d+\.\d%  \*\*.+\*\*$", line)]
    assert 1 <= len(ranked) <= 5, lines
    percentages = [float(re.search(r"(\d+\.\d)%", line).group(1)) for line in ranked]  # type: ignore[union-attr]
    assert percentages == sorted(percentages, reverse=True)
    assert sum(percentages) <= 100.5
    assert no_pings(reply)


async def test_long_output_is_split_across_follow_ups_and_nothing_is_cut(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    # A prompt at Discord's 6000-character option limit, echoed in bold ahead of the continuation.
    words = [f"word{i}" for i in range(900)]
    prompt = " ".join(words)[:6000].rstrip()
    reply = await run(server, "generate", {"prompt": prompt, "max_new_tokens": 40}, until=has_footer)

    parts = [m for m in reply.messages if not m.deleted]
    assert len(parts) >= 4, reply.summary()
    assert all(0 < len(m.content) <= 2000 for m in parts)
    assert not any(m.ephemeral for m in parts)
    joined = all_text(reply)
    assert joined.startswith(f"**{prompt}**")
    assert FOOTER.search(joined), joined[-300:]
    # The previews were cut to fit one message; the final text is split, so it ends with the footer
    # (not with "…") and every word of the prompt is there, in order.
    assert " …" not in joined
    assert [w for w in re.findall(r"word\d+", joined[: len(prompt) + 4])] == prompt.split()
    assert "prompt cut from the left" in joined
    assert no_pings(reply)


async def test_a_seed_gives_the_same_text_again_and_another_seed_other_text(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    [generate] = [c for c in server.synced_commands() if c["name"] == "generate"]
    seed_option = next(o for o in generate["options"] if o["name"] == "seed")
    assert (seed_option["min_value"], seed_option["max_value"]) == (0, 2**32 - 1)

    def sampled(seed: int) -> dict[str, object]:
        return {"prompt": "Once upon a time", "max_new_tokens": 24, "temperature": 1.5, "seed": seed}

    first = await run(server, "generate", sampled(42), until=has_footer)
    again = await run(server, "generate", sampled(42), until=has_footer)
    other = await run(server, "generate", sampled(7), until=has_footer)

    def text(record: object) -> str:
        return FOOTER.split(all_text(record))[0]  # type: ignore[arg-type]

    assert text(first) == text(again)
    assert text(first) != text(other)


async def test_every_reply_shows_its_seed_and_settings_and_they_redo_it(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    first = await run(
        server,
        "generate",
        {"prompt": "Once upon a time", "max_new_tokens": 16, "temperature": 1.3},
        until=has_footer,
    )
    shown = re.search(r"seed (\d+) temperature 1.3 top_p 0.95", all_text(first))
    assert shown, all_text(first)[-200:]
    seed = int(shown.group(1))  # picked by the bot, since none was given

    again = await run(
        server,
        "generate",
        {"prompt": "Once upon a time", "max_new_tokens": 16, "temperature": 1.3, "seed": seed},
        until=has_footer,
    )
    assert f"seed {seed} temperature 1.3" in all_text(again)
    assert FOOTER.split(all_text(again))[0] == FOOTER.split(all_text(first))[0]
    chat = await run(server, "chat say", {"message": "Hello"}, until=has_footer)
    assert re.search(r"seed \d+ temperature", all_text(chat))
