"""One forward shape for the encoder heads: rows right-padded together, in chunks, one per ``advance``.

A task says how an item becomes rows (``prepare``: the preprocess), what it keeps of a row's
output (``take``: the model's output sliced to the row) and how the kept rows become the item's
result (``finish``: the postprocess); ``_forward`` touches only the model. Several items' rows
share a forward up to ``FORWARD_TOKENS`` (rows x padded width). Blocking; on the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from model_service.errors import ServiceError, ValidationError
from model_service.fill_mask import SteppedBatch, chunks
from model_service.loading import LoadedModel
from model_service.tasks.batcher import TaskItem

# Rows x padded width of one forward. Encoder heads are small next to the causal LM; a chunk this
# size keeps a forward short, so generation steps run between them soon.
FORWARD_TOKENS = 1024


@dataclass(frozen=True)
class Encoding:
    """One row as the tokenizer made it."""

    input_ids: list[int]
    token_type_ids: list[int] | None = None


def encoding(encoded: Any) -> Encoding:
    types = encoded.get("token_type_ids")
    return Encoding(list(encoded["input_ids"]), list(types) if types is not None else None)


def check_fits(loaded: LoadedModel, tokens: int, what: str = "text", *, room: int = 0) -> None:
    """Refuse an input the model can't see whole, naming it, its length and the bound."""
    limit = loaded.context_length - room
    if tokens > limit:
        raise ValidationError(
            f"`{what}` is too long for model `{loaded.name}`: {tokens} tokens, at most {limit}"
        )


Prepare = Callable[[TaskItem], list[Encoding]]
Take = Callable[[Any, int, int], Any]  # (model output, row in the forward, row length) -> kept
Finish = Callable[[TaskItem, list[Any]], Any]


class EncoderBatch(SteppedBatch):
    """Items of one encoder task; ``advance`` runs the next chunk of rows."""

    def __init__(
        self, loaded: LoadedModel, items: Sequence[TaskItem], prepare: Prepare, take: Take, finish: Finish
    ) -> None:
        self.loaded = loaded
        self._take, self._finish = take, finish
        self._kept: dict[int, list[Any]] = {}
        rows: list[tuple[TaskItem, int, Encoding]] = []
        for item in items:
            try:
                encodings = prepare(item)
            except ServiceError as error:
                item.error = error
                continue
            self._kept[id(item)] = [None] * len(encodings)
            rows += [(item, i, enc) for i, enc in enumerate(encodings)]
        self._chunks = chunks(rows, lambda row: len(row[2].input_ids), FORWARD_TOKENS)
        self._steps = self._run()
        self.done = False

    def _run(self) -> Iterator[None]:
        for chunk in self._chunks:
            chunk = [row for row in chunk if row[0].live]
            if not chunk:
                continue
            output = self._forward([enc for _, _, enc in chunk])
            for position, (item, index, enc) in enumerate(chunk):
                kept = self._kept[id(item)]
                kept[index] = self._take(output, position, len(enc.input_ids))
                if all(k is not None for k in kept):
                    try:
                        item.result = self._finish(item, kept)
                    except ServiceError as error:
                        item.error = error
            yield

    def _forward(self, rows: list[Encoding]) -> Any:
        width = max(len(row.input_ids) for row in rows)
        pad = self.loaded.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row.input_ids)
            ids[i, :n] = torch.tensor(row.input_ids)
            mask[i, :n] = 1
            if row.token_type_ids is not None:
                types[i, :n] = torch.tensor(row.token_type_ids)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if any(row.token_type_ids is not None for row in rows):
            inputs["token_type_ids"] = types
        return self.loaded.model(**{k: v.to(self.loaded.device) for k, v in inputs.items()})
