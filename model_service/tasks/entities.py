"""Named entities (or any token tags): a token classifier's tags, word pieces grouped into entities.

The grouping is transformers' token-classification pipeline's with ``aggregation_strategy="first"``:
the pieces of a word take the tag of the word's first piece, adjacent words of one tag (``B-PER``
then ``I-PER``) form one entity, its score the mean of its words', and ``O`` is dropped. A text
longer than the model's context is refused rather than cut. Blocking; on the executor.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from transformers import BatchEncoding

from model_service import checkpoint_kinds as kinds
from model_service.loading import LoadedModel
from model_service.tasks.batcher import TaskItem
from model_service.tasks.forward import EncoderBatch, Encoding, check_fits
from model_service.types import EntitiesRequest, EntitiesResult, Entity

IGNORED = frozenset({"O"})


@dataclass
class _Token:
    """One piece of the text with its tag scores (the pipeline's "pre-entity")."""

    piece: str
    scores: torch.Tensor
    start: int
    end: int
    is_subword: bool


@dataclass
class _Word:
    tag: str
    score: float
    word: str
    start: int
    end: int


def make_batch(loaded: LoadedModel, items: Sequence[TaskItem]) -> EncoderBatch:
    tok = loaded.tokenizer
    prepared: dict[int, BatchEncoding] = {}

    def prepare(item: TaskItem) -> list[Encoding]:
        request: EntitiesRequest = item.request
        encoded = tok(request.text, return_offsets_mapping=True, return_special_tokens_mask=True)
        check_fits(loaded, len(encoded["input_ids"]))
        prepared[id(item)] = encoded
        types = encoded.get("token_type_ids")
        return [Encoding(list(encoded["input_ids"]), list(types) if types is not None else None)]

    def take(output: Any, row: int, length: int) -> torch.Tensor:
        logits: torch.Tensor = output.logits[row, :length]  # the head's ModelOutput, fields per model class
        return logits.float().softmax(-1).cpu()

    def finish(item: TaskItem, kept: list[torch.Tensor]) -> EntitiesResult:
        request: EntitiesRequest = item.request
        tokens = _tokens(loaded, request.text, prepared.pop(id(item)), kept[0])
        entities = group(loaded, [_first(loaded, word) for word in _words(tokens)])
        return EntitiesResult(request.text, tuple(entities), loaded.name, time.monotonic() - item.submitted)

    return EncoderBatch(loaded, items, prepare, take, finish)


def _tokens(loaded: LoadedModel, text: str, encoded: BatchEncoding, scores: torch.Tensor) -> list[_Token]:
    tok = loaded.tokenizer
    ids = encoded["input_ids"]
    special = encoded["special_tokens_mask"]
    offsets = encoded["offset_mapping"]
    word_aware = bool(getattr(getattr(tok, "_tokenizer", None), "model", None)) and bool(
        getattr(tok._tokenizer.model, "continuing_subword_prefix", None)
    )
    out = []
    for index, token_id in enumerate(ids):
        if special[index]:
            continue
        piece = cast(str, tok.convert_ids_to_tokens(int(token_id)))  # one id: one token
        start, end = offsets[index]
        covered = text[start:end]
        if word_aware:
            is_subword = len(piece) != len(covered)  # "##ing" covers "ing"
        else:
            # The pipeline's fallback for tokenizers that do not mark word pieces.
            is_subword = start > 0 and " " not in text[start - 1 : start + 1]
        if int(token_id) == tok.unk_token_id:
            piece, is_subword = covered, False
        out.append(_Token(piece, scores[index], start, end, is_subword))
    return out


def _words(tokens: list[_Token]) -> list[list[_Token]]:
    words: list[list[_Token]] = []
    for token in tokens:
        if words and token.is_subword:
            words[-1].append(token)
        else:
            words.append([token])
    return words


def _first(loaded: LoadedModel, pieces: list[_Token]) -> _Word:
    """A word takes its first piece's tag (``aggregation_strategy="first"``)."""
    names = kinds.labels(loaded.model.config)
    scores = pieces[0].scores
    best = int(scores.argmax())
    word = loaded.tokenizer.convert_tokens_to_string([p.piece for p in pieces])
    return _Word(names[best], float(scores[best]), word, pieces[0].start, pieces[-1].end)


def _tag(name: str) -> tuple[str, str]:
    """``(B or I, the entity type)``; a tag without a prefix continues (as the pipeline reads it)."""
    if name.startswith(("B-", "I-")):
        return name[0], name[2:]
    return "I", name


def group(loaded: LoadedModel, words: list[_Word]) -> list[Entity]:
    """Adjacent words of one type form an entity, unless the later one begins a new one (``B-``)."""
    groups: list[list[_Word]] = []
    for word in words:
        bi, tag = _tag(word.tag)
        if groups and tag == _tag(groups[-1][-1].tag)[1] and bi != "B":
            groups[-1].append(word)
        else:
            groups.append([word])
    entities = []
    for members in groups:
        kind = members[0].tag.split("-", 1)[-1]
        if kind in IGNORED or members[0].tag in IGNORED:
            continue
        entities.append(
            Entity(
                group=kind,
                score=sum(w.score for w in members) / len(members),
                word=loaded.tokenizer.convert_tokens_to_string([w.word for w in members]),
                start=members[0].start,
                end=members[-1].end,
            )
        )
    return entities
