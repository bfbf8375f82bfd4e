"""The transformers engine: a model loaded through the seed's flow, batched by ``batching.Batch``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from model_service import generation
from model_service.batching import Batch, Row, new_row
from model_service.fill_mask import FillBatch, FillTask
from model_service.loading import ModelRegistry
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

    def step(self, joining: Sequence[Row]) -> list[Row]:  # type: ignore[override]
        if self._batch is None:
            self._batch = Batch(self._registry.get(self._model, "generate"))
        return self._batch.step(list(joining))

    def release(self) -> None:
        batch, self._batch = self._batch, None
        if batch is not None:
            batch.fail()

    def fill(self, tasks: Sequence[FillTask]) -> FillBatch:
        return FillBatch(self._registry.get(self._model, "fill-mask"), tasks)
