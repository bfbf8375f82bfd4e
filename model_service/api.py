"""The narrow interface the bot sees. Cogs depend on this Protocol, never on torch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from model_service.types import (
    AnswerRequest,
    AnswerResult,
    ClassifyRequest,
    ClassifyResult,
    EntitiesRequest,
    EntitiesResult,
    FillMaskRequest,
    FillMaskResult,
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    NextTokenRequest,
    NextTokenResult,
    RewriteRequest,
    ServiceStatus,
    SimilarRequest,
    SimilarResult,
    TaskMethod,
    TaskModels,
    TokenizeRequest,
    TokenizeResult,
    TokenProbabilitiesRequest,
    TokenProbabilitiesResult,
)


@runtime_checkable
class TextStream(Protocol):
    """Async iterator of text deltas; ``result`` is set once the iteration ends."""

    @property
    def result(self) -> GenerationResult | None: ...

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def aclose(self) -> None:
        """Stop the generation early (the user left, the bot shuts down)."""

    def queue_place(self) -> tuple[int, float] | None:
        """While it waits for a slot: its place in the queue (1: next) and about how many
        seconds until it starts; None once started."""


@runtime_checkable
class TaskStream(TextStream, Protocol):
    """A summary's or a translation's stream: also which model writes it, and how."""

    model: str
    method: TaskMethod  # "seq2seq" (a model for it), "instruct" or "prompt" (a causal LM asked)
    target: str | None  # the language a translation is written in, where known


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

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResult: ...

    async def classify(self, request: ClassifyRequest) -> ClassifyResult: ...

    async def entities(self, request: EntitiesRequest) -> EntitiesResult: ...

    async def answer(self, request: AnswerRequest) -> AnswerResult: ...

    async def similar(self, request: SimilarRequest) -> SimilarResult: ...

    async def rewrite(self, request: RewriteRequest) -> TaskStream:
        """A summary or a translation, streamed like a generation."""
        ...

    def tasks(self) -> tuple[TaskModels, ...]:
        """Which models do each task here, or stand in for it, or the hint where none does."""
        ...

    def model_names(self) -> list[str]: ...

    def status(self) -> ServiceStatus: ...


@runtime_checkable
class ProbabilitiesAPI(Protocol):
    """Inside the model: its probabilities, for the pictures demos draw (``/next``, how sure it was).

    Apart from :class:`ModelServiceAPI` so a service (or a test's fake) without them is still a
    model service; a command asks ``isinstance(service, ProbabilitiesAPI)`` and says so if not.
    """

    async def next_tokens(self, request: NextTokenRequest) -> NextTokenResult:
        """The likeliest next tokens after a prompt, each with its probability."""
        ...

    async def token_probabilities(self, request: TokenProbabilitiesRequest) -> TokenProbabilitiesResult:
        """The probability the model gave each token of a text it wrote."""
        ...
