"""/summarize and /translate: new text from yours, streamed into the reply like /generate's.

A sequence-to-sequence model writes it where one is configured (``summarize_model``,
``translate_model``, or the first that does the task); otherwise the channel's instruct model is
asked through its chat template, and the reply says so. Decoding is greedy (temperature 0): a
summary or a translation should not change from one try to the next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core import replies
from core.attachments import read_files
from core.options import TEXT_OPTION_LIMIT
from core.render import quote
from core.streaming import stream_reply
from model_service.api import TaskStream
from model_service.types import MAX_LANGUAGE_CHARS, MAX_REWRITE_CHARS, RewriteKind, RewriteRequest

if TYPE_CHECKING:
    from core.transcord import Transcord

TITLES = {"summarize": "Summary", "translate": "Translation"}


def header(kind: RewriteKind, text: str, stream: TaskStream) -> str:
    title = TITLES[kind] + (f" into {stream.target}" if stream.target else "")
    if stream.method == "seq2seq":
        how = f"`{stream.model}`, a sequence-to-sequence model"
    else:
        asked = "asked through its chat template" if stream.method == "instruct" else "asked in a prompt"
        how = f"`{stream.model}` {asked}: no {kind} model is configured here"
    return f"{quote(text)}\n**{title}** ({how}):\n"


class Rewrite(commands.Cog):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot

    async def _run(
        self,
        interaction: discord.Interaction,
        kind: RewriteKind,
        text: str,
        to: str | None,
        file: discord.Attachment | None = None,
    ) -> None:
        files = await read_files([file] if file else [])
        text = files.into(text, MAX_REWRITE_CHARS).strip()
        if not text:
            reason = files.skipped[0] if files.skipped else "nothing to read"
            raise replies.UserFacingError(f"Give the `text` to {kind}, or a text file ({reason}).")
        settings = await self.bot.settings_for(interaction)
        params = settings.generation_params(
            max_new_tokens_cap=self.bot.config.service.max_new_tokens_cap, given={"temperature": 0}
        )
        request = RewriteRequest(
            kind,
            text,
            to=to,
            params=params,
            model=getattr(settings, f"{kind}_model"),
            channel_model=settings.model,
        )
        async with self.bot.models.command(interaction, text) as call:
            stream = await replies.answer_soon(interaction, call.service.rewrite(request))
            await stream_reply(
                interaction,
                stream,
                header=call.redact(files.notice() + header(kind, text, stream)),
                interval=self.bot.config.stream_edit_interval_s,
                transform=call.redact,
            )

    @app_commands.command(name="summarize", description="A short summary of your text")
    @app_commands.describe(
        text="The text to summarize", file="A text file to summarize (with the text, or alone)"
    )
    async def summarize(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, TEXT_OPTION_LIMIT] | None = None,
        file: discord.Attachment | None = None,
    ) -> None:
        await self._run(interaction, "summarize", text or "", None, file)

    @app_commands.command(name="translate", description="Your text in another language")
    @app_commands.describe(
        text="The text to translate", to="The language to translate into, e.g. German (default: French)"
    )
    async def translate(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, TEXT_OPTION_LIMIT],
        to: app_commands.Range[str, 1, MAX_LANGUAGE_CHARS] | None = None,
    ) -> None:
        await self._run(interaction, "translate", text, to)


async def setup(bot: Transcord) -> None:
    await bot.add_cog(Rewrite(bot))
