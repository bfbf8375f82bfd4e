"""/next: the channel's model's likeliest next tokens after a prompt, each with its probability, as a
bar chart and the same figures in words.

The probabilities are the model's own (the softmax of its raw logits, no temperature or top-p),
from whichever engine serves it (``ProbabilitiesAPI.next_tokens``). The request passes moderation
like any model command, and each predicted token is redacted before it is drawn.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core import pictures, replies
from core.options import TEXT_OPTION_LIMIT, param_options
from core.render import bar, escape, safe
from model_service.types import NEXT_PARAMS, NextTokenRequest, NextTokenResult

if TYPE_CHECKING:
    from core.transcord import Transcord

SOURCES = {
    "transformers": "transformers: the softmax of the last position's logits",
    "llama.cpp": "llama.cpp: llama-server's n_probs",
    "remote": "its server's logprobs",
    "transformers twin": "its local copy on transformers (its server gives no logprobs)",
}
VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


def token_code(token: str) -> str:
    """A token as inline code: spaces and line breaks visible (a leading space is half the
    token), a backtick kept from closing the code."""
    text = "".join(VISIBLE.get(c, c) for c in safe(token)).replace("`", "ˋ")
    return f"`{text or '∅'}`"


def render(prompt: str, result: NextTokenResult) -> str:
    """A ranked list: rank, a bar, the probability and the token."""
    lines = [f"**Next token** after **{escape(prompt[-300:])}**"]
    for rank, token in enumerate(result.tokens, 1):
        lines.append(
            f"`{rank:>2}.` `{bar(token.probability)}` {token.probability:6.1%}  {token_code(token.token)}"
        )
    shown = sum(t.probability for t in result.tokens)
    cut = " · the prompt was cut from the left to fit the context" if result.prompt_truncated else ""
    lines.append(
        f"-# {result.model} · {SOURCES[result.source]} · no sampling settings · these {len(result.tokens)} "
        f"hold {shown:.1%} of the probability · {result.elapsed_s:.1f} s{cut}"
    )
    return "\n".join(lines)


class Next(commands.Cog):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot

    @app_commands.command(
        name="next", description="The model's likeliest next tokens after your text, with their probabilities"
    )
    @app_commands.describe(prompt="The text the model continues, e.g. 'The capital of France is'")
    @param_options(*NEXT_PARAMS)
    async def next_token(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, TEXT_OPTION_LIMIT],
        **options: object,
    ) -> None:
        settings = await self.bot.settings_for(interaction)
        given = {k: v for k, v in options.items() if v is not None}
        request = NextTokenRequest(prompt=prompt, model=settings.model, **given)  # type: ignore[arg-type]  # options from choice_options: each a field of the request, typed there
        async with self.bot.models.command(interaction, prompt) as call:
            service = pictures.inside(call.service)
            result = await replies.answer_soon(interaction, service.next_tokens(request))
            # A moderator's blocklist holds in the picture too.
            tokens = tuple(replace(t, token=call.redact(t.token)) for t in result.tokens)
            result = replace(result, tokens=tokens)
            picture = await pictures.draw(pictures.next_token_chart, prompt, result.tokens, result.model)
            await pictures.send(interaction, call.redact(render(prompt, result)), picture)


async def setup(bot: Transcord) -> None:
    await bot.add_cog(Next(bot))
