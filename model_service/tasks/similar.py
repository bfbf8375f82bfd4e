"""Sentence similarity from ``AutoModel`` features: each text's token vectors, mean-pooled, compared.

``AutoModel`` loads the body alone (no task head): its last hidden states are the features the
source document means for custom heads. Mean pooling over the text's tokens (the special ones
included, as sentence-transformers pools) gives one vector per text; the cosine of the two is
the similarity. Both texts share a forward, and so do the requests batched with them.
Blocking; on the executor.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from model_service.loading import LoadedModel
from model_service.tasks.batcher import TaskItem
from model_service.tasks.forward import EncoderBatch, Encoding, check_fits, encoding
from model_service.types import SimilarRequest, SimilarResult


def mean_pooled(hidden: torch.Tensor) -> torch.Tensor:
    """One vector for a row's token vectors ``[tokens, hidden]`` (the row unpadded)."""
    return hidden.float().mean(0)


def make_batch(loaded: LoadedModel, items: Sequence[TaskItem]) -> EncoderBatch:
    tok = loaded.tokenizer
    lengths: dict[int, tuple[int, int]] = {}

    def prepare(item: TaskItem) -> list[Encoding]:
        request: SimilarRequest = item.request
        rows = []
        for name, text in (("text_a", request.text_a), ("text_b", request.text_b)):
            encoded = tok(text)
            check_fits(loaded, len(encoded["input_ids"]), name)
            rows.append(encoding(encoded))
        lengths[id(item)] = (len(rows[0].input_ids), len(rows[1].input_ids))
        return rows

    def take(output: object, row: int, length: int) -> torch.Tensor:
        return mean_pooled(output.last_hidden_state[row, :length]).cpu()  # type: ignore[attr-defined]

    def finish(item: TaskItem, kept: list[torch.Tensor]) -> SimilarResult:
        cosine = float(torch.nn.functional.cosine_similarity(kept[0], kept[1], dim=0))
        return SimilarResult(
            max(-1.0, min(1.0, cosine)), loaded.name, lengths.pop(id(item)), time.monotonic() - item.submitted
        )

    return EncoderBatch(loaded, items, prepare, take, finish)
