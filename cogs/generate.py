"""/generate: text from the model, streamed into the reply as it is written (/chat is cogs/chat.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core import render
from core.options import TEXT_OPTION_LIMIT, param_options
from core.streaming import InteractionSurface
from domain.settings import COMMAND_PARAMS
from model_service import GenerationRequest
from model_service.params import check_text
from model_service.types import MAX_PROMPT_CHARS
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

    async def _run(self, interaction: discord.Interaction, request: GenerationRequest, header: str) -> None:
        reply = ReplyRecord(
            id=interaction.id,
            channel_id=interaction.channel_id or 0,
            requester_id=interaction.user.id,
            kind="generate",
            request="",
            header=header,
        )
        await self.bot.answers.write(
            interaction, InteractionSurface(interaction), reply, request, texts=(request.prompt,)
        )

    @app_commands.command(name="generate", description="Continue your text with the channel's model")
    @app_commands.describe(prompt="The text to continue, e.g. 'Once upon a time'")
    @param_options(*COMMAND_PARAMS)
    async def generate(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, TEXT_OPTION_LIMIT],
        **options: object,
    ) -> None:
        request = await self._request(interaction, prompt, options)
        # The prompt in bold, the continuation plain: the user sees which words are theirs.
        await self._run(interaction, request, header=f"**{render.escape(prompt)}**")


async def setup(bot: Transcord) -> None:
    await bot.add_cog(Generate(bot))
