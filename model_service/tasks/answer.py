"""Extractive question answering: the span of the context whose start and end the model scores best.

The question and the context go in as a pair; the head gives each token a start and an end
logit. Over the context's tokens only, each becomes a probability (a softmax each, as
transformers' question-answering pipeline does), and the answer is the span ``start <= end``,
at most ``MAX_ANSWER_TOKENS`` long, with the highest ``P(start) x P(end)``; its characters come
from the tokenizer's offsets. A context longer than the model's is refused rather than cut.
Blocking; on the executor.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import BatchEncoding

from model_service.loading import LoadedModel
from model_service.tasks.batcher import TaskItem
from model_service.tasks.forward import EncoderBatch, Encoding, check_fits, encoding
from model_service.types import AnswerRequest, AnswerResult

MAX_ANSWER_TOKENS = 15  # the pipeline's max_answer_len


def make_batch(loaded: LoadedModel, items: Sequence[TaskItem]) -> EncoderBatch:
    tok = loaded.tokenizer
    # Most tokenizers take (question, context); those that pad on the left (XLNet) the other way.
    question_first = getattr(tok, "padding_side", "right") == "right"
    context_sequence = 1 if question_first else 0
    prepared: dict[int, BatchEncoding] = {}

    def prepare(item: TaskItem) -> list[Encoding]:
        request: AnswerRequest = item.request
        pair = (request.question, request.context) if question_first else (request.context, request.question)
        encoded = tok(*pair, return_offsets_mapping=True)
        check_fits(loaded, len(encoded["input_ids"]), "context")
        prepared[id(item)] = encoded
        return [encoding(encoded)]

    def take(output: Any, row: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            output.start_logits[row, :length].float().cpu(),
            output.end_logits[row, :length].float().cpu(),
        )

    def finish(item: TaskItem, kept: list[tuple[torch.Tensor, torch.Tensor]]) -> AnswerResult:
        request: AnswerRequest = item.request
        encoded = prepared.pop(id(item))
        in_context = torch.tensor([s == context_sequence for s in encoded.sequence_ids(0)])
        start, end, score = best_span(*kept[0], in_context)
        offsets = encoded["offset_mapping"]
        first, last = offsets[start][0], offsets[end][1]
        return AnswerResult(
            request.context[first:last], first, last, score, loaded.name, time.monotonic() - item.submitted
        )

    return EncoderBatch(loaded, items, prepare, take, finish)


def best_span(
    start_logits: torch.Tensor, end_logits: torch.Tensor, in_context: torch.Tensor
) -> tuple[int, int, float]:
    """``(start token, end token, P(start) x P(end))`` of the best span inside the context."""
    outside = torch.finfo(start_logits.dtype).min
    p_start = start_logits.masked_fill(~in_context, outside).softmax(-1)
    p_end = end_logits.masked_fill(~in_context, outside).softmax(-1)
    scores = p_start[:, None] * p_end[None, :]
    # start <= end < start + MAX_ANSWER_TOKENS
    allowed = torch.ones_like(scores, dtype=torch.bool).triu().tril(MAX_ANSWER_TOKENS - 1)
    allowed &= in_context[:, None] & in_context[None, :]
    scores = scores.masked_fill(~allowed, -1.0)
    flat = int(scores.argmax())
    start, end = divmod(flat, scores.shape[1])
    return start, end, float(scores[start, end])
