"""The buttons on generated replies: Stop, Regenerate, Continue (see core/answers.py).

The requester or a moderator may use them; anyone else gets an ephemeral refusal. A click is
answered within Discord's 3 s whatever happens: refused, or deferred and then written into the
clicked message itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import discord
from discord.ext import commands, tasks

from core import replies
from core.answers import BEING_WRITTEN, FINISHED, Action, ReplyButton, controls, decode_request
from core.replies import NO_MENTIONS
from core.streaming import InteractionSurface
from domain.errors import UserFacingError
from storage.types import ReplyRecord

if TYPE_CHECKING:
    from core.transcord import Transcord

log = logging.getLogger(__name__)

GONE = "This reply is no longer stored (it is too old), so it can't be regenerated or continued."
KEEP_S = 30 * 24 * 3600  # a month: replies keep their buttons, conversations their turns


class Controls(commands.Cog):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.answers.on_click = self.clicked
        self.prune.start()

    async def cog_unload(self) -> None:
        self.bot.answers.on_click = None
        self.prune.cancel()

    @tasks.loop(hours=6)
    async def prune(self) -> None:
        """Forget replies untouched for a month, and conversation turns older than that, so the
        tables do not grow without end (a channel's memory expires sooner, by its setting)."""
        before = time.time() - KEEP_S
        store = self.bot.store
        try:
            replies_gone = await store.replies.prune_replies(before=before)
            turns_gone = await store.conversations.prune_turns(before=before)
        except Exception:
            log.exception("could not prune old replies and turns; trying again later")  # the loop goes on
            return
        if replies_gone or turns_gone:
            log.info(
                "forgot %d replies and %d conversation turns older than %d days",
                replies_gone,
                turns_gone,
                KEEP_S // 86400,
            )

    async def clicked(self, interaction: discord.Interaction, action: Action, reply_id: int) -> None:
        # Whatever goes wrong keeps the clicked message: errors are told beside it, never over it.
        interaction.extras["visible_text"] = interaction.message.content if interaction.message else ""
        try:
            await self._clicked(interaction, action, reply_id)
        except Exception as exc:
            await replies.send_error(interaction, exc)

    async def _clicked(self, interaction: discord.Interaction, action: Action, reply_id: int) -> None:
        answers = self.bot.answers
        reply = await self.bot.store.replies.reply(reply_id)
        if reply is None:
            raise UserFacingError(GONE, icon="❓")
        if interaction.user.id != reply.requester_id and not await self.bot.is_moderator(interaction):
            raise UserFacingError(
                f"Only <@{reply.requester_id}>, who asked for this reply, or a moderator can use its buttons.",
                icon="🚫",
            )
        writing = answers.writing.get(reply_id)
        if action is Action.STOP:
            if writing is None:
                await self._not_writing(interaction, reply)
                return
            await interaction.response.defer()  # the writer edits the message as it stops
            await writing.stop(interaction.user.display_name)
            return
        if writing is not None:
            raise UserFacingError(BEING_WRITTEN, icon="⏳")
        request = decode_request(reply.request, max_new_tokens_cap=answers.cap)
        params = replace(request.params, seed=None)  # a new seed: another reply, not the same one
        continuing = action is Action.MORE
        if continuing:
            if reply.finish_reason in FINISHED:
                raise UserFacingError("The model ended this reply itself; there is nothing to continue.")
            room = answers.cap - reply.generated_tokens
            if room <= 0:
                raise UserFacingError(
                    f"This reply has {reply.generated_tokens} tokens, the most a reply may have here."
                )
            params = replace(params, max_new_tokens=min(params.max_new_tokens, room))
            request = replace(request, continuation=reply.text)
        request = replace(request, params=params)
        surface = InteractionSurface(interaction, in_place=True)
        # The channel's settings as they are now: its thinking setting, and its turn in the queue.
        settings = await self.bot.settings_for(interaction)
        done = await answers.write(
            interaction,
            surface,
            reply,
            request,
            texts=(request.prompt,),
            continuing=continuing,
            show_thinking=settings.thinking == "spoiler",
        )
        if done.turn_id is not None:
            # The conversation goes on from the reply as it now reads.
            await self.bot.store.conversations.revise_turn(done.turn_id, done.text)

    async def _not_writing(self, interaction: discord.Interaction, reply: ReplyRecord) -> None:
        """Stop on a reply that is not being written: say why, and put the right buttons back."""
        if reply.finish_reason is None:
            text = "This reply stopped when the bot restarted; Regenerate writes it again."
        else:
            text = "This reply has already finished."
        await interaction.response.edit_message(view=controls(reply, writing=False, cap=self.bot.answers.cap))
        await interaction.followup.send(f"ℹ️ {text}", ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: Transcord) -> None:
    bot.add_dynamic_items(ReplyButton)
    await bot.add_cog(Controls(bot))


async def teardown(bot: Transcord) -> None:
    bot.remove_dynamic_items(ReplyButton)
