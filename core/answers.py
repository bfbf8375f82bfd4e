"""A generated reply and its buttons: Stop while it is written, then Regenerate and Continue.

Every /generate and /chat reply (and every Discord reply to one) is a :class:`ReplyRecord` in
the store, keyed by what asked for it; its buttons carry only that key, so they still work
after a restart. The replies being written in this process are in :attr:`Answers.writing`:
Stop finds its stream there, and a second click while one is written is refused.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol, cast

import discord

from core.facade import ModeratedModels, Source
from core.render import split_thinking, with_thinking
from core.replies import NO_MENTIONS
from core.streaming import Surface, stream_reply
from domain.errors import UserFacingError
from model_service import ChatTurn, GenerationParams, GenerationRequest, GenerationResult, TextStream
from storage.protocols import ReplyStore
from storage.types import ReplyRecord

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
        try:
            async with self.models.command(source, *texts) as model:
                before = reply.text if continuing else ""
                await self.replies.save_reply(
                    replace(reply, request=encode_request(request), finish_reason=None)
                )
                writing.stream = model.service.stream(request)
                if writing.stopped_by is not None:
                    await writing.stream.aclose()

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

                result, message_id = await stream_reply(
                    surface,
                    writing.stream,
                    header=model.redact(reply.header),
                    interval=self.edit_interval_s,
                    transform=lambda text: model.redact(with_thinking(text, show=show_thinking)),
                    before=before,
                    before_tokens=reply.generated_tokens if continuing else 0,
                    view_for=view_for,
                    note=note,
                )
                shown = model.redact(split_thinking(result.text)[0])
        finally:
            self.writing.pop(reply.id, None)
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


class _HasAnswers(Protocol):
    """The bot, as a button sees it: what writes its replies."""

    answers: Answers
