"""/classify, /entities, /answer, /similar: the source document's encoder heads, one answer each.

Each command asks the channel's model for its task (``/config set classify_model`` and friends),
or the service's first model of that kind (out of the box, /similar's is the sentence encoder the
set-up fetches), or (``/classify``) the channel's causal model zero-shot; the reply's last line says
which model answered, and how. /similar with more than two texts adds a heat map of every pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core import pictures, replies
from core.options import TEXT_OPTION_LIMIT
from core.render import QUOTE_CHARS, bar, escape, quote
from model_service.types import (
    MAX_SIMILAR_TEXTS,
    AnswerRequest,
    AnswerResult,
    ClassifyRequest,
    ClassifyResult,
    EntitiesRequest,
    EntitiesResult,
    SimilarRequest,
    SimilarResult,
    parse_labels,
    parse_texts,
)

if TYPE_CHECKING:
    from core.transcord import Transcord


EXCERPT_CHARS = 200  # context shown on each side of an answer

METHODS = {
    "classifier": "a text classifier, its own labels",
    "nli": "zero-shot: each label as a hypothesis the text entails (NLI)",
    "causal-zero-shot": "zero-shot: the likelihood of each label after the text, calibrated (no classifier here)",
}


def render_classify(text: str, result: ClassifyResult) -> str:
    lines = [quote(text)]
    for score in result.scores:
        lines.append(f"`{bar(score.score)}` {score.score:6.1%}  **{escape(score.label)}**")
    note = METHODS[result.method] + (" (each label scored on its own)" if result.multi_label else "")
    lines.append(f"-# {result.model} · {note} · {result.elapsed_s:.1f} s")
    return "\n".join(lines)


def render_entities(result: EntitiesResult) -> str:
    text, parts, at = result.text, [], 0
    for entity in result.entities:
        parts.append(escape(text[at : entity.start]))
        parts.append(f"**{escape(text[entity.start : entity.end])}**`{entity.group}`")
        at = entity.end
    parts.append(escape(text[at:]))
    lines = ["".join(parts)]
    if not result.entities:
        lines.append("*(no entities found)*")
    for entity in result.entities:
        lines.append(f"`{entity.group:<5}` {entity.score:6.1%}  {escape(text[entity.start : entity.end])}")
    lines.append(f"-# {result.model} · token classification, word pieces grouped · {result.elapsed_s:.1f} s")
    return "\n".join(lines)


def render_answer(question: str, context: str, result: AnswerResult) -> str:
    start = max(0, result.start - EXCERPT_CHARS)
    end = min(len(context), result.end + EXCERPT_CHARS)
    before = ("…" if start else "") + escape(context[start : result.start])
    after = escape(context[result.end : end]) + ("…" if end < len(context) else "")
    shown = f"__**{escape(result.answer)}**__" if result.answer.strip() else "*(empty span)*"
    excerpt = (before + shown + after).replace("\n", " ")
    return "\n".join(
        [
            f"**Q:** {escape(question)}",
            f"**A:** {escape(result.answer) or '*(no answer)*'} · {result.score:.1%}",
            f"> {excerpt}",
            f"-# {result.model} · extractive QA: the span with the best start and end scores · "
            f"{result.elapsed_s:.1f} s",
        ]
    )


# How a text's token vectors became one vector (sentence-transformers' pooling modes), in words.
POOLING = {
    "cls_token": "[CLS]-token",
    "max_tokens": "max-pooled",
    "mean_tokens": "mean-pooled",
    "mean_sqrt_len_tokens": "√length-pooled",
    "weightedmean_tokens": "weighted-mean-pooled",
    "lasttoken": "last-token",
}
SEVERAL_QUOTE_CHARS = 120  # each text quoted back when several are compared


def pooled(result: SimilarResult) -> str:
    """The features compared, in words: ``mean-pooled AutoModel features``."""
    return f"{' + '.join(POOLING.get(mode, mode) for mode in result.pooling)} AutoModel features"


def render_similar(text_a: str, text_b: str, result: SimilarResult) -> str:
    return "\n".join(
        [
            quote(text_a, QUOTE_CHARS // 2),
            quote(text_b, QUOTE_CHARS // 2),
            f"**Cosine similarity: {result.cosine:.3f}** `{bar(result.cosine, 20)}`",
            f"-# {result.model} · {pooled(result)} · {result.tokens[0]} + {result.tokens[1]} "
            f"tokens · {result.elapsed_s:.1f} s",
        ]
    )


def one_line(text: str, limit: int = SEVERAL_QUOTE_CHARS) -> str:
    """A text on one line, cut to ``limit`` characters, escaped."""
    flat = " ".join(text.split())
    return escape(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def render_several(texts: tuple[str, ...], result: SimilarResult) -> str:
    """Several texts: each numbered, then every pair, most alike first, with its cosine and a bar."""
    lines = ["**How alike they are** (cosine similarity, 1 = the same meaning)"]
    lines += [f"**{i}.** {one_line(text)}" for i, text in enumerate(texts, 1)]
    n = len(texts)
    pairs = sorted(
        ((result.matrix[i][j], i, j) for i in range(n) for j in range(i + 1, n)), key=lambda p: -p[0]
    )
    lines += [f"`{cosine:6.3f}` `{bar(cosine, 12)}` **{i + 1}** & **{j + 1}**" for cosine, i, j in pairs]
    lines.append(
        f"-# {result.model} · {pooled(result)} · {' + '.join(map(str, result.tokens))} tokens · "
        f"{result.elapsed_s:.1f} s"
    )
    return "\n".join(lines)


class Tasks(commands.Cog):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot

    @app_commands.command(name="classify", description="Sort your text into labels, with a score for each")
    @app_commands.describe(
        text="The text to classify, e.g. 'I loved this movie!'",
        labels="Labels to choose from, comma-separated, e.g. 'positive, negative' (zero-shot)",
    )
    async def classify(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, TEXT_OPTION_LIMIT],
        labels: app_commands.Range[str, 1, 600] | None = None,
    ) -> None:
        settings = await self.bot.settings_for(interaction)
        request = ClassifyRequest(
            text, parse_labels(labels), model=settings.classify_model, channel_model=settings.model
        )
        await self.bot.models.answer(
            interaction,
            (text, *request.labels),
            lambda s: s.classify(request),
            lambda r: render_classify(text, r),
        )

    @app_commands.command(
        name="entities", description="Find the names of people, places and more in your text"
    )
    @app_commands.describe(text="The text, e.g. 'My name is Clara and I live in Berkeley, California.'")
    async def entities(
        self, interaction: discord.Interaction, text: app_commands.Range[str, 1, TEXT_OPTION_LIMIT]
    ) -> None:
        settings = await self.bot.settings_for(interaction)
        request = EntitiesRequest(text, model=settings.entities_model)
        await self.bot.models.answer(interaction, (text,), lambda s: s.entities(request), render_entities)

    @app_commands.command(name="answer", description="Answer a question with a span of the text you give")
    @app_commands.describe(
        question="The question, e.g. 'Where does Clara live?'",
        context="The text that holds the answer",
    )
    async def answer(
        self,
        interaction: discord.Interaction,
        question: app_commands.Range[str, 1, 1000],
        context: app_commands.Range[str, 1, TEXT_OPTION_LIMIT],
    ) -> None:
        settings = await self.bot.settings_for(interaction)
        request = AnswerRequest(question, context, model=settings.answer_model)
        await self.bot.models.answer(
            interaction,
            (question, context),
            lambda s: s.answer(request),
            lambda r: render_answer(question, context, r),
        )

    @app_commands.command(
        name="similar",
        description="How alike texts are in meaning (cosine similarity); more texts: a heat map",
    )
    @app_commands.describe(
        text_a="The first text",
        text_b="The second text",
        texts=f"More texts to compare, separated by | (up to {MAX_SIMILAR_TEXTS - 2} more): answered with a heat map",
    )
    async def similar(
        self,
        interaction: discord.Interaction,
        text_a: app_commands.Range[str, 1, TEXT_OPTION_LIMIT],
        text_b: app_commands.Range[str, 1, TEXT_OPTION_LIMIT],
        texts: app_commands.Range[str, 1, TEXT_OPTION_LIMIT] | None = None,
    ) -> None:
        settings = await self.bot.settings_for(interaction)
        request = SimilarRequest(text_a, text_b, model=settings.similar_model, more=parse_texts(texts))
        if not request.more:
            await self.bot.models.answer(
                interaction,
                (text_a, text_b),
                lambda s: s.similar(request),
                lambda r: render_similar(text_a, text_b, r),
            )
            return
        async with self.bot.models.command(interaction, *request.texts) as call:
            result = await replies.answer_soon(interaction, call.service.similar(request))
            picture = await pictures.draw(
                pictures.similarity_heat_map, request.texts, result.matrix, result.model, pooled(result)
            )
            await pictures.send(interaction, call.redact(render_several(request.texts, result)), picture)


async def setup(bot: Transcord) -> None:
    await bot.add_cog(Tasks(bot))
