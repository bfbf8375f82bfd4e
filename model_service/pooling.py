"""One vector for a text from an encoder's token vectors, pooled as the checkpoint says.

A sentence-transformers checkpoint says how in ``1_Pooling/config.json`` (``pooling_mode_mean_tokens``,
``pooling_mode_cls_token``, ``pooling_mode_max_tokens``, ...); several modes on at once are
concatenated in sentence-transformers' order. A checkpoint without that file is mean-pooled. Each
row is pooled over its own tokens only (the attention mask's ones: the row before padding), the
special tokens included, as sentence-transformers pools. Blocking; torch on the caller's thread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

POOLING_CONFIG = "1_Pooling/config.json"
# sentence-transformers' modes, in the order it concatenates them.
MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")
DEFAULT_MODES = ("mean_tokens",)


class PoolingError(ValueError):
    """A pooling config that can't be followed; the message names the file and what is wrong."""


def read_pooling(path: Path | None) -> tuple[str, ...]:
    """The modes the pooling config at ``path`` turns on; mean pooling where there is none."""
    if path is None or not Path(path).is_file():
        return DEFAULT_MODES
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PoolingError(f"`{path}` can't be read: {error}") from None
    if not isinstance(config, dict):
        raise PoolingError(f"`{path}` is not a JSON object")
    on = {
        key.removeprefix("pooling_mode_")
        for key, value in config.items()
        if key.startswith("pooling_mode_") and value is True
    }
    unknown = sorted(on - set(MODES))
    if unknown:
        raise PoolingError(f"`{path}` asks for pooling this service does not do: {', '.join(unknown)}")
    modes = tuple(mode for mode in MODES if mode in on)
    if not modes:
        raise PoolingError(f"`{path}` turns no pooling mode on")
    return modes


def pool(hidden: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
    """One vector for one row's token vectors ``[tokens, hidden]`` (the row without its padding)."""
    hidden = hidden.float()
    count = hidden.shape[0]
    parts = []
    for mode in modes:
        if mode == "cls_token":
            parts.append(hidden[0])
        elif mode == "max_tokens":
            parts.append(hidden.max(0).values)
        elif mode == "mean_tokens":
            parts.append(hidden.mean(0))
        elif mode == "mean_sqrt_len_tokens":
            parts.append(hidden.sum(0) / count**0.5)
        elif mode == "weightedmean_tokens":
            weights = torch.arange(1, count + 1, dtype=hidden.dtype, device=hidden.device)
            parts.append((hidden * weights[:, None]).sum(0) / weights.sum())
        elif mode == "lasttoken":
            parts.append(hidden[-1])
        else:
            raise PoolingError(f"unknown pooling mode `{mode}`")
    return torch.cat(parts)


def normalized(vectors: torch.Tensor) -> torch.Tensor:
    """Each row scaled to unit length, so a dot product is the cosine."""
    return torch.nn.functional.normalize(vectors.float(), dim=-1)
