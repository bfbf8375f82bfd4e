"""The transformers engine: a model loaded through the seed's flow, batched by ``batching.Batch``.

Generation steps go through ``Batch``; fill-mask's forward passes (log-probabilities of given
tokens, after a shared prefix) through :class:`TransformersScorer`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from model_service import generation
from model_service.batching import Batch, Row, cache_kwargs, kv_layers, new_row, pad_rows, prefill
from model_service.fill_mask import FillBatch, FillTask, chunks, on_device
from model_service.loading import LoadedModel, ModelRegistry
from model_service.types import FinishReason, GenerationRequest


class TransformersEngine:
    """One catalog model on transformers; the registry loads each (source, head) once."""

    def __init__(self, registry: ModelRegistry, model: str) -> None:
        self._registry = registry
        self._model = model
        self._batch: Batch | None = None

    def join(self, request: GenerationRequest, should_stop: Callable[[], FinishReason | None]) -> Row:
        loaded = self._registry.get(self._model, "generate")
        prompt = generation.prepare(loaded, request)
        return new_row(loaded, prompt, request.params, should_stop)

    def step(self, joining: Sequence[Row]) -> list[Row]:
        if self._batch is None:
            self._batch = Batch(self._registry.get(self._model, "generate"))
        return self._batch.step(list(joining))

    def release(self) -> None:
        batch, self._batch = self._batch, None
        if batch is not None:
            batch.fail()

    def close(self) -> None:
        self.release()

    def fill(self, tasks: Sequence[FillTask]) -> FillBatch:
        return FillBatch(TransformersScorer(self._registry.get(self._model, "fill-mask")), tasks)


class TransformersScorer:
    """Fill-mask's forward passes on a transformers model (``fill_mask.Scorer``)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    def masked_logits(self, rows: list[list[int]]) -> torch.Tensor:
        ids, mask = pad_rows(rows, self.loaded.tokenizer.pad_token_id or 0, left=False)
        logits: torch.Tensor = self.loaded.model(
            **on_device(self.loaded, input_ids=ids, attention_mask=mask)
        ).logits
        return logits

    def score_after_shared(
        self,
        groups: list[tuple[int, list[int], list[list[int]]]],
        use: Callable[[int, int, list[int], torch.Tensor, torch.Tensor], None],
        *,
        live: Callable[[int, int], bool],
    ) -> Iterator[None]:
        """Run each group's shared tokens once, then each row's own tokens on a copy of that cache.

        ``groups`` are ``(key, shared tokens, [each row's own tokens])``. For every row still
        ``live(key, row)``, ``use(key, row, own, first, logits)`` gets the log-distribution
        after the shared tokens (``first``) and the logits over the row's own tokens. One
        forward per ``yield``: the shared tokens of all groups, then chunks of rows, group by
        group so a group's rows finish together.
        """
        pad = self.loaded.tokenizer.pad_token_id or 0
        model = self.loaded.model
        out, mask = prefill(self.loaded, [shared for _, shared, _ in groups])
        first = out.logits[:, -1, :].float().log_softmax(-1)
        kv = kv_layers(out)
        rows = [(g, r, own) for g, (_, _, owns) in enumerate(groups) for r, own in enumerate(owns)]
        rows.sort(key=lambda row: (row[0], len(row[2])))  # within a group, like lengths together
        keys = [key for key, _, _ in groups]
        yield
        for chunk in chunks(rows, lambda row: len(row[2])):
            chunk = [row for row in chunk if live(keys[row[0]], row[1])]
            if not chunk:
                continue
            owner = torch.tensor([g for g, _, _ in chunk])
            own_ids, own_mask = pad_rows([own for _, _, own in chunk], pad, left=False)
            seen = mask.sum(-1)[owner]  # real tokens before each row's own
            device_owner = owner.to(self.loaded.device)
            cache = [(k.index_select(0, device_owner), v.index_select(0, device_owner)) for k, v in kv]
            logits = model(
                **on_device(
                    self.loaded,
                    input_ids=own_ids,
                    attention_mask=torch.cat([mask[owner], own_mask], dim=1),
                    position_ids=seen[:, None] + torch.arange(own_ids.shape[1])[None, :],
                ),
                use_cache=True,
                **cache_kwargs(model, cache),
            ).logits
            for i, (g, r, own) in enumerate(chunk):
                use(keys[g], r, own, first[g], logits[i, : len(own)])
            yield

    def next_token_logprobs(self, prompts: list[list[int]]) -> torch.Tensor:
        out, _ = prefill(self.loaded, prompts)
        last: torch.Tensor = out.logits[:, -1, :]
        return last.float().log_softmax(-1)
