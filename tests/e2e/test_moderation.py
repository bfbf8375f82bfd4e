"""/mod end to end: the real bot and tiny model over the loopback server, as members and moderators."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from domain.rules import Blocklist
from loopback import InteractionRecord, InvalidInvocation, LoopbackDiscord
from model_service import GenerationParams, GenerationRequest, GenerationResult
from tests.e2e.harness import BotRunner

pytestmark = pytest.mark.timeout(60)

FAST = {"DEFAULT_MAX_NEW_TOKENS": "8"}  # model replies only need to exist here, not to be long
NOT_A_MODERATOR = "🚫 This command needs Manage Channels or the moderator role."
LOCKED = "🔒 This channel is locked by a moderator."
MOD_COMMANDS: list[tuple[str, dict[str, object]]] = [
    ("mod lock", {}),
    ("mod unlock", {}),
    ("mod cooldown", {"seconds": 5}),
    ("mod limit", {"n": 1}),
    ("mod blocklist add", {"phrase": "dragon"}),
    ("mod blocklist remove", {"phrase": "dragon"}),
    ("mod blocklist list", {}),
    ("mod show", {}),
    ("mod log", {}),
]


FOOTER = re.compile(r"\n-# \d+ tokens · ")


def answered(record: InteractionRecord) -> bool:
    """A model reply went out: public, with the footer of a finished generation."""
    return not record.ephemeral and bool(FOOTER.search(record.content or ""))


def settled(record: InteractionRecord) -> bool:
    """Answered at once, or a deferred reply that is finished (footer) or was refused after all."""
    if not record.responded or record.is_thinking:
        return False
    if record.callback_type == 4:
        return True
    shown = "".join(m.content for m in record.messages if not m.deleted)
    return bool(FOOTER.search(shown)) or any(m.ephemeral for m in record.followups)


async def run(
    server: LoopbackDiscord, command: str, options: dict[str, object] | None = None, **kwargs: object
) -> InteractionRecord:
    """Invoke and wait until the answer is complete (no quiet period to sit out, unlike harness.run)."""
    record = await server.invoke(command, options, **kwargs)  # type: ignore[arg-type]
    return await record.wait_for(settled, timeout=15)


async def generate(
    server: LoopbackDiscord, prompt: str = "Once upon a time", **kwargs: object
) -> InteractionRecord:
    return await run(server, "generate", {"prompt": prompt, "max_new_tokens": 4}, **kwargs)


async def test_members_are_refused_every_moderator_command(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**FAST)
    assert server.guild is not None
    for command, options in MOD_COMMANDS:
        # Discord hides /mod from members (default_permissions) ...
        with pytest.raises(
            InvalidInvocation, match="Discord hides /mod from member: it needs Manage Channels"
        ):
            await server.invoke(command, options, user=server.member)
    # ... and when an admin opens it to everyone in Integrations, the bot still decides.
    server.grant_command("mod", server.guild)
    for command, options in MOD_COMMANDS:
        refused = await run(server, command, options, user=server.member)
        assert refused.ephemeral and refused.content == NOT_A_MODERATOR, (command, refused.summary())
    # Nothing they tried took effect, and nothing was logged.
    assert answered(await generate(server))
    log = await run(server, "mod log", user=server.moderator)
    assert log.ephemeral and "*(nothing yet)*" in (log.content or "")


async def test_the_moderator_role_grants_mod_commands_without_manage_channels(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**FAST)
    storytellers = server.add_role("Storytellers")  # no permissions at all
    helper = server.add_member("helper", [storytellers])
    server.grant_command("mod", storytellers)  # Integrations: the role sees /mod
    refused = await run(server, "mod lock", user=helper)
    assert refused.content == NOT_A_MODERATOR
    assert server.owner is not None
    set_role = await run(server, "config moderator-role", {"role": storytellers}, user=server.owner)
    assert "Storytellers" in (set_role.content or "") or str(storytellers.id) in (set_role.content or "")
    locked = await run(server, "mod lock", user=helper)
    assert not locked.ephemeral and "locked this channel" in (locked.content or "")


async def test_a_locked_channel_and_its_threads_refuse_model_commands(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**FAST)
    lock = await run(server, "mod lock", user=server.moderator)
    assert (
        not lock.ephemeral
        and lock.content
        and lock.content.startswith("🔒 ")
        and "/mod unlock" in lock.content
    )

    attempts = [
        await generate(server),
        await generate(server, channel=server.thread),  # a thread is locked when its parent is
        await generate(server, user=server.moderator),
        await run(server, "chat say", {"message": "hello"}),
        await run(server, "fill", {"text": "The cat sat on the [MASK]."}),
        await run(server, "story start", {"premise": "A cat on a mat"}),
    ]
    for refused in attempts:
        assert refused.ephemeral and refused.content == LOCKED, refused.summary()
    # Commands that do not call the model still work.
    assert (await run(server, "settings show")).content

    assert (await run(server, "mod unlock", user=server.moderator)).content.startswith("🔓 ")  # type: ignore[union-attr]
    assert answered(await generate(server))
    assert answered(await generate(server, channel=server.thread))

    # Locking only the thread leaves the channel open.
    await run(server, "mod lock", user=server.moderator, channel=server.thread)
    assert (await generate(server, channel=server.thread)).content == LOCKED
    assert answered(await generate(server))


async def test_cooldown_tells_each_user_how_long_to_wait(server: LoopbackDiscord, runner: BotRunner) -> None:
    await runner.start(**FAST)
    set_it = await run(server, "mod cooldown", {"seconds": 30}, user=server.moderator)
    assert "**30 s** per user" in (set_it.content or "")

    assert answered(await generate(server))
    too_soon = await generate(server)
    assert too_soon.ephemeral
    wait = re.fullmatch(r"⏳ Slow down: you can use this again in (\d+) s\.", too_soon.content or "")
    assert wait and 28 <= int(wait.group(1)) <= 30, too_soon.content
    # The parent's cooldown follows the user into its threads; other users are not held up.
    assert (await generate(server, channel=server.thread)).content.startswith("⏳ Slow down")  # type: ignore[union-attr]
    assert answered(await generate(server, user=server.moderator))

    await run(server, "mod cooldown", {"seconds": 0}, user=server.moderator)
    assert answered(await generate(server))
    assert answered(await generate(server))


async def test_limit_answers_busy_while_n_requests_run(server: LoopbackDiscord, runner: BotRunner) -> None:
    await runner.start(**FAST)
    set_it = await run(server, "mod limit", {"n": 1}, user=server.moderator)
    assert "to **1** model command at once" in (set_it.content or "")

    # Hold the first request in flight: Discord is slow to take its "thinking…" answer.
    payload = server.build_interaction("generate", {"prompt": "Once upon a time"}, user=server.member)
    slow = server.inject_delay(1.5, "POST", f"/interactions/{payload['id']}/", count=1)
    first = await server.send_raw_interaction(payload)
    await server.wait_for(lambda: slow.hits == 1, what="the first reply to be held")

    busy = await generate(server, user=server.moderator)
    assert busy.ephemeral
    assert busy.content == (
        "⏳ This channel is busy: 1 of its requests are already running (a moderator set this limit). "
        "Try again when one finishes."
    )
    assert answered(await first.wait_for(settled, timeout=15))
    assert answered(await generate(server, user=server.moderator))  # the slot is free again


async def test_a_blocked_phrase_is_refused_in_prompts_and_redacted_in_model_output(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**FAST)
    prompt, tokens = "Once upon a time", 48
    assert runner.service is not None
    greedy = GenerationParams(max_new_tokens=tokens, temperature=0)
    expected = await runner.service.generate(GenerationRequest(prompt, greedy))
    # A word the model writes (greedy decoding writes it again), and not in the prompt.
    words = Counter(w.lower() for w in re.findall(r"[A-Za-z]{4,}", expected.text))
    word = next(w for w, _ in words.most_common() if w not in prompt.lower())
    blocklist = Blocklist.of([word])

    added = await run(server, "mod blocklist add", {"phrase": word.upper()}, user=server.moderator)
    assert added.ephemeral and f"Blocked “{word}”" in (added.content or "")

    refused = await generate(server, f"{prompt}, the {word.capitalize()}!")
    assert refused.ephemeral
    assert refused.content == f"🚫 Your text contains “{word}”, which a moderator blocked in this channel."

    options = {"prompt": prompt, "max_new_tokens": tokens, "temperature": 0}
    reply = await run(server, "generate", options)
    body = FOOTER.split(reply.content or "")[0].removeprefix(f"**{prompt}**")
    assert body == blocklist.redact(expected.text) != expected.text
    assert "█" * len(word) in body
    for version in reply.edits:  # the streamed previews too, however many there were
        assert blocklist.find(version.content.removesuffix(" …")) is None, version.content

    # Unblocked, the word is shown again.
    await run(server, "mod blocklist remove", {"phrase": word}, user=server.moderator)
    again = await run(server, "generate", options)
    assert FOOTER.split(again.content or "")[0] == f"**{prompt}**{expected.text}"


GATE = None  # in a script: wait for the test to open the gate


class ScriptedStream:
    def __init__(self, script: list[str | None], pause: float, gate: asyncio.Event) -> None:
        self.script, self.pause, self.gate = script, pause, gate
        self.result: GenerationResult | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        for delta in self.script:
            if delta is GATE:
                await self.gate.wait()
                continue
            await asyncio.sleep(self.pause)
            yield delta
        text = "".join(d for d in self.script if d is not GATE)
        self.result = GenerationResult(text, "eos", 2, len(self.script), False, "scripted", 0.1)

    def queue_place(self) -> tuple[int, float] | None:
        return None  # never waits for a slot

    async def aclose(self) -> None:
        pass


class ScriptedService:
    """A ModelServiceAPI whose streams replay a script, slowly: one streamed edit per delta."""

    def __init__(self, script: list[str | None], pause: float) -> None:
        self.script, self.pause, self.gate = script, pause, asyncio.Event()

    def stream(self, request: GenerationRequest, *, timeout: float | None = None) -> ScriptedStream:
        return ScriptedStream(self.script, self.pause, self.gate)

    def params(self, values: dict[str, object] | None = None) -> GenerationParams:
        return GenerationParams.from_values(values)

    def model_names(self) -> list[str]:
        return ["tiny"]


async def test_streamed_edits_are_redacted_even_for_a_phrase_blocked_mid_reply(
    server: LoopbackDiscord, env: dict[str, str]
) -> None:
    service = ScriptedService(["The ", "wolf", " howled", GATE, " at the ", "bear", "."], pause=0.3)

    async def factory(config: object) -> ScriptedService:
        return service

    runner = BotRunner(server, env, service_factory=factory)  # type: ignore[arg-type]
    try:
        await runner.start()
        await run(server, "mod blocklist add", {"phrase": "wolf"}, user=server.moderator)
        reply = await server.invoke("generate", {"prompt": "Tell me"})
        await reply.wait_for(lambda r: "howled" in (r.content or ""), timeout=10)
        await run(server, "mod blocklist add", {"phrase": "bear"}, user=server.moderator)
        service.gate.set()
        await reply.wait_for(settled, timeout=10)
    finally:
        await runner.aclose()

    assert [v.content for v in reply.edits] == [
        "**Tell me**The  …",
        "**Tell me**The ████ …",
        "**Tell me**The ████ howled …",
        "**Tell me**The ████ howled at the  …",
        "**Tell me**The ████ howled at the ████ …",
        "**Tell me**The ████ howled at the ████. …",
        "**Tell me**The ████ howled at the ████.\n-# 7 tokens · 0.1 s · scripted",
    ]


async def test_blocklist_list_shows_a_threads_own_and_inherited_phrases(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**FAST)
    await run(server, "mod blocklist add", {"phrase": "Dark  Lord"}, user=server.moderator)
    await run(server, "mod blocklist add", {"phrase": "orc"}, user=server.moderator, channel=server.thread)
    again = await run(server, "mod blocklist add", {"phrase": "dark lord"}, user=server.moderator)
    assert "already blocked" in (again.content or "")
    listed = await run(server, "mod blocklist list", user=server.moderator, channel=server.thread)
    assert listed.ephemeral
    assert listed.content == (
        "**Blocked in this thread** (whole words, any case)\n"
        "• “dark lord” · *from the parent channel*\n"
        "• “orc”"
    )
    assert (await generate(server, "the orc sings", channel=server.thread)).content.startswith("🚫")  # type: ignore[union-attr]
    assert answered(await generate(server, "the orc sings"))  # the thread's list is its own


async def test_mod_log_shows_who_did_what_and_when(server: LoopbackDiscord, runner: BotRunner) -> None:
    await runner.start(**FAST)
    assert server.moderator is not None and server.owner is not None
    mod, owner = server.moderator.id, server.owner.id
    await run(server, "mod lock", user=server.moderator)
    await run(server, "mod cooldown", {"seconds": 10}, user=server.moderator)
    await run(server, "mod limit", {"n": 3}, user=server.owner)
    await run(server, "mod blocklist add", {"phrase": "orc"}, user=server.moderator)
    await run(server, "config set", {"temperature": 0.3}, user=server.owner)
    await run(server, "config reset", {"setting": "temperature"}, user=server.moderator)
    await run(server, "config set", {"scope": "server", "top_k": 5}, user=server.owner)
    await run(server, "mod unlock", user=server.owner)
    await run(server, "mod lock", user=server.moderator, channel=server.thread)

    log = await run(server, "mod log", user=server.moderator)
    assert log.ephemeral and log.content is not None
    lines = log.content.splitlines()
    assert lines[0] == "**Moderation log for this channel** (newest first)"
    entries = [re.fullmatch(r"<t:(\d+):R> · <@(\d+)> · \*\*([^*]+)\*\*(.*)", line) for line in lines[1:]]
    assert all(entries), lines
    seen = [(int(e.group(2)), e.group(3), e.group(4)) for e in entries if e]
    assert seen == [
        (owner, "unlock", ": model commands allowed"),
        (owner, "config set", ": top\\_k=5 · *server-wide*"),
        (mod, "config reset", ": temperature"),
        (owner, "config set", ": temperature=0.3"),
        (mod, "blocklist add", ": orc"),
        (owner, "limit", ": 3 at once"),
        (mod, "cooldown", ": 10 s per user"),
        (mod, "lock", ": model commands paused"),
    ]
    assert all(abs(int(e.group(1)) - time.time()) < 60 for e in entries if e)

    # In the thread: its own entries and its parent's, marked.
    in_thread = await run(server, "mod log", {"count": 2}, user=server.moderator, channel=server.thread)
    thread_lines = (in_thread.content or "").splitlines()
    assert len(thread_lines) == 3
    assert thread_lines[1].endswith("**lock**: model commands paused")
    assert thread_lines[2].endswith("**unlock**: model commands allowed · *parent channel*")
