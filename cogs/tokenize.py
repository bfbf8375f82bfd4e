"""/tokenize: the tokenizer's view of a text, as the source document shows it with ``AutoTokenizer``.

The tokens as the tokenizer splits them (byte-level pieces of one character shown as their bytes,
with the character they are part of), their ids, the attention mask, the token type ids where
the tokenizer makes them, and the count against the model's context; beside it, a picture of the
text with each token's boundary coloured and its id beneath (``core.pictures``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core import pictures, replies
from core.options import TEXT_OPTION_LIMIT, matching_choices
from model_service.types import TokenizeRequest, TokenizeResult, TokenPiece

if TYPE_CHECKING:
    from core.transcord import Transcord

MAX_ROWS = 40  # tokens shown in the table; the lists and the count cover them all
TABLE_CHARS = 1500  # the table stays within one message (a code block split in two breaks)
MAX_LIST = 100  # entries shown of each list
VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


def _visible(text: str) -> str:
    shown = "".join(VISIBLE.get(c, c if c.isprintable() else f"\\x{ord(c):02x}") for c in text)
    return _safe(shown)


def _safe(text: str) -> str:
    # Inside a code block only a run of three backticks ends it: keep each one apart.
    return text.replace("`", "ˋ")


def _stands_for(piece: TokenPiece, sources: tuple[str, str]) -> str:
    if piece.special:
        return "(special)"
    if piece.partial:
        whole = sources[piece.sequence or 0][piece.start : piece.end].strip() or "?"
        hex_bytes = " ".join(f"{b:02x}" for b in piece.partial)
        return f"‹{hex_bytes}› part of {_safe(whole)}"
    return _visible(piece.text)


def _listed(values: tuple[int, ...]) -> str:
    shown = ", ".join(str(v) for v in values[:MAX_LIST])
    more = f", … +{len(values) - MAX_LIST}" if len(values) > MAX_LIST else ""
    return f"[{shown}{more}]"


def render(request: TokenizeRequest, result: TokenizeResult) -> str:
    share = result.count / result.context_length
    context = f"{result.count:,} tokens, {share:.1%} of the model's {result.context_length:,}-token context"
    if result.serving_length:
        context += f" (one request here holds {result.serving_length:,})"
    if result.count > (result.serving_length or result.context_length):
        context += " ⚠️ longer than that"
    lines = [
        f"**Tokens** · `{result.model}` · {result.algorithm}, {result.vocabulary:,}-token vocabulary",
        context,
        "```",
    ]
    sources = (request.text, request.pair or "")
    width = max(len(str(i)) for i in result.input_ids)
    rows = result.pieces[:MAX_ROWS]
    piece_width = min(16, max(len(_visible(p.piece)) for p in rows))
    lines.append(f"{'#':>3}  {'id':>{width}}  {'piece':<{piece_width}}  stands for")
    used = sum(len(line) + 1 for line in lines)
    shown_rows = 0
    for index, piece in enumerate(rows):
        shown = _visible(piece.piece)[:24]
        line = f"{index:>3}  {piece.id:>{width}}  {shown:<{piece_width}}  {_stands_for(piece, sources)[:40]}"
        if used + len(line) > TABLE_CHARS:
            break
        lines.append(line)
        used += len(line) + 1
        shown_rows += 1
    if len(result.pieces) > shown_rows:
        lines.append(f"… {len(result.pieces) - shown_rows} more tokens")
    lines.append("```")
    lines.append(f"**input_ids** `{_listed(result.input_ids)}`")
    lines.append(f"**attention_mask** `{_listed(result.attention_mask)}`")
    if result.token_type_ids is not None:
        lines.append(f"**token_type_ids** `{_listed(result.token_type_ids)}`")
    else:
        lines.append("-# no token_type_ids: this tokenizer does not make them (the model takes none)")
    return "\n".join(lines)


class Tokenize(commands.Cog):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot

    @app_commands.command(name="tokenize", description="See how a model's tokenizer splits your text")
    @app_commands.describe(
        text="The text to tokenize, e.g. 'Hello, world! 你好 🤗'",
        model="Whose tokenizer (default: this channel's model)",
        pair="A second text, as sentence pairs are given (shows token_type_ids where the model has them)",
    )
    async def tokenize(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, TEXT_OPTION_LIMIT],
        model: app_commands.Range[str, 1, 100] | None = None,
        pair: app_commands.Range[str, 1, TEXT_OPTION_LIMIT] | None = None,
    ) -> None:
        settings = await self.bot.settings_for(interaction)
        request = TokenizeRequest(text=text, pair=pair, model=model or settings.model)
        texts = (text, pair) if pair else (text,)
        async with self.bot.models.command(interaction, *texts) as call:
            result = await replies.answer_soon(interaction, call.service.tokenize(request))
            picture = await pictures.draw(pictures.tokens_picture, result)
            await pictures.send(interaction, call.redact(render(request, result)), picture)

    @tokenize.autocomplete("model")
    async def _model_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return matching_choices(self.bot.models.model_names(), current)


async def setup(bot: Transcord) -> None:
    await bot.add_cog(Tokenize(bot))
