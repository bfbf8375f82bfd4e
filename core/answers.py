"""A generated reply and its buttons: Stop while it is written, then Regenerate and Continue.

Every /generate and /chat reply (and every Discord reply to one) is a :class:`ReplyRecord` in
the store, keyed by what asked for it; its buttons carry only that key, so they still work
after a restart. The replies being written in this process are in :attr:`Answers.writing`:
Stop finds its stream there, and a second click while one is written is refused.

While a reply is written, the store also holds what edits it (an :class:`UnfinishedReply`), so
that when its process dies mid-reply (kill -9, a crash) the next process to start on its shard
ends it with the restart notice a clean shutdown writes (:meth:`Answers.finish_cut_off`) rather
than leave it "thinking…" for good.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol, cast

import discord
from discord.http import handle_message_parameters
from discord.webhook.async_ import async_context

from core.facade import ModeratedModels, Source
from core.render import split_thinking, with_thinking
from core.replies import NO_MENTIONS, cut_off
from core.streaming import InteractionSurface, MessageSurface, Surface, stream_reply
from domain.errors import UserFacingError
from model_service import ChatTurn, GenerationParams, GenerationRequest, GenerationResult, TextStream
from storage.protocols import ReplyStore
from storage.types import ReplyRecord, UnfinishedReply

log = logging.getLogger(__name__)
FINISHED = ("eos", "stop")  # the model ended the reply itself: nothing to continue


class Action(enum.Enum):
    STOP = "stop"
    AGAIN = "again"
    MORE = "more"


LOOKS = {
    Action.STOP: ("Stop", "⏹️", discord.ButtonStyle.danger),
    Action.AGAIN: ("Regenerate", "🔁", discord.ButtonStyle.secondary),
    Action.MORE: ("Continue", "➕", discord.ButtonStyle.secondary),
}


class ReplyButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"transcord:reply:(?P<action>stop|again|more):(?P<id>[0-9]{1,20})"):  # fmt: skip
    """One of a reply's buttons; its custom id is all it needs, so it outlives the process."""

    def __init__(self, action: Action, reply_id: int, *, disabled: bool = False) -> None:
        label, emoji, style = LOOKS[action]
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=style,
                disabled=disabled,
                custom_id=f"transcord:reply:{action.value}:{reply_id}",
            )
        )
        self.action, self.reply_id = action, reply_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ReplyButton:
        return cls(Action(match["action"]), int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        clicked = cast(_HasAnswers, interaction.client).answers.on_click
        if clicked is None:  # the Controls cog is not loaded
            await interaction.response.send_message(
                "❌ Reply buttons are off on this bot right now.",
                ephemeral=True,
                allowed_mentions=NO_MENTIONS,
            )
            return
        await clicked(interaction, self.action, self.reply_id)


def controls(reply: ReplyRecord, *, writing: bool, cap: int) -> discord.ui.View:
    """The buttons a reply shows: Stop while it is written; then Regenerate, and Continue while
    the model has not ended it itself and the reply is under the token cap."""
    done = reply.finish_reason
    more = not writing and done is not None and done not in FINISHED and reply.generated_tokens < cap
    view = discord.ui.View(timeout=None)
    view.add_item(ReplyButton(Action.STOP, reply.id, disabled=not writing))
    view.add_item(ReplyButton(Action.AGAIN, reply.id, disabled=writing))
    view.add_item(ReplyButton(Action.MORE, reply.id, disabled=not more))
    return view


# -- a request kept in the store -------------------------------------------------------------------


def encode_request(request: GenerationRequest) -> str:
    return json.dumps(asdict(replace(request, continuation="")), ensure_ascii=False)


def decode_request(text: str, *, max_new_tokens_cap: int) -> GenerationRequest:
    data = json.loads(text)
    params = GenerationParams.from_values(data.pop("params"), max_new_tokens_cap=max_new_tokens_cap)
    history = tuple(ChatTurn(**turn) for turn in data.pop("history"))
    return GenerationRequest(params=params, history=history, **data)


# -- writing ---------------------------------------------------------------------------------------


@dataclass
class Writing:
    """A reply being written in this process."""

    requester_id: int
    stream: TextStream | None = None
    stopped_by: str | None = None

    async def stop(self, by: str) -> None:
        self.stopped_by = by
        if self.stream is not None:
            await self.stream.aclose()


BEING_WRITTEN = "This reply is being written right now; wait for it to finish, or Stop it."
# How long Discord honours an interaction's token: past it, its reply can no longer be edited.
INTERACTION_TOKEN_S = 15 * 60


# What a click on a reply's button runs (the Controls cog registers it while loaded).
ClickHandler = Callable[[discord.Interaction, Action, int], Awaitable[None]]


class Answers:
    """Writes replies with their buttons and keeps them in the store."""

    def __init__(
        self, models: ModeratedModels, replies: ReplyStore, *, cap: int, edit_interval_s: float
    ) -> None:
        self.models = models
        self.replies = replies
        self.cap = cap  # the most tokens a reply may have, Continue included
        self.edit_interval_s = edit_interval_s
        self.writing: dict[int, Writing] = {}
        self.on_click: ClickHandler | None = None
        # This process, as the store's notes of unfinished replies name it; what began before
        # ``since`` under another name was left by a process that died (see finish_cut_off).
        self.process_id = uuid.uuid4().hex
        self.since = time.time()

    async def write(
        self,
        source: Source,
        surface: Surface,
        reply: ReplyRecord,
        request: GenerationRequest,
        *,
        texts: tuple[str, ...],
        continuing: bool = False,
        show_thinking: bool = False,
    ) -> ReplyRecord:
        """Generate ``request`` into ``surface`` as ``reply`` (appending to its text when
        ``continuing``); returns the reply as stored once written. A reasoning model's thinking is
        left out, or shown first as a spoiler (``show_thinking``); it is never stored."""
        if reply.id in self.writing:
            raise UserFacingError(BEING_WRITTEN, icon="⏳")
        writing = self.writing[reply.id] = Writing(reply.requester_id)  # claimed before any await
        noted = False  # the store holds what edits the reply, should this process die
        try:
            async with self.models.command(source, *texts) as model:
                before = reply.text if continuing else ""
                await self.replies.save_reply(
                    replace(reply, request=encode_request(request), finish_reason=None)
                )
                writing.stream = model.service.stream(request)
                if writing.stopped_by is not None:
                    await writing.stream.aclose()
                header = model.redact(reply.header)

                def transform(text: str) -> str:
                    return model.redact(with_thinking(text, show=show_thinking))

                def view_for(still: bool, result: GenerationResult | None) -> discord.ui.View:
                    if result is None:  # being written, or cut off by a restart
                        return controls(replace(reply, finish_reason=None), writing=still, cap=self.cap)
                    ended = replace(
                        reply, finish_reason=result.finish_reason, generated_tokens=result.generated_tokens
                    )
                    return controls(ended, writing=False, cap=self.cap)

                def note(result: GenerationResult) -> str | None:
                    if result.finish_reason == "cancelled" and writing.stopped_by:
                        return f"stopped by {writing.stopped_by}"
                    return "continued" if continuing else None

                noted = await self._begin(surface, reply, header + transform(before), view_for(False, None))
                result, message_id = await stream_reply(
                    surface,
                    writing.stream,
                    header=header,
                    interval=self.edit_interval_s,
                    transform=transform,
                    before=before,
                    before_tokens=reply.generated_tokens if continuing else 0,
                    view_for=view_for,
                    note=note,
                )
                shown = model.redact(split_thinking(result.text)[0])
        finally:
            self.writing.pop(reply.id, None)
            if noted:
                await self._end(reply.id)
        done = replace(
            reply,
            request=encode_request(request),
            text=shown,
            generated_tokens=result.generated_tokens,
            finish_reason=result.finish_reason,
            message_id=message_id or reply.message_id,
        )
        await self.replies.save_reply(done)
        return done

    # -- replies a process that died left unfinished ------------------------------------------------

    async def _begin(
        self, surface: Surface, reply: ReplyRecord, shown: str, view: discord.ui.View | None
    ) -> bool:
        """Show that the reply is coming, then note in the store what edits it; whether it did.

        ``shown`` is what the reply shows before its new text, and ``view`` its buttons when cut
        off: what a clean shutdown leaves if it comes now (``stream_reply`` takes over from here).
        """
        try:
            await surface.begin()
            note = self._note(surface, reply, shown)
            if note is not None:
                await self.replies.begin_writing(note)
        except asyncio.CancelledError:
            await surface.interrupted(shown, view)
            raise
        return note is not None

    def _note(self, surface: Surface, reply: ReplyRecord, shown: str) -> UnfinishedReply | None:
        """What edits the reply from another process: its interaction, or the bot's message."""
        if isinstance(surface, InteractionSurface):
            interaction = surface.interaction
            return UnfinishedReply(
                reply.id,
                self.process_id,
                interaction.guild_id,
                interaction.channel_id or reply.channel_id,
                interaction.created_at.timestamp(),  # when its token's 15 minutes began
                shown,
                application_id=interaction.application_id,
                interaction_token=interaction.token,
            )
        if isinstance(surface, MessageSurface) and surface.message is not None:
            guild = surface.to.guild
            return UnfinishedReply(
                reply.id,
                self.process_id,
                guild.id if guild is not None else None,
                surface.message.channel.id,
                time.time(),
                shown,
                message_id=surface.message.id,
            )
        return None  # a character's webhook message: only its own process can edit it

    async def _end(self, reply_id: int) -> None:
        """The reply is no longer being written; a failure here must not hide how it ended."""
        try:
            await self.replies.end_writing(reply_id)
        except Exception:
            log.warning("could not note that reply %d ended", reply_id, exc_info=True)

    async def finish_cut_off(self, client: discord.Client, *, ours: Callable[[int | None], bool]) -> int:
        """End the replies that processes which died left unfinished, in the guilds ``ours`` says
        this process serves (by guild id; None for a DM): each shows the restart notice, as after
        a clean shutdown. Replies begun since this process started are left alone (they are ours
        or a live process's), as is one another process takes over first. Returns how many were
        taken over."""
        taken = expired = 0
        for left in await self.replies.unfinished(began_before=self.since, owner=self.process_id):
            if not ours(left.guild_id):
                continue  # another shard's: its own process finishes it
            if not await self.replies.take_over(left.reply_id, from_owner=left.owner, owner=self.process_id):
                continue
            taken += 1
            if left.interaction_token is not None and time.time() - left.began_at >= INTERACTION_TOKEN_S:
                expired += 1  # Discord no longer honours its token: nothing can edit it
            else:
                await self._tell_cut_off(client, left)
            await self.replies.end_writing(left.reply_id)
        if taken:
            log.info(
                "ended %d replies cut off when an earlier process stopped (%d too old to edit)",
                taken,
                expired,
            )
        return taken

    async def _tell_cut_off(self, client: discord.Client, left: UnfinishedReply) -> None:
        """Edit a cut-off reply to what it showed and the restart notice, with the buttons that
        still apply (Regenerate)."""
        record = await self.replies.reply(left.reply_id)
        view = (
            None
            if record is None
            else controls(replace(record, finish_reason=None), writing=False, cap=self.cap)
        )
        content = cut_off(left.shown)
        try:
            if left.interaction_token is not None and left.application_id is not None:
                await edit_original(client, left.application_id, left.interaction_token, content, view)
            elif left.message_id is not None:
                message = client.get_partial_messageable(left.channel_id).get_partial_message(left.message_id)
                await message.edit(content=content, view=view, allowed_mentions=NO_MENTIONS)
        except Exception as exc:  # gone, or Discord failing: it stays as it was, and the rest go on
            # No traceback: a connection error's text may hold the URL, and so the token.
            why = exc.status if isinstance(exc, discord.HTTPException) else type(exc).__name__
            log.warning("could not end reply %d cut off by a restart (%s)", left.reply_id, why)


async def edit_original(
    client: discord.Client, application_id: int, token: str, content: str, view: discord.ui.View | None
) -> None:
    """Edit an interaction's original response with only its application id and token, as
    :meth:`discord.Interaction.edit_original_response` does (the process that got the
    interaction is gone)."""
    hook = discord.Webhook.partial(application_id, token, client=client)
    with handle_message_parameters(content=content, view=view, allowed_mentions=NO_MENTIONS) as params:
        await async_context.get().edit_original_interaction_response(
            application_id,
            token,
            session=hook.session,
            proxy=hook.proxy,
            proxy_auth=hook.proxy_auth,
            payload=params.payload,
        )


class _HasAnswers(Protocol):
    """The bot, as a button sees it: what writes its replies."""

    answers: Answers
