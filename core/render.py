"""Small pieces of reply text the commands share: score bars, user text made safe to echo, quotes,
and a reasoning model's thinking kept out of (or folded into) an answer."""

from __future__ import annotations

import re

import discord

from model_service.types import THINK_CLOSE, THINK_OPEN

BAR_WIDTH = 12
QUOTE_CHARS = 300  # how much of a long input a reply quotes back


def bar(share: float, width: int = BAR_WIDTH) -> str:
    """A share in [0, 1] as a bar of ``width`` cells (values outside are clamped)."""
    filled = round(max(0.0, min(1.0, share)) * width)
    return "█" * filled + "░" * (width - filled)


# Characters that change how the text around them shows rather than being shown: C0 and C1
# controls (not newline or tab), and the bidirectional marks, embeddings, overrides and isolates
# (U+202E turns "txt.exe" into "exe.txt" on screen).
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
SHOWN_INSTEAD = "\ufffd"  # the replacement character: visible, so a moderator sees something was there


def safe(text: str) -> str:
    """User text as the bot may echo it: every control or direction character shown as �."""
    return UNSAFE.sub(SHOWN_INSTEAD, text)


def escape(text: str) -> str:
    """User text to echo inside the bot's own formatting: made safe, its markdown shown as typed."""
    return discord.utils.escape_markdown(safe(text))


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """The user's text as a Discord quote, escaped, cut to ``limit`` characters."""
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return "\n".join(f"> {escape(line)}" for line in cut.splitlines() or [""])


# -- a reasoning model's thinking ------------------------------------------------------------------

THINKING_SHOWN_CHARS = 900  # a spoiler is never split across messages: a long one is cut
STILL_THINKING = "💭 *thinking…*"


def split_thinking(text: str) -> tuple[str, str, bool]:
    """(answer, thinking, still thinking) of a model's text: ``<think>…</think>`` blocks are
    thinking, and so is everything before a ``</think>`` with no opening tag (templates that open
    the block in the prompt); an unclosed block runs to the end."""
    answer: list[str] = []
    thoughts: list[str] = []
    rest = text
    close = rest.find(THINK_CLOSE)
    if close >= 0 and THINK_OPEN not in rest[:close]:
        thoughts.append(rest[:close])
        rest = rest[close + len(THINK_CLOSE) :]
    while (start := rest.find(THINK_OPEN)) >= 0:
        answer.append(rest[:start])
        end = rest.find(THINK_CLOSE, start)
        if end < 0:
            thoughts.append(rest[start + len(THINK_OPEN) :])
            return "".join(answer), "".join(thoughts).strip(), True
        thoughts.append(rest[start + len(THINK_OPEN) : end])
        rest = rest[end + len(THINK_CLOSE) :]
    answer.append(rest)
    return "".join(answer).lstrip("\n"), "\n".join(t.strip() for t in thoughts if t.strip()), False


def with_thinking(text: str, *, show: bool) -> str:
    """The answer without its thinking, or with it first as a spoiler (``show``); while the model
    is still thinking and has answered nothing, a line saying so."""
    answer, thinking, still = split_thinking(text)
    if not show or not thinking:
        return answer if answer.strip() or not still else STILL_THINKING
    thinking = thinking.replace("||", "| |")  # a spoiler's own marks would end it early
    cut = thinking if len(thinking) <= THINKING_SHOWN_CHARS else thinking[: THINKING_SHOWN_CHARS - 1] + "…"
    block = f"💭 ||{cut}||"
    return f"{block}\n\n{answer}" if answer.strip() else block
