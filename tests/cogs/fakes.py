"""A fake model service for cog tests: scripted streams, errors on demand, every request recorded.

It implements :class:`model_service.api.ModelServiceAPI` without torch, so the real bot (real
cogs, real store, the loopback server) can be driven in milliseconds with exact control over
what the "model" says, how fast, and how it fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from model_service import (
    FillMaskRequest,
    FillMaskResult,
    FillPrediction,
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ServiceStatus,
)
from model_service.types import (
    AnswerRequest,
    AnswerResult,
    ClassifyRequest,
    ClassifyResult,
    EntitiesRequest,
    EntitiesResult,
    FinishReason,
    LabelScore,
    RewriteRequest,
    SimilarRequest,
    SimilarResult,
    TaskMethod,
    TaskModels,
    TokenizeRequest,
    TokenizeResult,
    TokenPiece,
)

Request = GenerationRequest | FillMaskRequest


@dataclass
class Script:
    """What the next streams do: ``deltas`` each after ``delay`` s (the first after ``first_delay``).

    ``error`` is raised once ``error_after`` deltas have been yielded (0: before any text).
    """

    deltas: Sequence[str] = ("Hello", " there", ".")
    delay: float = 0.0
    first_delay: float = 0.0
    error: BaseException | None = None
    error_after: int = 0
    finish_reason: FinishReason = "length"
    prompt_truncated: bool = False


class FakeStream:
    def __init__(self, service: FakeService, request: GenerationRequest, script: Script) -> None:
        self._service = service
        self._request = request
        self._script = script
        self.result: GenerationResult | None = None
        self.closed = False
        self.yielded: list[str] = []

    def __aiter__(self) -> AsyncIterator[str]:
        return self._produce()

    async def _produce(self) -> AsyncIterator[str]:
        script, started = self._script, time.monotonic()
        for index, delta in enumerate(script.deltas):
            if script.error is not None and index == script.error_after:
                raise script.error
            await asyncio.sleep(script.first_delay if index == 0 else script.delay)
            self.yielded.append(delta)
            yield delta
        if script.error is not None and script.error_after >= len(script.deltas):
            raise script.error
        self.result = GenerationResult(
            text="".join(script.deltas),
            finish_reason=script.finish_reason,
            prompt_tokens=len(self._request.prompt.split()),
            generated_tokens=len(script.deltas),
            prompt_truncated=script.prompt_truncated,
            model=self._request.model or self._service.models[0],
            elapsed_s=time.monotonic() - started,
        )

    def queue_place(self) -> tuple[int, float] | None:
        return None  # never waits for a slot

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self._service.open_streams -= 1


class FakeTaskStream:
    """A summary's stream: the scripted generation, written by a "seq2seq" model."""

    method: TaskMethod = "seq2seq"
    target: str | None = None

    def __init__(self, inner: FakeStream, model: str) -> None:
        self._inner = inner
        self.model = model

    @property
    def result(self) -> GenerationResult | None:
        return self._inner.result

    def __aiter__(self) -> AsyncIterator[str]:
        return self._inner.__aiter__()

    def queue_place(self) -> tuple[int, float] | None:
        return None  # never waits for a slot

    async def aclose(self) -> None:
        await self._inner.aclose()


class FakeService:
    """Implements ModelServiceAPI. Set ``script``, ``refuse`` (raised at admission, before any
    reply), ``fill_delay`` / ``fill_error`` / ``predictions`` for /fill; read ``requests``."""

    def __init__(self, models: Sequence[str] = ("fake", "other"), *, cap: int = 512) -> None:
        self.models = list(models)
        self.cap = cap
        self.script = Script()
        self.refuse: BaseException | None = None
        self.fill_delay = 0.0
        self.fill_error: BaseException | None = None
        self.predictions: tuple[FillPrediction, ...] = (
            FillPrediction(" Paris", 0.75, "The capital of France is Paris."),
            FillPrediction(" Rome", 0.2, "The capital of France is Rome."),
            FillPrediction(" home", 0.05, "The capital of France is home."),
        )
        self.requests: list[Request] = []
        self.task_requests: list[object] = []  # /tokenize, /classify, ... requests
        self.streams: list[FakeStream] = []
        self.open_streams = 0

    def stream(self, request: GenerationRequest, *, timeout: float | None = None) -> FakeStream:
        self.requests.append(request)
        if self.refuse is not None:
            raise self.refuse
        stream = FakeStream(self, request, self.script)
        self.streams.append(stream)
        self.open_streams += 1
        return stream

    async def generate(self, request: GenerationRequest, *, timeout: float | None = None) -> GenerationResult:
        stream = self.stream(request, timeout=timeout)
        try:
            async for _ in stream:
                pass
        finally:
            await stream.aclose()
        assert stream.result is not None
        return stream.result

    async def fill_mask(self, request: FillMaskRequest) -> FillMaskResult:
        self.requests.append(request)
        if self.refuse is not None:
            raise self.refuse
        started = time.monotonic()
        await asyncio.sleep(self.fill_delay)
        if self.fill_error is not None:
            raise self.fill_error
        model = request.model or self.models[0]
        predictions = self.predictions[: int(request.top_k)]
        return FillMaskResult(predictions, model, "masked_lm", time.monotonic() - started)

    def params(self, values: dict[str, object] | None = None) -> GenerationParams:
        return GenerationParams.from_values(values, max_new_tokens_cap=self.cap)

    def model_names(self) -> list[str]:
        return list(self.models)

    def status(self) -> ServiceStatus:
        info = ModelInfo(self.models[0], "fake", "generate, fill-mask", "cpu", "float32", 135_000_000)
        return ServiceStatus(
            models=(info,),
            catalog=tuple(self.models),
            queue_depth=self.open_streams,
            queue_limit=8,
            running=self.open_streams,
            batch_size=1 if self.open_streams else 0,
            recent_latency_s=None,
            tokens_per_s=None,
            uptime_s=1.0,
        )

    # -- the other tasks: fixed answers, every request recorded ---------------------------------

    def _task(self, request: object) -> None:
        self.task_requests.append(request)
        if self.refuse is not None:
            raise self.refuse

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResult:
        self._task(request)
        words = request.text.split()
        pieces = tuple(TokenPiece(i, w, w, (), False, 0, len(w), 0) for i, w in enumerate(words))
        ids = tuple(range(len(words)))
        return TokenizeResult(
            request.model or self.models[0], pieces, ids, (1,) * len(ids), None, 2048, None, "WordLevel", 100
        )

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        self._task(request)
        labels = request.labels or ("POSITIVE", "NEGATIVE")
        share = 1 / len(labels)
        scores = tuple(LabelScore(label, share) for label in labels)
        method: TaskMethod = "causal-zero-shot" if request.labels else "classifier"
        return ClassifyResult(scores, request.model or self.models[0], method, 0.0)

    async def entities(self, request: EntitiesRequest) -> EntitiesResult:
        self._task(request)
        return EntitiesResult(request.text, (), request.model or self.models[0], 0.0)

    async def answer(self, request: AnswerRequest) -> AnswerResult:
        self._task(request)
        word = request.context.split()[0]
        return AnswerResult(word, 0, len(word), 0.5, request.model or self.models[0], 0.0)

    async def similar(self, request: SimilarRequest) -> SimilarResult:
        self._task(request)
        texts = request.texts
        matrix = tuple(tuple(1.0 if a == b else 0.5 for b in texts) for a in texts)
        return SimilarResult(matrix, self.models[0], (1,) * len(texts), 0.0)

    async def rewrite(self, request: RewriteRequest) -> FakeTaskStream:
        self._task(request)
        inner = self.stream(GenerationRequest(request.text, request.params, model=request.model))
        return FakeTaskStream(inner, request.model or self.models[0])

    def tasks(self) -> tuple[TaskModels, ...]:
        return (TaskModels("classify", (), self.models[0], "zero-shot"),)

    @property
    def generation_requests(self) -> list[GenerationRequest]:
        return [r for r in self.requests if isinstance(r, GenerationRequest)]

    @property
    def fill_requests(self) -> list[FillMaskRequest]:
        return [r for r in self.requests if isinstance(r, FillMaskRequest)]
