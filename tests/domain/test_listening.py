"""Which messages are for the bot (``domain.listening``): the channel's ``listen`` setting, replies
to its answers, its own threads, and a cap on answering other bots."""

from __future__ import annotations

import pytest

from domain.listening import Why, addressed, bot_may_answer, thread_name


@pytest.mark.parametrize(
    ("listen", "mentioned", "reply", "own_thread", "why"),
    [
        ("mentions", True, False, False, Why.mention),
        ("mentions", False, False, False, None),
        ("mentions", True, True, False, Why.reply),  # a reply mentions the bot too: it goes on
        ("mentions", False, False, True, Why.thread),
        ("all", False, False, False, Why.channel),
        ("all", True, False, False, Why.channel),
        ("all", False, True, False, Why.reply),
        ("off", True, True, True, None),
    ],
)
def test_the_channel_setting_decides(
    listen: str, mentioned: bool, reply: bool, own_thread: bool, why: Why | None
) -> None:
    assert (
        addressed(listen=listen, mentioned=mentioned, replied_to_answer=reply, own_thread=own_thread) is why
    )


def test_bots_get_at_most_the_allowed_turns_in_a_row() -> None:
    bot, me, member = (True, False), (True, True), (False, False)
    assert not bot_may_answer([], 0)  # bots ignored by default
    assert bot_may_answer([bot], 1)
    assert not bot_may_answer([me, bot], 1)  # answered a bot once already in this run
    assert bot_may_answer([me, bot], 2)
    assert not bot_may_answer([me, bot, me, bot], 2)
    assert bot_may_answer([member, me, bot, me], 1)  # a member spoke since: a new run


def test_a_thread_is_named_from_the_first_words() -> None:
    assert thread_name("  what is   the capital of France? ") == "what is the capital of France?"
    long = thread_name("word " * 40)
    assert len(long) <= 60 and long.endswith("…") and not long.endswith(" …")
    assert thread_name("") == "Conversation"
