"""/generate: text from the model, streamed into the reply as it is written (/chat is cogs/chat.py).

With ``show: probabilities``, a picture follows the reply: its tokens coloured by the probability
the model gave each, scored after the fact by one forward over prompt and reply (teacher forcing,
``ProbabilitiesAPI.token_probabilities``), a second model call that passes moderation too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from core import pictures, render, replies
from core.options import TEXT_OPTION_LIMIT, param_options
from core.streaming import InteractionSurface
from domain.errors import UserFacingError
from domain.settings import COMMAND_PARAMS
from model_service import GenerationRequest, ServiceError
from model_service.params import check_text
from model_service.types import MAX_PROMPT_CHARS, TokenProbabilitiesRequest
from storage.types import ReplyRecord

if TYPE_CHECKING:
    from core.transcord import Transcord


class Generate(commands.Cog):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot

    async def _request(
        self, interaction: discord.Interaction, prompt: str, overrides: dict[str, object]
    ) -> GenerationRequest:
        check_text("prompt", prompt, limit=MAX_PROMPT_CHARS)
        settings = await self.bot.settings_for(interaction)
        params = settings.generation_params(
            max_new_tokens_cap=self.bot.config.service.max_new_tokens_cap, given=overrides
        )
        return GenerationRequest(prompt=prompt, params=params, model=settings.model)

    async def _run(
        self, interaction: discord.Interaction, request: GenerationRequest, header: str
    ) -> ReplyRecord:
        reply = ReplyRecord(
            id=interaction.id,
            channel_id=interaction.channel_id or 0,
            requester_id=interaction.user.id,
            kind="generate",
            request="",
            header=header,
        )
        return await self.bot.answers.write(
            interaction, InteractionSurface(interaction), reply, request, texts=(request.prompt,)
        )

    async def _show_probabilities(
        self, interaction: discord.Interaction, request: GenerationRequest, reply: ReplyRecord
    ) -> None:
        """A follow-up picture of how sure the model was of each token of the reply as shown
        (redacted, its thinking left out); if it can't be made, only the asker is told why."""
        if not reply.text.strip():
            return
        try:
            async with self.bot.models.command(interaction, request.prompt) as call:
                asked = TokenProbabilitiesRequest(request, reply.text)
                result = await pictures.inside(call.service).token_probabilities(asked)
            picture = await pictures.draw(
                pictures.sureness_picture, result.tokens, result.model, cut=result.cut
            )
        except (ServiceError, UserFacingError) as error:
            await interaction.followup.send(
                f"The picture of how sure it was could not be made: {replies.error_message(error)}",
                ephemeral=True,
                allowed_mentions=replies.NO_MENTIONS,
            )
            return
        where = "" if result.source == "transformers" else f" (scored on its {result.source})"
        await interaction.followup.send(
            f"-# How sure {result.model} was of each token{where}: the probability it gave each one",
            file=picture.file(),
            allowed_mentions=replies.NO_MENTIONS,
        )

    @app_commands.command(name="generate", description="Continue your text with the channel's model")
    @app_commands.describe(
        prompt="The text to continue, e.g. 'Once upon a time'",
        show="probabilities: a picture of how sure the model was of each token it wrote",
    )
    @param_options(*COMMAND_PARAMS)
    async def generate(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, TEXT_OPTION_LIMIT],
        show: Literal["probabilities"] | None = None,
        **options: object,
    ) -> None:
        request = await self._request(interaction, prompt, options)
        # The prompt in bold, the continuation plain: the user sees which words are theirs.
        reply = await self._run(interaction, request, header=f"**{render.escape(prompt)}**")
        if show == "probabilities":
            await self._show_probabilities(interaction, request, reply)


async def setup(bot: Transcord) -> None:
    await bot.add_cog(Generate(bot))
