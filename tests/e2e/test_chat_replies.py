"""Replying (a Discord reply) to one of the bot's answers continues from that answer, without a
slash command, with only the intents that need no approval."""

from __future__ import annotations

import pytest

import app as bot_module
from loopback import LoopbackDiscord
from loopback.records import MessageRecord
from storage.types import ConversationKey
from tests.e2e.harness import BotRunner, has_footer, run
from tests.e2e.test_chat import Spy, answer, greedy, shown
from tests.e2e.test_controls import custom_id, enabled, seed, settled

pytestmark = pytest.mark.timeout(120)


async def chat(server: LoopbackDiscord, message: str, **kwargs: object) -> MessageRecord:
    record = await run(server, "chat say", {"message": message}, until=has_footer, **kwargs)  # type: ignore[arg-type]
    assert record.original is not None
    return record.original


async def reply(server: LoopbackDiscord, to: MessageRecord, text: str, **kwargs: object) -> MessageRecord:
    """A member's Discord reply to ``to``, and the bot's finished answer to it."""
    posted = await server.post_message(server.world.channel(to.channel_id), text, reply_to=to, **kwargs)  # type: ignore[arg-type]
    answered = await server.wait_reply(posted, timeout=30)
    await server.wait_for(lambda: "\n-# " in answered.content, 30, "the reply's footer")
    return await server.wait_reply(posted, timeout=30)


def words(message: MessageRecord) -> str:
    return message.content.split("\n-# ")[0].strip()


async def test_replying_to_an_answer_continues_from_it(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    await greedy(server, server.general, 12)
    spy = Spy(runner)
    first = await chat(server, "My name is Ada.")
    first_answer = answer(first.content)

    second = await reply(server, first, f"<@{server.bot_user.id}> What is my name?")
    assert [(t.role, t.text) for t in spy.last.history] == [
        ("user", "My name is Ada."),
        ("assistant", first_answer),
    ]
    assert spy.last.prompt == "What is my name?"  # the mention is not part of what was said
    assert second.is_reply and second.reference_id is not None
    assert "Regenerate" in enabled(second)

    # A reply to that reply goes on down the chain.
    await reply(server, second, "And what did I just ask?")
    assert [t.text for t in spy.last.history if t.role == "user"] == ["My name is Ada.", "What is my name?"]
    # Both exchanges are in the member's conversation, so /chat say goes on from them too.
    turns = await transcord.store.conversations.recent_turns(
        ConversationKey(server.general.id, owner_id=server.member.id)  # type: ignore[union-attr]
    )
    assert [t.text for t in turns if t.role == "user"] == [
        "My name is Ada.",
        "What is my name?",
        "And what did I just ask?",
    ]


async def test_a_reply_to_a_generate_answer_is_a_chat_about_it(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    spy = Spy(runner)
    record = await run(
        server, "generate", {"prompt": "Once upon a time", "max_new_tokens": 8}, until=has_footer
    )
    assert record.original is not None
    written = spy.last
    await reply(server, record.original, "Who is in this story?")
    assert spy.last.mode == "chat"
    assert spy.last.history[0].text == written.prompt
    assert spy.last.history[1].role == "assistant" and spy.last.history[1].text


async def test_a_reply_without_the_mention_gets_a_hint_and_replies_to_others_are_ignored(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    first = await chat(server, "Hello")
    quiet = await server.post_message(server.general, "no ping", reply_to=first, mention_reply_author=False)  # type: ignore[arg-type]
    hint = await server.wait_reply(quiet, timeout=30)
    assert "mention" in hint.content and "/chat say" in hint.content

    someone = await server.post_message(server.general, "a plain message")  # type: ignore[arg-type]
    to_them = await server.post_message(server.general, "I agree", reply_to=someone)  # type: ignore[arg-type]
    await server.wait_idle(quiet=1.0, timeout=10)
    assert server.replies_to(to_them) == [] and server.replies_to(someone) == [to_them]


async def test_a_reply_after_a_restart_and_its_buttons(server: LoopbackDiscord, runner: BotRunner) -> None:
    await runner.start()
    first = await chat(server, "Remember the word teapot.", channel=server.thread)
    await runner.restart()
    spy = Spy(runner)
    second = await reply(server, first, "Which word?", user=server.moderator)
    assert spy.last.author == shown(server.moderator)  # a thread: turns carry their authors
    assert spy.last.history[0].text == "Remember the word teapot."

    old = seed(second)
    click = await server.click(second, custom_id(second, "Regenerate"), user=server.moderator)
    await click.wait_response()
    await settled(server, second, lambda m: seed(m) not in (None, old))
    refused = await server.click(second, custom_id(second, "Regenerate"), user=server.member)
    await refused.wait_response()
    assert refused.ephemeral and "Only <@" in refused.messages[-1].content
