"""Small pieces of reply text the task commands share: score bars and quoted input."""

from __future__ import annotations

import discord

BAR_WIDTH = 12
QUOTE_CHARS = 300  # how much of a long input a reply quotes back


def bar(share: float, width: int = BAR_WIDTH) -> str:
    """A share in [0, 1] as a bar of ``width`` cells (values outside are clamped)."""
    filled = round(max(0.0, min(1.0, share)) * width)
    return "█" * filled + "░" * (width - filled)


def escape(text: str) -> str:
    return discord.utils.escape_markdown(text)


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """The user's text as a Discord quote, escaped, cut to ``limit`` characters."""
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return "\n".join(f"> {escape(line)}" for line in cut.splitlines() or [""])
