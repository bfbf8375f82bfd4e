"""/fill: the model's best guesses for a [MASK] in your sentence, with comparable scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core.options import TEXT_OPTION_LIMIT, param_options
from core.render import escape
from model_service import MASK, FillMaskRequest, FillMaskResult
from model_service.types import FILL_PARAMS

if TYPE_CHECKING:
    from core.transcord import Transcord

BAR_WIDTH = 12


def render(text: str, result: FillMaskResult) -> str:
    """A ranked table: rank, a bar and a percentage per guess, so scores compare at a glance."""
    lines = [f"**{escape(text)}**"]
    if not result.predictions:
        lines.append("*(no candidates found)*")
    for rank, p in enumerate(result.predictions, 1):
        filled = round(p.score * BAR_WIDTH)
        bar = "█" * filled + "░" * (BAR_WIDTH - filled)
        word = escape(p.token.strip()) or "␠"
        lines.append(f"`{rank}.` `{bar}` {p.score:6.1%}  **{word}**")
    method = "masked LM" if result.method == "masked_lm" else "causal LM, sentences rescored"
    lines.append(f"-# {result.model} · {method} · {result.elapsed_s:.1f} s")
    return "\n".join(lines)


class FillMask(commands.Cog):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot

    @app_commands.command(name="fill", description=f"Guess the word hidden by {MASK} in your sentence")
    @app_commands.describe(text=f"A sentence with one {MASK}, e.g. 'The capital of France is {MASK}.'")
    @param_options(*FILL_PARAMS)
    async def fill(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, TEXT_OPTION_LIMIT],
        **options: object,
    ) -> None:
        settings = await self.bot.settings_for(interaction)
        # A configured fill model (a real masked LM) wins; else the channel's own model fills.
        model = None if self.bot.config.service.fill_model else settings.model
        given = {k: v for k, v in options.items() if v is not None}
        request = FillMaskRequest(text=text, model=model, **given)  # type: ignore[arg-type]  # options from choice_options: each a field of the request, typed there
        await self.bot.models.answer(
            interaction, (text,), lambda s: s.fill_mask(request), lambda result: render(text, result)
        )


async def setup(bot: Transcord) -> None:
    await bot.add_cog(FillMask(bot))
