"""Showing the bot's replies in a terminal roughly as the Discord client shows them.

A reply is a block: the original response (or "Transcord is thinking…" while deferred) and its
follow-ups, each marked when only the invoking user can see it. In a terminal the block is
redrawn in place on every change (edits stream in); elsewhere only the settled block is printed,
so a piped transcript holds each message once, in its final state.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from typing import Any, TextIO

from prompt_toolkit.utils import get_cwidth

from loopback.interactions import InteractionRecord
from loopback.records import MessageRecord
from loopback.world import World

INDENT = "  "
ONLY_YOU = "(only you can see this)"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MENTION = re.compile(r"<(@!?|@&|#)(\d+)>")
CUSTOM_EMOJI = re.compile(r"<a?(:\w+:)\d+>")
ESCAPED = re.compile(r"\\([\\*_`~|>#\-\[\]()])")

BOLD, DIM, ITALIC, UNDERLINE, STRIKE, RESET = "1", "2", "3", "4", "9", "0"
CODE_COLOR, BOT_COLOR, ERROR_COLOR, NOTE_COLOR = "36", "1;35", "31", "33"


def sgr(codes: str, text: str) -> str:
    return f"\x1b[{codes}m{text}\x1b[0m"


class Style:
    """Plain text (markdown kept as typed, for transcripts) or ANSI (markdown rendered)."""

    def __init__(self, ansi: bool) -> None:
        self.ansi = ansi

    def bot(self, text: str) -> str:
        return sgr(BOT_COLOR, text) if self.ansi else text

    def dim(self, text: str) -> str:
        return sgr(DIM, text) if self.ansi else text

    def error(self, text: str) -> str:
        return sgr(ERROR_COLOR, text) if self.ansi else text

    def note(self, text: str) -> str:
        return sgr(NOTE_COLOR, text) if self.ansi else text

    def markdown(self, line: str) -> str:
        return markdown_to_ansi(line) if self.ansi else line


def markdown_to_ansi(line: str) -> str:
    """The few Discord markdown forms the bot uses: bold, italics, code, quotes, ``-#`` subtext."""
    escaped: list[str] = []

    def protect(match: re.Match[str]) -> str:
        escaped.append(match.group(1))
        return f"\x00{len(escaped) - 1}\x00"

    text = ESCAPED.sub(protect, line)
    subtext = text.startswith("-# ")
    if subtext:
        text = text[3:]
    quote = text.startswith("> ")
    if quote:
        text = text[2:]
    text = re.sub(r"`([^`]+)`", lambda m: sgr(CODE_COLOR, m.group(1)), text)
    text = re.sub(r"\*\*(.+?)\*\*", lambda m: sgr(BOLD, m.group(1)), text)
    text = re.sub(r"__(.+?)__", lambda m: sgr(UNDERLINE, m.group(1)), text)
    text = re.sub(r"~~(.+?)~~", lambda m: sgr(STRIKE, m.group(1)), text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", lambda m: sgr(ITALIC, m.group(1)), text)
    text = re.sub(r"(?<!\w)_(?!\s)(.+?)(?<!\s)_(?!\w)", lambda m: sgr(ITALIC, m.group(1)), text)
    text = re.sub(r"\x00(\d+)\x00", lambda m: escaped[int(m.group(1))], text)
    if quote:
        text = sgr(DIM, "│ ") + text
    return sgr(DIM, text) if subtext else text


def mention_renderer(world: World) -> Callable[[str], str]:
    """``<@id>``, ``<@&id>`` and ``<#id>`` as the client shows them: @name, @Role, #channel."""

    def name(kind: str, ident: int) -> str:
        if kind == "#":
            channel = world.channel(ident)
            return f"#{channel.name}" if channel else "#unknown-channel"
        for guild in world.guilds.values():
            if kind == "@&" and ident in guild.roles:
                return f"@{guild.roles[ident].name}"
            member = guild.members.get(ident)
            if kind != "@&" and member is not None:
                return f"@{member.nick or member.user.global_name or member.user.name}"
        if kind == "@&":
            return "@unknown-role"
        user = world.users.get(ident)
        return f"@{user.name}" if user else "@unknown-user"

    def render(text: str) -> str:
        text = MENTION.sub(lambda m: name(m.group(1).rstrip("!"), int(m.group(2))), text)
        return CUSTOM_EMOJI.sub(lambda m: m.group(1), text)

    return render


def message_body(message: MessageRecord, mentions: Callable[[str], str]) -> list[str]:
    """What a reader sees of one message: text, embeds, files and buttons, one list entry per line."""
    latest = message.latest
    lines = mentions(latest.content).splitlines() if latest.content else []
    for embed in latest.embeds:
        lines += _embed_lines(embed, mentions)
    for file in latest.attachments:
        lines.append(f"[file: {file.filename} ({len(file.data)} bytes)]")
    labels = [
        f"[{c.get('label') or c.get('custom_id') or 'button'}]"
        for row in latest.components
        for c in row.get("components", [])
        if c.get("type") == 2
    ]
    if labels:
        lines.append(" ".join(labels))
    return lines or ["*(empty message)*"]


def author_name(message: MessageRecord, bot_name: str) -> str:
    """Who a message of the bot's shows as its author: a webhook message the name it was sent
    under (a character, the narrator), as Discord shows it; anything else the bot."""
    author = message.webhook_author
    return str(author.get("username") or bot_name) if author else bot_name


def message_blocks(
    messages: list[MessageRecord], bot_name: str, mentions: Callable[[str], str], style: Style
) -> list[str]:
    """Messages as the channel shows them: each under its author's name (one name over a run of
    messages by the same author), the lines indented."""
    lines: list[str] = []
    shown: str | None = None
    for message in messages:
        name = author_name(message, bot_name)
        if name != shown:
            lines.append(f"{style.bot(name)}:")
            shown = name
        lines += [INDENT + style.markdown(line) for line in message_body(message, mentions)]
    return lines


def _embed_lines(embed: dict[str, Any], mentions: Callable[[str], str]) -> list[str]:
    lines = []
    if embed.get("author", {}).get("name"):
        lines.append(mentions(str(embed["author"]["name"])))
    if embed.get("title"):
        lines.append(f"**{mentions(str(embed['title']))}**")
    if embed.get("description"):
        lines += mentions(str(embed["description"])).splitlines()
    for f in embed.get("fields") or []:
        lines.append(f"**{mentions(str(f.get('name')))}**: {mentions(str(f.get('value')))}")
    if (embed.get("footer") or {}).get("text"):
        lines.append(f"-# {mentions(str(embed['footer']['text']))}")
    return ["│ " + line for line in lines]


def reply_lines(
    handle: InteractionRecord, bot_name: str, mentions: Callable[[str], str], style: Style, *, final: bool
) -> list[str]:
    """The whole reply block for one interaction, in the order the messages appear."""
    lines: list[str] = []
    for message in handle.messages:
        if message.deleted:
            continue
        private = f" {style.dim(ONLY_YOU)}" if message.ephemeral else ""
        if message.loading:
            lines.append(style.dim(f"{bot_name} is thinking…") + private)
            continue
        lines.append(f"{style.bot(bot_name)}{private}:")
        lines += [INDENT + style.markdown(line) for line in message_body(message, mentions)]
    if final and (not handle.responded or handle.expired):
        lines.append(
            style.error(f"{bot_name} did not respond (Discord shows “The application did not respond”)")
        )
    return lines


class ReplyView:
    """Follows one interaction; ``live`` redraws the block in place, else prints it once settled."""

    def __init__(
        self,
        handle: InteractionRecord,
        out: TextIO,
        *,
        bot_name: str,
        mentions: Callable[[str], str],
        live: bool,
    ) -> None:
        self.handle = handle
        self.out = out
        self.bot_name = bot_name
        self.mentions = mentions
        self.live = live
        self.style = Style(ansi=live)
        self._drawn = 0  # terminal rows the live block occupies, to move back over
        self._shown: list[str] | None = None
        self._said_thinking = False

    def update(self) -> None:
        """Show the interaction's current state (called on each change the server reports)."""
        if self.live:
            lines = reply_lines(self.handle, self.bot_name, self.mentions, self.style, final=False)
            rows = shutil.get_terminal_size().lines
            # A block taller than the screen cannot be redrawn in place: show its tail meanwhile.
            self._redraw(lines[-max(1, rows - 2) :])
        elif self.handle.is_thinking and not self._said_thinking:
            self._said_thinking = True
            private = f" {ONLY_YOU}" if self.handle.ephemeral else ""
            self.out.write(f"{self.bot_name} is thinking…{private}\n")
            self.out.flush()

    def finish(self) -> None:
        """Print the settled block in full."""
        lines = reply_lines(self.handle, self.bot_name, self.mentions, self.style, final=True)
        if self.live:
            self._redraw(lines)
            self._drawn = 0
        else:
            self.out.write("".join(line + "\n" for line in lines))
            self.out.flush()

    def _redraw(self, lines: list[str]) -> None:
        if lines == self._shown:
            return
        self._shown = lines
        erase = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
        self.out.write(erase + "".join(line + "\n" for line in lines))
        self.out.flush()
        width = max(1, shutil.get_terminal_size().columns)
        self._drawn = sum(_rows(line, width) for line in lines)


def _rows(line: str, width: int) -> int:
    cells = get_cwidth(ANSI.sub("", line))
    return max(1, -(-cells // width))
