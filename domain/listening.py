"""Which members' messages are for the bot, with no command: the rules, free of Discord.

A channel's ``listen`` setting decides: ``mentions`` (the default) answers a message that
@mentions the bot, ``all`` every message (Discord's Message Content intent is needed to read
them), ``off`` none. Wherever it listens, a reply to one of its answers goes on from that answer,
and in a thread the bot opened, every message is for it. Other bots are answered only where a
channel allows ``bot_turns`` of them in a row, so two bots never answer each other forever.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Why(enum.Enum):
    """Why a message is for the bot; each reads a different conversation."""

    reply = "reply"  # a Discord reply to one of its answers: goes on from that answer
    mention = "mention"  # an @mention: the member's own conversation, as /chat say
    thread = "thread"  # a message in a thread the bot opened: the thread's recent messages
    channel = "channel"  # a message in a channel that listens to all: its recent messages


def addressed(*, listen: str, mentioned: bool, replied_to_answer: bool, own_thread: bool) -> Why | None:
    """Why a member's message is for the bot here, or None: it is not."""
    if listen == "off":
        return None
    if replied_to_answer:
        return Why.reply
    if own_thread:
        return Why.thread
    if listen == "all":
        return Why.channel
    return Why.mention if mentioned else None


def bot_may_answer(recent: Iterable[tuple[bool, bool]], bot_turns: int) -> bool:
    """Whether another bot's message may be answered: ``recent`` is (by a bot, by this bot) for
    the messages before it, newest first. In the run of bot messages leading up to it, this bot
    may have answered fewer than ``bot_turns`` times (0: bots are never answered)."""
    if bot_turns <= 0:
        return False
    answered = 0
    for by_a_bot, by_me in recent:
        if not by_a_bot:
            break
        answered += by_me
        if answered >= bot_turns:
            return False
    return True


def thread_name(text: str, limit: int = 60) -> str:
    """A thread's name from the first words of the message that opened it (Discord allows 100)."""
    words = " ".join(text.split())
    if not words:
        return "Conversation"
    if len(words) <= limit:
        return words
    cut = words.rfind(" ", 0, limit - 1)
    return (words[: cut if cut > limit // 2 else limit - 1]).rstrip(" ,.;:") + "…"
