"""Streaming a generation into Discord: where the text goes (a :class:`Surface`) and how it grows.

A reply is written into one of two surfaces: the interaction's own message (a slash command's
reply, or the message whose button was clicked) or a reply the bot posts to a member's message
(a Discord reply to one of its answers). Both show the text as it arrives, at most once per
``interval``, then the whole text, split across messages when it is longer than one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import discord

from core.replies import (
    NO_MENTIONS,
    cut_off,
    error_message,
    fit,
    footer,
    notify_restart,
    send_long,
    show,
    split_message,
)
from model_service import GenerationResult, TextStream

log = logging.getLogger(__name__)
WRITING = "✍️ …"  # a reply to a member's message, before its first words

# (still writing?, the result once done) -> the buttons to show
ViewFor = Callable[[bool, GenerationResult | None], discord.ui.View | None]


class Surface(Protocol):
    """Where a reply is written."""

    async def begin(self) -> None:
        """Show that a reply is coming ("thinking…"), if nothing shows it yet."""

    async def show(self, content: str, view: discord.ui.View | None) -> None:
        """Replace the visible text (a preview that fits one message)."""

    async def finish(self, content: str, view: discord.ui.View | None) -> int | None:
        """The whole text, split where needed; returns the id of the message holding its start."""

    async def interrupted(self, shown: str, view: discord.ui.View | None) -> None:
        """The bot is shutting down mid-reply: keep what was shown and say why it stopped."""


class InteractionSurface:
    """The interaction's message: a command's reply, or the clicked message after a deferred update."""

    def __init__(self, interaction: discord.Interaction, *, in_place: bool = False) -> None:
        self.interaction = interaction
        self.in_place = in_place  # a button's click: write into the clicked message itself

    async def begin(self) -> None:
        if not self.interaction.response.is_done():
            await self.interaction.response.defer(thinking=not self.in_place)

    async def show(self, content: str, view: discord.ui.View | None) -> None:
        await show(self.interaction, content, view)

    async def finish(self, content: str, view: discord.ui.View | None) -> int | None:
        message = await send_long(self.interaction, content, view=view)
        self.interaction.extras["visible_text"] = fit(content)
        return message.id if message is not None else None

    async def interrupted(self, shown: str, view: discord.ui.View | None) -> None:
        await notify_restart(self.interaction, shown, view)


class PostedSurface:
    """An answer the bot posts as a message of its own (not an interaction's response) and edits
    as the text grows. A kind of it says how the first part is posted (``_post``), how each part
    past Discord's limit is (``_post_more``) and how the message is edited (``show``)."""

    message: discord.Message | discord.WebhookMessage | None = None
    restart_warning = "could not tell a member that the bot is restarting"

    async def _post(self, text: str) -> discord.Message | discord.WebhookMessage:
        raise NotImplementedError

    async def _post_more(self, text: str) -> None:
        raise NotImplementedError

    async def show(self, content: str, view: discord.ui.View | None) -> None:
        raise NotImplementedError

    async def begin(self) -> None:
        if self.message is None:
            self.message = await self._post(WRITING)

    async def finish(self, content: str, view: discord.ui.View | None) -> int | None:
        first, *more = split_message(content)
        await self.show(first, view)
        assert self.message is not None
        for part in more:
            await self._post_more(part)
        return self.message.id

    async def interrupted(self, shown: str, view: discord.ui.View | None) -> None:
        content = cut_off(shown)
        try:
            await asyncio.shield(self.show(content, view))
        except (discord.HTTPException, asyncio.CancelledError):
            log.warning(self.restart_warning)

    async def _fail_in_place(self, error: BaseException) -> None:
        """The error after what the posted message shows (its "writing" mark replaced)."""
        assert self.message is not None
        shown = self.message.content if self.message.content != WRITING else ""
        text = error_message(error, after_answer=bool(shown))
        await self.show(fit(f"{shown}\n\n{text}" if shown else text), None)


class MessageSurface(PostedSurface):
    """The bot's answer to a member's message: a reply to it, or (``post_in``) a message in a
    thread opened from it; then edited as the text grows."""

    def __init__(self, to: discord.Message) -> None:
        self.to = to
        self.post_in: discord.Thread | None = None
        self.message: discord.Message | None = None

    @property
    def channel_id(self) -> int:
        return (self.post_in or self.to.channel).id

    async def _post(self, text: str) -> discord.Message:
        if self.post_in is not None:
            return await self.post_in.send(text, allowed_mentions=NO_MENTIONS)
        return await self.to.reply(text, mention_author=False, allowed_mentions=NO_MENTIONS)

    async def _post_more(self, text: str) -> None:
        assert self.message is not None
        await self.message.channel.send(text, allowed_mentions=NO_MENTIONS)

    async def show(self, content: str, view: discord.ui.View | None) -> None:
        await self.begin()
        assert self.message is not None
        self.message = await self.message.edit(content=content, view=view, allowed_mentions=NO_MENTIONS)

    async def fail(self, error: BaseException) -> None:
        """Say what went wrong, in the reply if one was posted, else as one."""
        try:
            if self.message is None:
                await self._post(error_message(error))
            else:
                await self._fail_in_place(error)
        except discord.HTTPException:
            log.warning("could not deliver an error reply to a message", exc_info=True)


QUEUE_POLL_S = 0.25  # how soon a waiting reply first shows its place
QUEUE_EDIT_S = 3.0  # at least this long between two edits of a waiting reply's place
# ... and far back in the queue longer still (half a second a place): a crowd of 60 waiting would
# otherwise send some 20 edits a second, for places that matter little that far back.
QUEUE_EDIT_S_PER_PLACE = 0.5


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def queue_line(place: int, wait_s: float) -> str:
    about = f"about {wait_s:.0f} s" if wait_s < 90 else f"about {wait_s / 60:.0f} min"
    return f"⏳ {ordinal(place)} in the queue, {about}"


async def _show_place(
    surface: Surface, stream: TextStream, header: str, view: discord.ui.View | None, interval: float
) -> None:
    """While the request waits for a slot: its place and an estimate, updated as it moves (an edit
    only when the place changed, and not more often than :data:`QUEUE_EDIT_S`)."""
    shown: int | None = None
    last = 0.0
    while True:
        await asyncio.sleep(QUEUE_POLL_S if shown is None else max(interval, 1.0))
        waiting = stream.queue_place()
        if waiting is None or waiting[0] == shown:
            continue  # started (or not yet queued), or still where it was
        if time.monotonic() - last < max(QUEUE_EDIT_S, QUEUE_EDIT_S_PER_PLACE * waiting[0]):
            continue
        shown, last = waiting[0], time.monotonic()
        above = header if not header or header.endswith("\n") else header + "\n"
        await surface.show(fit(above + queue_line(*waiting)), view)


async def _show_while_writing(surface: Surface, text: str, view: discord.ui.View | None) -> None:
    """One edit of a reply still being written. Discord busy (429) or failing (5xx) past
    discord.py's own retries costs this edit only: the next one, or the final one, shows the
    text, so the generation goes on rather than ending in an error."""
    try:
        await surface.show(text, view)
    except discord.HTTPException as exc:
        if exc.status != 429 and exc.status < 500:
            raise
        log.warning(
            "an edit of a reply being written failed (%s %s); the next edit brings it",
            exc.status,
            exc.text or "",
        )


async def stream_reply(
    surface: Surface | discord.Interaction,
    stream: TextStream,
    *,
    header: str,
    interval: float,
    transform: Callable[[str], str] = lambda text: text,
    before: str = "",
    before_tokens: int = 0,
    view_for: ViewFor = lambda writing, result: None,
    note: Callable[[GenerationResult], str | None] = lambda result: None,
) -> tuple[GenerationResult, int | None]:
    """Show "thinking…", then the text as it arrives, then the whole text with its footer.

    ``transform`` is applied to the visible text (the place to redact). ``before`` is text a
    continued reply already had (``before_tokens`` its tokens): the new text is appended to it.
    ``view_for(writing, result)`` gives the buttons while writing, once done, and when cut off; ``note`` an extra word
    for the footer. Returns the result, its text including ``before``, and the id of the message
    holding the reply.
    """
    if isinstance(surface, discord.Interaction):
        surface = InteractionSurface(surface)
    text = ""
    last_edit = 0.0
    waiting: asyncio.Task[None] | None = None
    try:
        await surface.begin()
        waiting = asyncio.create_task(_show_place(surface, stream, header, view_for(True, None), interval))
        async for delta in stream:
            if not waiting.done():
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
            text += delta
            now = time.monotonic()
            if now - last_edit >= interval and text.strip():
                last_edit = now
                await _show_while_writing(
                    surface, fit(header + transform(before + text) + " …"), view_for(True, None)
                )
    except asyncio.CancelledError:
        await surface.interrupted(header + transform(before + text), view_for(False, None))
        raise
    finally:
        if waiting is not None:
            waiting.cancel()
        await stream.aclose()
    result = stream.result
    assert result is not None
    whole = replace(
        result, text=before + result.text, generated_tokens=before_tokens + result.generated_tokens
    )
    shown = transform(whole.text)
    body = shown if shown.strip() else "*(the model produced no text)*"
    notes = footer(whole, note(whole))
    message_id = await surface.finish(header + body + "\n" + notes, view_for(False, whole))
    return whole, message_id
