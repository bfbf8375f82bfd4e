"""/story end to end: turns, a restart mid-story, concurrent additions, moderation, the transcript;
stories with a cast of characters speaking through the bot's webhook."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

import app as bot_module
from domain.stories import STORYTELLER, story_request
from loopback import InteractionRecord, LoopbackDiscord, Member
from loopback.mentions import Mentions, resolve
from loopback.records import MessageRecord
from model_service import GenerationParams, GenerationRequest, GenerationResult, OverloadedError
from storage.types import StoreUnavailable
from tests.e2e.harness import BotRunner
from tests.e2e.test_characters import grant_webhooks, webhook_calls
from tests.e2e.test_chat import Spy

pytestmark = pytest.mark.timeout(60)

FAST = {"DEFAULT_MAX_NEW_TOKENS": "12"}
FOOTER = re.compile(r"\n-# \d+ tokens · [^\n]*$")


def settled(record: InteractionRecord) -> bool:
    """Answered at once, or a deferred reply that is finished (footer) or was refused after all."""
    if not record.responded or record.is_thinking:
        return False
    if record.callback_type == 4:
        return True
    return bool(FOOTER.search(shown(record))) or any(m.ephemeral for m in record.followups)


def shown(record: InteractionRecord) -> str:
    return "".join(m.content for m in record.messages if not m.deleted)


async def run(
    server: LoopbackDiscord, command: str, options: dict[str, object] | None = None, **kwargs: object
) -> InteractionRecord:
    record = await server.invoke(command, options, **kwargs)  # type: ignore[arg-type]
    return await record.wait_for(settled, timeout=15)


def continuation(record: InteractionRecord, header_end: str) -> str:
    """The model's part of a story reply: after the header, before the footer."""
    text = shown(record)
    assert not record.ephemeral and FOOTER.search(text), record.summary()
    start = text.index(header_end) + len(header_end)
    return text[start : FOOTER.search(text).start()]  # type: ignore[union-attr]


def name(member: Member | None) -> str:
    assert member is not None
    return member.user.name


async def test_round_robin_story_keeps_turns_across_a_restart_and_ends_with_its_transcript(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**FAST)
    alice, bob = server.member, server.moderator
    carol = server.add_member("carol")
    premise = "A lighthouse keeper finds a talking crab"
    # Stories sample with the channel's settings: greedy here, so the opening is predictable.
    await run(server, "config set", {"temperature": 0.0}, user=server.moderator)

    opening = await run(
        server,
        "story start",
        {"premise": premise, "turns": "round-robin", "max_players": 3, "length": 60},
    )
    assert opening.content and opening.content.startswith(
        "📖 **Story #1** · round-robin · up to 3 players · short turns"
    )
    posted = {"opening": continuation(opening, "`/story add`\n\n")}
    assert runner.service is not None
    greedy = GenerationParams(max_new_tokens=int(FAST["DEFAULT_MAX_NEW_TOKENS"]), temperature=0)
    direct = await runner.service.generate(story_request(premise, [], greedy, None, turn_tokens=60))
    assert posted["opening"] == direct.text and direct.text.strip()
    spoken = opening.content.split("\n-# ")[-1]
    assert int(spoken.split(" tokens")[0]) <= 60  # the story's own turn length

    second = await run(server, "story start", {"premise": "Another tale"}, user=bob)
    assert second.ephemeral and "A story is already open here (#1" in (second.content or "")

    joined = await run(server, "story join", user=bob)
    assert joined.content == (
        f"👋 <@{bob.id}> joined story #1 (2/3 players). Turn order: **{name(alice)}** → **{name(bob)}**."  # type: ignore[union-attr]
    )
    assert (await run(server, "story join", user=carol)).content.endswith("→ **carol**.")  # type: ignore[union-attr]
    full = await run(server, "story join", user=server.owner)
    assert full.ephemeral and full.content == "ℹ️ Story #1 is full (3 players)."

    early = await run(server, "story add", {"text": "Bob jumps the queue."}, user=bob)
    assert (
        early.ephemeral
        and early.content == f"⏳ It's **{name(alice)}**'s turn (round-robin). Wait for them to add theirs."
    )
    outsider = await run(server, "story add", {"text": "Let me in."}, user=server.owner)
    assert outsider.ephemeral and "Join with `/story join` first" in (outsider.content or "")

    contributions = {
        "alice": "The crab asked for a cup of tea.",
        "bob": "The keeper boiled the kettle.",
        "carol": "A storm rolled in from the sea.",
    }
    turn = await run(server, "story add", {"text": contributions["alice"]}, user=alice)
    posted["alice"] = continuation(turn, f"✍️ **{name(alice)}**: {contributions['alice']}\n")
    again = await run(server, "story add", {"text": "Me again."}, user=alice)
    assert again.ephemeral and f"It's **{name(bob)}**'s turn" in (again.content or "")

    await runner.restart(**FAST)  # the story, its players and whose turn it is live in SQLite

    assert (await run(server, "story add", {"text": "Out of turn."}, user=carol)).ephemeral
    turn = await run(server, "story add", {"text": contributions["bob"]}, user=bob)
    posted["bob"] = continuation(turn, f"✍️ **{name(bob)}**: {contributions['bob']}\n")
    turn = await run(server, "story add", {"text": "A wrong turn to undo."}, user=carol)
    assert not turn.ephemeral

    # Undo is for moderators; it takes back carol's turn and the bot's continuation of it.
    assert (await run(server, "story undo", user=carol)).ephemeral
    undo = await run(server, "story undo", user=bob)
    assert undo.content == (
        f"↩️ <@{bob.id}> removed **carol**'s last turn from story #1, and the bot's continuation of it. "  # type: ignore[union-attr]
        "Next turn: **carol**."
    )
    turn = await run(server, "story add", {"text": contributions["carol"]}, user=carol)
    posted["carol"] = continuation(turn, f"✍️ **carol**: {contributions['carol']}\n")

    show = await run(server, "story show", user=carol)
    assert show.ephemeral and "A wrong turn" not in (show.content or "")
    assert f"**{name(alice)}**: {contributions['alice']}" in (show.content or "")
    assert (show.content or "").endswith(f"-# next turn: {name(alice)}")

    # Only the starter or a moderator may end it; the starter gets the transcript as a file.
    assert (await run(server, "story end", user=carol)).ephemeral
    end = await run(server, "story end", user=alice)
    assert not end.ephemeral
    assert (
        end.content == f"📕 <@{alice.id}> ended story #1: 3 turns by 3 players. The whole story is attached."
    )  # type: ignore[union-attr]
    [attachment] = [a for m in end.messages for a in m.attachments]
    assert attachment.filename == "story-1.txt"
    transcript = attachment.text
    assert transcript.startswith(f"Story #1\nPremise: {premise}\nTurns: round-robin · Players: ")
    assert "A wrong turn" not in transcript
    # Everything that was posted, in the order it was posted.
    expected = [
        ("[Opening]", posted["opening"]),
        (f"[{name(alice)}]", contributions["alice"]),
        ("[Transcord]", posted["alice"]),
        (f"[{name(bob)}]", contributions["bob"]),
        ("[Transcord]", posted["bob"]),
        ("[carol]", contributions["carol"]),
        ("[Transcord]", posted["carol"]),
    ]
    body = transcript.split("\n\n", 1)[1]  # after the header
    assert body == "\n\n".join(f"{label}\n{text.strip()}" for label, text in expected) + "\n"

    # Ended and archived: the channel is free for a new story.
    assert (
        await run(server, "story show")
    ).content == "❌ No story is open here. Start one with `/story start`."
    assert (await run(server, "story start", {"premise": "A second story"})).content.startswith(
        "📖 **Story #2**"
    )  # type: ignore[union-attr]


async def test_two_additions_at_the_same_moment_are_both_kept_in_order(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    bot = await runner.start(**FAST)
    alice, bob = server.member, server.moderator
    await run(server, "config set", {"temperature": 0.0}, user=server.moderator)  # greedy: predictable
    premise = "Two friends build a raft"
    await run(server, "story start", {"premise": premise, "length": 60}, user=alice)
    await run(server, "story join", user=bob)

    first, second = await asyncio.gather(
        server.invoke("story add", {"text": "Alice ties the logs."}, user=alice),
        server.invoke("story add", {"text": "Bob finds a sail."}, user=bob),
    )
    await asyncio.gather(first.wait_for(settled, timeout=15), second.wait_for(settled, timeout=15))
    assert not first.ephemeral and not second.ephemeral

    story = await bot.store.stories.open_story(server.general.id)  # type: ignore[union-attr]
    assert story is not None
    turns = await bot.store.stories.story_turns(story.id)
    assert [t.kind for t in turns] == ["opening", "player", "bot", "player", "bot"]
    assert {turns[1].text, turns[3].text} == {"Alice ties the logs.", "Bob finds a sail."}
    # Each contribution is followed by the continuation its own reply showed.
    for record in (first, second):
        text = shown(record)
        mine = next(i for i, t in enumerate(turns) if t.kind == "player" and t.text in text)
        assert turns[mine + 1].text.strip() in text
    # The later one was written after the earlier exchange was stored, and continues from it.
    greedy = GenerationParams(max_new_tokens=int(FAST["DEFAULT_MAX_NEW_TOKENS"]), temperature=0)
    request = story_request(premise, [t.text for t in turns[:4]], greedy, None, turn_tokens=60)
    assert runner.service is not None
    assert turns[4].text == (await runner.service.generate(request)).text


async def test_moderation_applies_to_story_commands(server: LoopbackDiscord, runner: BotRunner) -> None:
    await runner.start(**FAST)
    await run(server, "mod blocklist add", {"phrase": "kraken"}, user=server.moderator)
    refused = await run(server, "story start", {"premise": "The Kraken wakes"})
    assert refused.ephemeral and "“kraken”" in (refused.content or "")
    await run(server, "story start", {"premise": "A sea voyage"})
    blocked = await run(server, "story add", {"text": "Then the kraken rose."})
    assert blocked.ephemeral and "“kraken”" in (blocked.content or "")

    await run(server, "mod lock", user=server.moderator)
    locked = await run(server, "story add", {"text": "The ship sailed on."})
    assert locked.content == "🔒 This channel is locked by a moderator."
    show = await run(server, "story show")  # reading the story needs no model
    assert "The ship sailed on." not in (show.content or "") and "kraken" not in (show.content or "")
    await run(server, "mod unlock", user=server.moderator)
    assert not (await run(server, "story add", {"text": "The ship sailed on."})).ephemeral

    log = await run(server, "mod log", user=server.moderator)
    end = await run(server, "story end", user=server.moderator)  # a moderator may end anyone's story
    assert not end.ephemeral and "ended story #1" in (end.content or "")
    log = await run(server, "mod log", {"count": 1}, user=server.moderator)
    assert log.content and log.content.splitlines()[1].endswith("**story end**: story #1")


class BusyService:
    """A ModelServiceAPI that is always full: every stream is refused as overloaded."""

    def stream(self, request: GenerationRequest, *, timeout: float | None = None) -> object:
        raise OverloadedError("the queue is full", retry_after=3)

    def params(self, values: dict[str, object] | None = None) -> GenerationParams:
        return GenerationParams.from_values(values)

    def model_names(self) -> list[str]:
        return ["tiny"]


async def test_a_story_whose_opening_fails_is_not_left_open(
    server: LoopbackDiscord, env: dict[str, str]
) -> None:
    async def factory(config: object) -> BusyService:
        return BusyService()

    runner = BotRunner(server, env, service_factory=factory)  # type: ignore[arg-type]
    try:
        bot = await runner.start()
        refused = await run(server, "story start", {"premise": "A quiet night"})
        assert refused.ephemeral and refused.content == "⏳ The model is busy right now; try again in 3 s."
        assert await bot.store.stories.open_story(server.general.id) is None  # type: ignore[union-attr]
        assert (
            await run(server, "story join")
        ).content == "❌ No story is open here. Start one with `/story start`."
    finally:
        await runner.aclose()


async def test_a_round_robin_turn_can_be_skipped_by_its_player_or_a_moderator_only(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**FAST)
    alice, bob, carol = server.member, server.moderator, server.add_member("carol")
    await run(server, "story start", {"premise": "A kite that will not fly", "turns": "round-robin"})
    await run(server, "story join", user=bob)
    await run(server, "story join", user=carol)

    refused = await run(server, "story skip", user=carol)  # alice's turn, and carol is no moderator
    assert refused.ephemeral and f"Only {name(alice)}, whose turn it is, or a moderator" in (
        refused.content or ""
    )
    mine = await run(server, "story skip", user=alice)
    assert mine.content == f"⏭️ <@{alice.id}> skipped their own turn in story #1. Next turn: **{name(bob)}**."  # type: ignore[union-attr]
    by_moderator = await run(server, "story skip", user=bob)  # bob is a moderator and it is his turn
    assert by_moderator.content and by_moderator.content.endswith("Next turn: **carol**.")
    turn = await run(server, "story add", {"text": "Carol finds the wind."}, user=carol)
    assert not turn.ephemeral and FOOTER.search(shown(turn))
    show = await run(server, "story show", user=alice)
    assert show.content and show.content.endswith(f"-# next turn: {name(alice)}")


async def test_a_turn_passes_when_the_timer_runs_out_with_a_notice(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**FAST)
    alice, bob = server.member, server.moderator
    await run(server, "story start", {"premise": "A clock that runs backwards", "turns": "round-robin"})
    await run(server, "story join", user=bob)

    refused = await run(server, "story timer", {"minutes": 5.0}, user=alice)
    assert refused.ephemeral and "moderator role" in (refused.content or "")
    timer = await run(server, "story timer", {"minutes": 0.01}, user=bob)  # 0.6 s
    assert timer.content == "⏰ In story #1, a turn now passes after 0.6 s without a word."

    assert server.general is not None
    notices: list[str] = []
    for _ in range(50):
        notices = [
            m.content for m in server.channel_messages(server.general) if m.content.startswith("⏰ **")
        ]
        if notices:
            break
        await asyncio.sleep(0.1)
    assert notices, [m.content for m in server.channel_messages(server.general)]
    assert notices[0] == (
        f"⏰ **{name(alice)}**'s turn in story #1 timed out after 0.6 s. Next turn: **{name(bob)}**."
    )
    turn = await run(server, "story add", {"text": "Bob winds it."}, user=bob)
    assert not turn.ephemeral and FOOTER.search(shown(turn))
    await run(server, "story timer", {"minutes": 0.0}, user=bob)


async def test_a_free_story_has_no_turn_to_skip_or_time(server: LoopbackDiscord, runner: BotRunner) -> None:
    await runner.start(**FAST)
    await run(server, "story start", {"premise": "Anything goes"})
    skipped = await run(server, "story skip")
    assert skipped.ephemeral and "free turns" in (skipped.content or "")
    timed = await run(server, "story timer", {"minutes": 1.0}, user=server.moderator)
    assert timed.ephemeral and "free turns" in (timed.content or "")


# -- stories with a cast ---------------------------------------------------------------------------

CAST_TIMEOUT_S = 30


def said(server: LoopbackDiscord) -> list[MessageRecord]:
    """Every finished line the cast spoke through the bot's webhook, deleted ones included, in order."""
    lines = [
        m for m in server.state.messages.values() if m.webhook_author is not None and FOOTER.search(m.content)
    ]
    return sorted(lines, key=lambda m: m.id)


def speaker(message: MessageRecord) -> str:
    assert message.webhook_author is not None
    return str(message.webhook_author["username"])


def line_text(message: MessageRecord) -> str:
    """What a cast line says: its text before the footer."""
    return message.content[: FOOTER.search(message.content).start()]  # type: ignore[union-attr]


async def commands_done() -> None:
    """Wait until the bot has run every slash command it received to the end (its writes included)."""
    for _ in range(CAST_TIMEOUT_S * 20):
        if not any(t.get_name() == "CommandTree-invoker" and not t.done() for t in asyncio.all_tasks()):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("a slash command was still running")


async def cast_run(
    server: LoopbackDiscord,
    command: str,
    options: dict[str, object] | None = None,
    *,
    speaking: int = 0,
    **kwargs: object,
) -> InteractionRecord:
    """Run a story command and wait for it to end, and for ``speaking`` new lines of the cast."""
    before = len(said(server))
    record = await server.invoke(command, options, **kwargs)  # type: ignore[arg-type]
    await record.wait_for(lambda r: r.responded and not r.is_thinking, timeout=CAST_TIMEOUT_S)
    await server.wait_for(lambda: len(said(server)) >= before + speaking, CAST_TIMEOUT_S, "the cast's lines")
    await commands_done()
    assert len(said(server)) == before + speaking, [speaker(m) for m in said(server)]
    return record


async def make_cast(server: LoopbackDiscord) -> None:
    grant_webhooks(server)
    mod = server.moderator
    await run(server, "character create", {"name": "Mira", "persona": "A pirate captain."}, user=mod)
    await run(
        server,
        "character create",
        {"name": "Bard", "persona": "A wandering singer.", "avatar_url": "https://example.com/bard.png"},
        user=mod,
    )


@pytest.mark.timeout(180)
async def test_a_story_with_a_narrator_and_two_characters_through_turns_skip_undo_and_a_restart(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    bot = await runner.start(**FAST)
    spy = Spy(runner)
    alice, bob = server.member, server.moderator  # bob is a moderator
    await make_cast(server)
    premise = "A ship sails to the edge of the map"

    unknown = await run(server, "story start", {"premise": premise, "cast": "Mira, Ghost, bard, Spook"})
    assert unknown.ephemeral and "no characters named “Ghost”, “Spook”" in (unknown.content or "")
    assert await bot.store.stories.open_story(server.general.id) is None  # type: ignore[union-attr]

    start = await cast_run(
        server,
        "story start",
        {"premise": premise, "turns": "round-robin", "length": 60, "cast": "mira, Bard"},
        speaking=1,
    )
    assert (start.content or "").startswith(
        "📖 **Story #1** · round-robin · up to 6 players · short turns · "
        "cast (rotation): **Narrator**, **Mira**, **Bard** · started by"
    )
    [opening] = said(server)
    assert speaker(opening) == "Narrator" and opening.webhook_author["avatar"]  # type: ignore[index]
    assert spy.last.system_prompt == STORYTELLER
    await run(server, "story join", user=bob)

    # A player's turn, then the next of the cast in rotation: Mira, then Bard.
    turn = await cast_run(server, "story add", {"text": "Alice climbs the mast."}, user=alice, speaking=1)
    assert turn.content == f"✍️ **{name(alice)}**: Alice climbs the mast." and not turn.ephemeral
    mira = said(server)[-1]
    assert speaker(mira) == "Mira" and mira.webhook_author["avatar"] != opening.webhook_author["avatar"]  # type: ignore[index]
    assert "You are Mira" in (spy.last.system_prompt or "") and "A pirate captain." in (
        spy.last.system_prompt or ""
    )
    assert f"{name(alice)}: Alice climbs the mast." in spy.last.prompt  # who said what, for the cast
    await cast_run(server, "story add", {"text": "Bob reads the stars."}, user=bob, speaking=1)
    bard = said(server)[-1]
    assert speaker(bard) == "Bard" and bard.webhook_author["avatar_url"] == "https://example.com/bard.png"  # type: ignore[index]
    assert f"Mira: {line_text(mira).strip()}" in spy.last.prompt

    # Skip and undo: alice passes; bob's turn is undone, with the narrator's line (its message too).
    skip = await cast_run(server, "story skip", user=alice)
    assert (skip.content or "").endswith(f"Next turn: **{name(bob)}**.")
    await cast_run(server, "story add", {"text": "A wrong turn."}, user=bob, speaking=1)
    wrong = said(server)[-1]
    assert speaker(wrong) == "Narrator"
    undo = await cast_run(server, "story undo", user=bob)
    assert undo.content == (
        f"↩️ <@{bob.id}> removed **{name(bob)}**'s last turn from story #1, and what the cast said after it. "  # type: ignore[union-attr]
        f"Next turn: **{name(bob)}**."
    )
    assert wrong.deleted and not any(m.deleted for m in said(server)[:-1])

    # A restart keeps the characters, the story, its cast and whose turn it is.
    bot = await runner.restart(**FAST)
    early = await run(server, "story add", {"text": "Out of turn."}, user=alice)
    assert early.ephemeral and f"It's **{name(bob)}**'s turn" in (early.content or "")
    await cast_run(server, "story add", {"text": "Bob drops anchor."}, user=bob, speaking=1)
    assert speaker(said(server)[-1]) == "Narrator"  # after Bard, round again

    # Mira is deleted mid-story: the story goes on without her, and says so.
    await run(server, "character delete", {"name": "Mira"}, user=server.moderator)
    looked = await run(server, "story show", user=alice)  # shows her gone; the next turn says so
    assert "**Mira (left)**" in (looked.content or "")
    turn = await cast_run(server, "story add", {"text": "Alice calls for Mira."}, user=alice, speaking=1)
    assert "**Mira** is no longer one of this server's characters: story #1 goes on without them." in (
        turn.content or ""
    )
    last = said(server)[-1]
    assert speaker(last) == "Bard"

    # /story show numbers and attributes every line; a moderator removes one by its number.
    show = await run(server, "story show", user=alice)
    text = show.content or ""
    assert "🎭 cast (rotation): **Narrator**, **Mira (left)**, **Bard**" in text
    assert f"`1` **Narrator**: {line_text(opening).strip()}" in text
    assert f"`2` **{name(alice)}**: Alice climbs the mast." in text
    assert f"`3` **Mira**: {line_text(mira).strip()}" in text
    assert "A wrong turn." not in text
    stored = await bot.store.stories.story_turns(1)
    assert [(t.kind, t.author_name) for t in stored] == [
        ("opening", "Narrator"),
        ("player", name(alice)),
        ("bot", "Mira"),
        ("player", name(bob)),
        ("bot", "Bard"),
        ("player", name(bob)),
        ("bot", "Narrator"),
        ("player", name(alice)),
        ("bot", "Bard"),
    ]
    assert [t.message_id for t in stored if t.kind != "player"] == [
        opening.id,
        mira.id,
        bard.id,
        said(server)[-2].id,
        last.id,
    ]
    seq = stored[-1].seq
    refused = await run(server, "story remove", {"line": seq}, user=alice)
    assert refused.ephemeral and "moderator role" in (refused.content or "")
    removed = await cast_run(server, "story remove", {"line": seq}, user=bob)
    assert removed.content == (
        f"🗑️ <@{bob.id}> removed line {seq} (**Bard**'s) from story #1. Its message is deleted too."  # type: ignore[union-attr]
    )
    assert last.deleted
    missing = await run(server, "story remove", {"line": seq}, user=bob)
    assert missing.ephemeral and f"no line {seq}" in (missing.content or "")
    log = await bot.store.rules.audit_log(server.guild.id, [server.general.id])  # type: ignore[union-attr]
    assert ("story remove", f"story #1: removed line {seq} (Bard)") in [(e.action, e.detail) for e in log]

    # The transcript attributes every line to its player, the narrator or the character.
    end = await run(server, "story end", user=alice)
    [attachment] = [a for m in end.messages for a in m.attachments]
    transcript = attachment.text
    assert "\nCast (rotation): Narrator, Mira (left), Bard\n" in transcript
    labels = [line for line in transcript.splitlines() if line.startswith("[")]
    assert labels == [
        "[Narrator]",
        f"[{name(alice)}]",
        "[Mira]",
        f"[{name(bob)}]",
        "[Bard]",
        f"[{name(bob)}]",
        "[Narrator]",
        f"[{name(alice)}]",
    ]

    # One webhook for the channel, kept across the restart; nothing the cast said could ping anyone.
    assert len(server.channel_webhooks.webhooks) == 1
    calls = webhook_calls(server)
    bodies = [c.json for c in calls if isinstance(c.json, dict) and "content" in c.json]
    assert bodies and all(b.get("allowed_mentions") == {"parse": []} for b in bodies)
    assert all(c.status < 400 for c in calls)


class Scripted:
    """A TextStream that writes ``text`` at once, as a model might."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.result: GenerationResult | None = None

    async def _deltas(self) -> AsyncIterator[str]:
        yield self.text
        self.result = GenerationResult(self.text, "eos", 5, 9, False, "tiny", 0.01)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._deltas()

    async def aclose(self) -> None:
        return None

    def queue_place(self) -> None:
        return None


async def test_every_one_of_the_cast_speaks_in_turn_mentioning_nobody_and_blocked_words_blacked_out(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**FAST)
    await make_cast(server)
    await run(server, "mod blocklist add", {"phrase": "kraken"}, user=server.moderator)
    assert runner.service is not None
    runner.service.stream = lambda request, **kwargs: Scripted(  # type: ignore[method-assign]
        f"@everyone <@{server.member.id}> the kraken sings."  # type: ignore[union-attr]
    )
    await cast_run(
        server,
        "story start",
        {"premise": "A choir at sea", "cast": "Bard, Mira", "cast_turns": "all"},
        speaking=1,
    )
    await cast_run(server, "story add", {"text": "Everyone sings."}, speaking=3)
    lines = said(server)
    assert [speaker(m) for m in lines] == ["Narrator", "Narrator", "Bard", "Mira"]
    for line in lines:
        assert "kraken" not in line.content and "██████ sings" in line.content
        assert line.allowed_mentions == {"parse": []}
    for line in lines:  # what Discord would ping for each line as it stands: nobody
        assert resolve(server.world, line, None) == Mentions()


async def test_a_cast_needs_characters_of_this_server_and_the_right_to_use_webhooks(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    bot = await runner.start(**FAST)
    mod = server.moderator
    await run(server, "character create", {"name": "Mira", "persona": "A pirate."}, user=mod)
    none_here = await run(server, "story start", {"premise": "A voyage", "cast": "Ghost"})
    assert none_here.ephemeral and none_here.content == (
        "❌ This server has no character named “Ghost”; see `/character list` "
        "(moderators make them with `/character create`)."
    )
    no_webhooks = await run(server, "story start", {"premise": "A voyage", "cast": "Mira"})
    assert no_webhooks.ephemeral and "Manage Webhooks" in (no_webhooks.content or "")
    assert await bot.store.stories.open_story(server.general.id) is None  # type: ignore[union-attr]
    grant_webhooks(server)
    await cast_run(
        server, "story start", {"premise": "A voyage", "cast": "Mira", "narrator": False}, speaking=1
    )
    assert [speaker(m) for m in said(server)] == ["Mira"]  # no narrator: the first character opens


async def test_the_turn_timer_outlives_a_database_away_with_a_one_line_warning(
    transcord: bot_module.Transcord, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cog = transcord.get_cog("StoryMode")
    assert cog is not None
    ticks: list[float] = []

    ticked = asyncio.Event()

    async def away() -> float:
        ticked.set()
        ticks.append(asyncio.get_running_loop().time())
        raise StoreUnavailable("the database postgresql://bot@db:5432/transcord is unreachable")

    monkeypatch.setattr(cog, "_pass_timed_out_turns", away)
    for _ in range(2):  # two ticks: the timer is still running after the first failed
        ticked.clear()
        cog._timer_wake.set()
        await asyncio.wait_for(ticked.wait(), 10)
    await asyncio.sleep(0.05)  # the second tick's log record
    assert len(ticks) == 2
    timer_logs = [r for r in caplog.records if "turn timer" in r.getMessage()]
    assert timer_logs and all(r.levelname == "WARNING" and not r.exc_info for r in timer_logs)
