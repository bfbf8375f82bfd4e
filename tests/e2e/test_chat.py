"""/chat say and /chat reset end to end: conversations per thread and per member, stored, isolated,
reset, kept across a restart, and fitted to the context."""

from __future__ import annotations

from pathlib import Path

import pytest

import app as bot_module
from loopback import LoopbackDiscord
from model_service import GenerationRequest
from tests.e2e.harness import BotRunner, all_text, has_footer, run

pytestmark = pytest.mark.timeout(120)


class Spy:
    """The requests the bot sends to the model service."""

    def __init__(self, runner: BotRunner) -> None:
        assert runner.service is not None
        self.seen: list[GenerationRequest] = []
        original = runner.service.stream

        def stream(request: GenerationRequest, **kwargs: object) -> object:
            self.seen.append(request)
            return original(request, **kwargs)  # type: ignore[arg-type]

        runner.service.stream = stream  # type: ignore[method-assign]

    @property
    def last(self) -> GenerationRequest:
        return self.seen[-1]


def shown(member: object) -> str:
    """The name Discord shows for a loopback member (discord.py's ``display_name``)."""
    return member.nick or member.user.global_name or member.user.name  # type: ignore[attr-defined]


async def say(server: LoopbackDiscord, message: str, **kwargs: object) -> str:
    reply = await run(server, "chat say", {"message": message}, until=has_footer, **kwargs)  # type: ignore[arg-type]
    return all_text(reply)


async def greedy(server: LoopbackDiscord, channel: object, max_new_tokens: int) -> None:
    """Temperature 0 and a reply length in ``channel``, set by a moderator."""
    settings = {"temperature": 0.0, "max_new_tokens": max_new_tokens}
    await run(server, "config set", settings, user=server.moderator, channel=channel)  # type: ignore[arg-type]


def answer(text: str) -> str:
    """The model's words in a /chat reply: between the quoted message and the footer."""
    body = text.split("\n-# ")[0]
    return "\n".join(line for line in body.splitlines() if not line.startswith("> ")).strip()


async def test_a_thread_shares_one_conversation_with_each_turn_attributed(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    spy = Spy(runner)
    await greedy(server, server.thread, 16)
    first = answer(await say(server, "My name is Ada.", channel=server.thread, user=server.member))
    second = await say(server, "What is her name?", channel=server.thread, user=server.moderator)

    request = spy.last
    assert request.author == shown(server.moderator)
    assert [(t.role, t.text, t.author) for t in request.history] == [
        ("user", "My name is Ada.", shown(server.member)),
        ("assistant", first, None),
    ]
    # At temperature 0 the second answer follows from the first exchange: asked without it (in
    # a fresh thread) the same message gets a shorter prompt.
    fresh = server.add_thread(server.general, "fresh")  # type: ignore[arg-type]
    await greedy(server, fresh, 16)
    await say(server, "What is her name?", channel=fresh, user=server.moderator)
    assert spy.last.history == ()
    assert "older turn" not in second


async def test_in_a_channel_each_member_has_their_own_and_channels_are_apart(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    spy = Spy(runner)
    await say(server, "I like owls.", user=server.member)
    await say(server, "I like cats.", user=server.moderator)
    await say(server, "What do I like?", user=server.member)
    assert [t.text for t in spy.last.history if t.role == "user"] == ["I like owls."]
    assert spy.last.author is None  # one person's conversation: no names needed

    other = server.add_channel("other")
    await say(server, "What do I like?", user=server.member, channel=other)
    assert spy.last.history == ()


async def test_reset_forgets_a_members_own_or_with_everyone_the_whole_thread(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    spy = Spy(runner)
    await say(server, "One.", channel=server.thread, user=server.member)
    await say(server, "Two.", channel=server.thread, user=server.moderator)

    mine = await run(server, "chat reset", {}, channel=server.thread, user=server.member)
    assert mine.ephemeral and "forgotten (1 exchanges)" in (mine.content or "")
    await say(server, "Three.", channel=server.thread, user=server.member)
    assert [t.text for t in spy.last.history if t.role == "user"] == ["Two."]

    refused = await run(server, "chat reset", {"everyone": True}, channel=server.thread, user=server.member)
    assert refused.ephemeral and "moderator role" in (refused.content or "")
    everyone = await run(
        server, "chat reset", {"everyone": True}, channel=server.thread, user=server.moderator
    )
    assert not everyone.ephemeral and "Every conversation in this thread is forgotten" in (
        everyone.content or ""
    )
    await say(server, "Four.", channel=server.thread, user=server.member)
    assert spy.last.history == ()


async def test_a_conversation_survives_a_restart(server: LoopbackDiscord, runner: BotRunner) -> None:
    await runner.start()
    await say(server, "Remember the word teapot.", channel=server.thread)
    await runner.restart()
    spy = Spy(runner)
    await say(server, "Which word?", channel=server.thread)
    assert [t.text for t in spy.last.history if t.role == "user"] == ["Remember the word teapot."]


async def test_channel_memory_expires_after_the_minutes_a_moderator_set(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    spy = Spy(runner)
    await say(server, "Hello there.")
    changed = await run(server, "config set", {"chat_memory_minutes": 0}, user=server.moderator)
    assert "chat_memory_minutes" in (changed.content or ""), changed.summary()
    await say(server, "Again.")
    assert spy.last.history == ()  # this channel now keeps no memory
    await run(server, "config set", {"chat_memory_minutes": 60}, user=server.moderator)
    await say(server, "Once more.")
    assert [t.text for t in spy.last.history if t.role == "user"] == ["Hello there.", "Again."]


async def test_the_oldest_turns_are_left_out_to_fit_and_the_footer_says_so(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    spy = Spy(runner)
    long = " ".join(f"w{i}" for i in range(60))  # the tiny model's context is 256 tokens
    await run(server, "config set", {"max_new_tokens": 8}, user=server.moderator, channel=server.thread)
    for i in range(4):
        await say(server, f"{i} {long}", channel=server.thread)
    last = await say(server, "And now?", channel=server.thread)
    assert len(spy.last.history) == 8
    assert "older turns of the conversation left out to fit" in last, last[-200:]


DEFAULT_GGUF = Path(__file__).resolve().parents[2] / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.default_model
@pytest.mark.skipif(not DEFAULT_GGUF.is_file(), reason=f"default model not fetched: no {DEFAULT_GGUF}")
async def test_the_default_model_remembers_across_two_turns(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    # As a user gets it: the default GGUF, on llama.cpp when it is installed.
    await runner.start(MODELS=f"smollm2={DEFAULT_GGUF}", DEFAULT_MODEL="smollm2", MAX_NEW_TOKENS_CAP="64")
    await greedy(server, server.thread, 40)
    # SmolLM2-135M is small: it did not recall a person's name, but it recalls this.
    await say(server, "I have a dog called Rex.", channel=server.thread)
    second = answer(await say(server, "What is my dog called?", channel=server.thread))
    assert "Rex" in second, second

    fresh = server.add_thread(server.general, "fresh")  # type: ignore[arg-type]
    await greedy(server, fresh, 40)
    alone = answer(await say(server, "What is my dog called?", channel=fresh))
    assert "Rex" not in alone, alone  # it came from the first turn, not from the question
