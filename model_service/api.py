"""The narrow interface the bot sees. Cogs depend on this Protocol, never on torch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from model_service.types import (
    FillMaskRequest,
    FillMaskResult,
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    ServiceStatus,
)


@runtime_checkable
class TextStream(Protocol):
    """Async iterator of text deltas; ``result`` is set once the iteration ends."""

    result: GenerationResult | None

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def aclose(self) -> None:
        """Stop the generation early (the user left, the bot shuts down)."""


@runtime_checkable
class ModelServiceAPI(Protocol):
    def stream(self, request: GenerationRequest, *, timeout: float | None = None) -> TextStream: ...

    async def generate(
        self, request: GenerationRequest, *, timeout: float | None = None
    ) -> GenerationResult: ...

    async def fill_mask(self, request: FillMaskRequest) -> FillMaskResult: ...

    def params(self, values: dict[str, object] | None = None) -> GenerationParams:
        """Validate loose settings against this service's caps."""
        ...

    def model_names(self) -> list[str]: ...

    def status(self) -> ServiceStatus: ...
