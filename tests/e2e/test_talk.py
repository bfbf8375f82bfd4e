"""Talking to the bot without a command: an @mention is answered, an unmentioned message is left
alone, other bots are ignored unless a channel allows a few turns, a channel may listen to every
message (with the Message Content intent) or to none, and every path is moderated."""

from __future__ import annotations

import pytest

import app as bot_module
from loopback import LoopbackDiscord
from loopback.records import MessageRecord
from loopback.world import Channel
from storage.types import ConversationKey, StoreUnavailable
from tests.e2e.harness import BotRunner, has_footer, run
from tests.e2e.test_chat import Spy, shown
from tests.e2e.test_controls import enabled

pytestmark = pytest.mark.timeout(120)


def mention(server: LoopbackDiscord) -> str:
    return f"<@{server.bot_user.id}>"


async def answered(server: LoopbackDiscord, posted: MessageRecord) -> MessageRecord:
    """The bot's finished reply to ``posted``."""
    reply = await server.wait_reply(posted, timeout=30)
    await server.wait_for(lambda: "\n-# " in reply.content or "❌" in reply.content, 30, "a finished reply")
    return await server.wait_reply(posted, timeout=30)


async def config(server: LoopbackDiscord, channel: Channel | None = None, **values: object) -> str:
    record = await run(server, "config set", values, user=server.moderator, channel=channel or server.general)
    return record.messages[-1].content if record.messages else ""


async def unanswered(server: LoopbackDiscord, posted: MessageRecord) -> None:
    await server.wait_idle(quiet=1.0, timeout=15)
    assert [m for m in server.replies_to(posted) if m.author_id == server.bot_user.id] == []


async def test_a_mention_is_answered_as_a_reply_in_the_members_conversation(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    spy = Spy(runner)
    posted = await server.post_message(server.general, f"{mention(server)} what is the capital of France?")
    reply = await answered(server, posted)
    assert reply.is_reply and reply.reference_id == posted.id
    assert has_footer_text(reply) and "Regenerate" in enabled(reply)
    assert spy.last.mode == "chat" and spy.last.prompt == "what is the capital of France?"
    # The same memory as /chat say: the next /chat say goes on from the mention's exchange.
    turns = await transcord.store.conversations.recent_turns(
        ConversationKey(server.general.id, owner_id=server.member.id)  # type: ignore[union-attr]
    )
    assert [t.text for t in turns if t.role == "user"] == ["what is the capital of France?"]
    await run(server, "chat say", {"message": "And of Spain?"}, until=has_footer)
    assert [t.text for t in spy.last.history if t.role == "user"] == ["what is the capital of France?"]


def has_footer_text(message: MessageRecord) -> bool:
    return "\n-# " in message.content


async def test_an_unmentioned_message_and_the_bots_own_are_left_alone(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    plain = await server.post_message(server.general, "good morning everyone")
    await unanswered(server, plain)
    # Another member's name in a mention is not the bot's.
    other = await server.post_message(server.general, f"<@{server.moderator.id}> can you look?")  # type: ignore[union-attr]
    await unanswered(server, other)


async def test_other_bots_are_ignored_unless_the_channel_allows_turns_and_then_only_so_many(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    other_bot = server.add_member(server.world.add_user("Echo", bot=True))
    first = await server.post_message(server.general, f"{mention(server)} hello bot", user=other_bot)
    await unanswered(server, first)
    assert "**bot_turns** → `1`" in await config(server, bot_turns=1)
    second = await server.post_message(server.general, f"{mention(server)} hello again", user=other_bot)
    await answered(server, second)
    # The bot answered a bot once in this run of bot messages: the next is not answered.
    third = await server.post_message(server.general, f"{mention(server)} and again", user=other_bot)
    await unanswered(server, third)
    # A member speaking ends the run.
    await server.post_message(server.general, "a member says something")
    fourth = await server.post_message(server.general, f"{mention(server)} once more", user=other_bot)
    await answered(server, fourth)


async def test_listen_off_answers_no_message_and_all_is_refused_without_the_intent(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    refused = await config(server, listen="all")
    assert "Message Content intent" in refused and "MESSAGE_CONTENT_INTENT=true" in refused
    await config(server, listen="off")
    posted = await server.post_message(server.general, f"{mention(server)} are you there?")
    await unanswered(server, posted)
    # Slash commands still work there.
    record = await run(server, "chat say", {"message": "hi"}, until=has_footer)
    assert record.original is not None and has_footer_text(record.original)


async def test_a_listening_channel_answers_every_message_with_its_recent_messages_as_the_conversation(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(MESSAGE_CONTENT_INTENT="true")
    spy = Spy(runner)
    assert "**listen** → `all`" in await config(server, listen="all")
    first = await server.post_message(server.general, "I am planning a picnic", user=server.moderator)
    await answered(server, first)  # no mention needed here
    asked = await server.post_message(server.general, "what should I bring?")
    reply = await answered(server, asked)
    assert has_footer_text(reply)
    assert spy.last.prompt == "what should I bring?" and spy.last.author == shown(server.member)
    history = [(t.role, t.author, t.text) for t in spy.last.history]
    assert ("user", shown(server.moderator), "I am planning a picnic") in history
    assert any(role == "assistant" and "-# " not in text for role, _, text in history)


async def test_a_mention_is_moderated_like_a_command(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    await run(server, "mod blocklist add", {"phrase": "forbidden word"}, user=server.moderator)
    blocked = await server.post_message(server.general, f"{mention(server)} say the forbidden word")
    reply = await server.wait_reply(blocked, timeout=30)
    assert (
        reply.content == "🚫 Your text contains “forbidden word”, which a moderator blocked in this channel."
    )
    await run(server, "mod lock", {}, user=server.moderator)
    locked = await server.post_message(server.general, f"{mention(server)} hello")
    reply = await server.wait_reply(locked, timeout=30)
    assert reply.content == "🔒 This channel is locked by a moderator."


async def test_with_threads_on_a_mention_opens_a_thread_and_the_bot_answers_there(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(MESSAGE_CONTENT_INTENT="true")
    spy = Spy(runner)
    assert "**threads** → `on`" in await config(server, threads="on")
    posted = await server.post_message(server.general, f"{mention(server)} let us plan a picnic by the lake")
    await server.wait_for(lambda: server.world.channel(posted.id) is not None, 30, "the thread")
    thread = server.world.channel(posted.id)
    assert thread is not None and thread.is_thread and thread.parent_id == server.general.id
    assert thread.name == "let us plan a picnic by the lake"
    await server.wait_for(
        lambda: any("\n-# " in m.content for m in server.channel_messages(thread)),
        30,
        "the answer in the thread",
    )
    assert server.replies_to(posted) == []  # answered in the thread, not as a reply in the channel
    # In its own thread every message is for the bot, no mention needed; the thread is the conversation.
    follow = await server.post_message(thread, "what should we bring?")
    await server.wait_for(
        lambda: len([m for m in server.channel_messages(thread) if "\n-# " in m.content]) == 2,
        30,
        "a second answer",
    )
    assert spy.last.prompt == "what should we bring?"
    said = [(t.role, t.text) for t in spy.last.history]
    assert said[0] == ("user", "let us plan a picnic by the lake") and said[1][0] == "assistant"
    assert follow.id not in [m.id for m in server.replies_to(posted)]


async def test_text_files_are_read_with_the_message_and_others_named_as_skipped(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    spy = Spy(runner)
    posted = await server.post_message(
        server.general,
        f"{mention(server)} what is the secret word in my notes?",
        attachments=[
            ("notes.txt", b"The secret word is teapot.\n", "text/plain"),
            ("photo.png", b"\x89PNG\r\n\x1a\n not really", "image/png"),
        ],
    )
    reply = await answered(server, posted)
    assert spy.last.prompt == (
        "what is the secret word in my notes?\n\n--- notes.txt ---\nThe secret word is teapot.\n"
    )
    assert reply.content.startswith("-# 📎 skipped: photo.png (not a text file)\n")


async def test_a_mention_while_the_database_is_away_is_told_so_and_nothing_is_logged_as_a_crash(
    server: LoopbackDiscord,
    transcord: bot_module.Transcord,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def away(source: object) -> None:
        raise StoreUnavailable("the database postgresql://bot@db:5432/transcord is unreachable")

    monkeypatch.setattr(transcord, "settings_for", away)
    posted = await server.post_message(server.general, f"{mention(server)} are you there?")
    reply = await server.wait_reply(posted, timeout=30)
    assert reply.content.startswith("🗄️ The bot's database can't be reached right now"), reply.content
    assert "postgresql" not in reply.content
    assert not [r for r in caplog.records if r.exc_info], [
        r.getMessage() for r in caplog.records if r.exc_info
    ]
