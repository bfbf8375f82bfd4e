"""Sentence similarity from ``AutoModel`` features: each text's token vectors pooled, normalised, compared.

``AutoModel`` loads the body alone (no task head): its last hidden states are the features the
source document means for custom heads. Each text's tokens are pooled into one vector as the
checkpoint says (sentence-transformers' ``1_Pooling/config.json``: mean, the [CLS] token, max, ...;
mean where there is no such file: :mod:`model_service.pooling`), scaled to unit length, and every
text is compared with every other: the cosine, a dot product of unit vectors. All the texts share
a forward, and so do the requests batched with them. Blocking; on the executor.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from model_service.errors import ModelUnavailableError
from model_service.loading import LoadedModel, ModelSource
from model_service.pooling import POOLING_CONFIG, PoolingError, normalized, pool, read_pooling
from model_service.tasks.batcher import TaskItem
from model_service.tasks.forward import EncoderBatch, Encoding, check_fits, encoding
from model_service.types import SimilarRequest, SimilarResult


def pooling_config(source: ModelSource) -> Path | None:
    """Where the checkpoint's pooling config lies: in its folder, or in the hub cache (never fetched)."""
    if source.kind == "folder":
        return Path(source.location) / POOLING_CONFIG
    if source.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source.location, POOLING_CONFIG)
        return Path(found) if isinstance(found, str) else None
    return None


def pooling_of(loaded: LoadedModel) -> tuple[str, ...]:
    try:
        return read_pooling(pooling_config(loaded.source))
    except PoolingError as error:
        raise ModelUnavailableError(f"model `{loaded.name}`: {error}") from None


def matrix(vectors: torch.Tensor) -> tuple[tuple[float, ...], ...]:
    """Every vector's cosine with every other, each clamped to [-1, 1] (rounding can step past)."""
    unit = normalized(vectors)
    cosines = (unit @ unit.T).clamp(-1.0, 1.0)
    return tuple(tuple(float(x) for x in row) for row in cosines)


def make_batch(loaded: LoadedModel, items: Sequence[TaskItem]) -> EncoderBatch:
    tok = loaded.tokenizer
    modes = pooling_of(loaded)
    lengths: dict[int, tuple[int, ...]] = {}

    def prepare(item: TaskItem) -> list[Encoding]:
        request: SimilarRequest = item.request
        names = ["text_a", "text_b"] + ["texts"] * len(request.more)
        rows = []
        for name, text in zip(names, request.texts, strict=True):
            encoded = tok(text)
            check_fits(loaded, len(encoded["input_ids"]), name)
            rows.append(encoding(encoded))
        lengths[id(item)] = tuple(len(row.input_ids) for row in rows)
        return rows

    def take(output: Any, row: int, length: int) -> torch.Tensor:
        hidden: torch.Tensor = output.last_hidden_state[row, :length]  # AutoModel's ModelOutput
        return pool(hidden, modes).cpu()

    def finish(item: TaskItem, kept: list[torch.Tensor]) -> SimilarResult:
        return SimilarResult(
            matrix(torch.stack(kept)),
            loaded.name,
            lengths.pop(id(item)),
            time.monotonic() - item.submitted,
            modes,
        )

    return EncoderBatch(loaded, items, prepare, take, finish)
