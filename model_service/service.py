"""The async facade: lifecycle, admission (a bounded queue), the executor boundary, streaming.

All model work runs on one service-owned executor through ``_run``; nothing else in the
project calls ``run_in_executor``. The tasks beyond generation and fill-mask (classify, entities,
answer, similar, summarize, translate, tokenize) are routed and batched by the task desk
(``tasks.desk``), through the same boundary and the same admission. Requests are admitted against a bound and refused at once
when it is reached, so nobody waits without limit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from model_service import checkpoint_kinds as kinds
from model_service import shares
from model_service.config import ServiceConfig, is_gguf
from model_service.engine_core import DONE, EngineCore, FillJob, Job
from model_service.engines import Engine, TransformersEngine, llamacpp
from model_service.engines.llamacpp import LlamaCppEngine, LlamaModels
from model_service.engines.remote import RemoteEngine, RemoteModels
from model_service.errors import (
    InternalError,
    ModelUnavailableError,
    OverloadedError,
    RequestTimeoutError,
    ServiceError,
    ValidationError,
)
from model_service.loading import LoadedModel, ModelRegistry, Task
from model_service.probabilities import Probabilities
from model_service.remote_source import is_remote
from model_service.samples import SampleRing
from model_service.tasks.desk import TaskDesk, TaskTextStream
from model_service.tasks.seq2seq import Seq2SeqEngine
from model_service.types import (
    AnswerRequest,
    AnswerResult,
    ClassifyRequest,
    ClassifyResult,
    EntitiesRequest,
    EntitiesResult,
    FillMaskRequest,
    FillMaskResult,
    FinishReason,
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    NextTokenRequest,
    NextTokenResult,
    RewriteRequest,
    ServiceStatus,
    SimilarRequest,
    SimilarResult,
    TaskModels,
    TokenizeRequest,
    TokenizeResult,
    TokenProbabilitiesRequest,
    TokenProbabilitiesResult,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Ticket:
    """One admitted request: its cancel flag and deadline, checked by the worker every token."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.cancelled = threading.Event()
        self.started = asyncio.Event()  # set (on the loop) when a worker picks the request up

    def should_stop(self) -> FinishReason | None:
        if self.cancelled.is_set():
            return "cancelled"
        if time.monotonic() >= self.deadline:
            return "timeout"
        return None


class GenerationStream:
    """Async iterator of text deltas. ``result`` is set when the iteration ends.

    Leaving early (``aclose``, ``break`` then ``aclose``, or cancelling the consuming task)
    stops the generation within a token.
    """

    def __init__(self, service: ModelService, request: GenerationRequest, timeout: float) -> None:
        self._service = service
        self._request = request
        # Admitted at once, so "busy" is known before the caller commits to a reply.
        self._ticket = service._admit(timeout)
        self._share = shares.current()  # whose turn it takes: the asking task's
        self._job: Job | None = None
        self._iterator: AsyncGenerator[str, None] | None = None
        self._reader: asyncio.Task[object] | None = None
        self.result: GenerationResult | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iterator is None:
            self._iterator = self._produce()
            self._reader = asyncio.current_task()
        return self._iterator

    async def aclose(self) -> None:
        """Stop early and free the slot; a stream must be iterated to the end or closed.

        Safe from another task than the reader (a Stop button): the reader then ends with
        ``cancelled`` and the text so far as its result, and frees the slot itself.
        """
        self._ticket.cancelled.set()
        iterator = self._iterator
        if iterator is not None and self._reader not in (None, asyncio.current_task()):
            return
        if iterator is not None and not getattr(iterator, "ag_running", False):
            await iterator.aclose()
        if iterator is None or not getattr(iterator, "ag_running", False):
            self._service._release(self._ticket)

    def queue_place(self) -> tuple[int, float] | None:
        """While waiting for a slot: (place in the queue, 1 = next; about how many seconds until
        it starts). None once started, or before the stream is iterated."""
        return self._service._queue_place(self._job)

    async def _produce(self) -> AsyncGenerator[str, None]:
        service, ticket = self._service, self._ticket
        job = Job(
            request=self._request,
            model=self._request.model or service.config.default_model,
            should_stop=ticket.should_stop,
            started=ticket.started,
            share=self._share,
        )
        self._job = job
        service._scheduler_submit(job)
        try:
            await service._wait_started(ticket, job.result)
            while (item := await job.deltas.get()) is not DONE:
                yield item  # type: ignore[misc]  # every item before DONE is a str delta
            self.result = await job.result
        finally:
            if not job.result.done():
                ticket.cancelled.set()
                if ticket.started.is_set():
                    # The row stops at the next step; wait for it, so the slot is really free.
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(job.result)
            service._release(ticket)


class ModelService:
    """Loads models on demand (or at start), runs generation and fill-mask off the event loop."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        # A remote model's local copy (REMOTE_TOKENIZERS) stands for it where local files are read:
        # its config and tokenizer, and its weights for what the server can't do (fill-mask on llama-server).
        local = {
            n: config.remote_tokenizers.get(n, s) if is_remote(s) else s for n, s in config.models.items()
        }
        self._registry = ModelRegistry(
            local, device=config.device, dtype=config.dtype, offline=config.offline
        )
        self._llama = LlamaModels(
            dict(config.models),
            slots=config.max_batch_size,
            threads=config.threads,
            context=config.llama_context,
            priority=config.llama_priority,
        )
        self._remote = RemoteModels(config)
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduler: EngineCore | None = None
        self._active: set[_Ticket] = set()
        self._started_at = 0.0
        self._latencies: collections.deque[float] = collections.deque(maxlen=50)
        self._token_rates: collections.deque[float] = collections.deque(maxlen=50)
        self._samples = SampleRing()  # the last minutes, for /status's chart
        self._sampler: asyncio.Task[None] | None = None
        self._desk = TaskDesk(
            config,
            self._registry,
            self._run,
            admit=lambda: self._admit(self.config.request_timeout_s),
            release=self._release,
            open_stream=self._open_stream,
            serving_length=self._serving_length,
        )
        self._probabilities = Probabilities(
            self._registry,
            self._llama,
            self._remote,
            self._run,
            engine_name=self.engine_name,
            kind=self._desk.kind,
            timeout_s=config.request_timeout_s,
        )

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> ModelService:
        if self._executor is not None:
            return self
        # One worker: torch already spreads a forward over the cores; two forwards at once on
        # a small machine only fight over them. Batching, not threads, is how requests share.
        if self.config.threads:
            # Process-wide: on a shared machine, spinning intra-op threads wait on each other.
            torch.set_num_threads(self.config.threads)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._loop = asyncio.get_running_loop()
        self._started_at = time.monotonic()
        self._scheduler = EngineCore(
            self._engine_for,
            self._run,
            max_batch_size=self.config.max_batch_size,
            on_finished=lambda r: self._record(r.elapsed_s, r.generated_tokens),
            on_filled=lambda r: self._record(r.elapsed_s, 0),
        )
        self._scheduler.start()
        self._sampler = asyncio.create_task(self._sample_every(), name="status samples")
        self._remote.start()  # watches each server from now on: /status says whether it answers
        # What each catalog model is (its config, no weights): for routing tasks and for /help.
        await self._desk.detect()
        if any(self.engine_name(name) == "llama.cpp" for name in self.config.models):
            # All torch work runs on the executor: keep MKL's threads off llama.cpp's cores.
            await self._run(llamacpp.single_threaded_mkl_here)
        if self.config.preload:
            try:
                await self._run(self._preload, self.config.default_model, "generate")
                fill_name = self.config.fill_model or self.config.default_model
                if self.engine_name(fill_name) == "transformers":
                    # A llama.cpp model fills on its transformers twin, loaded on the first /fill
                    # only: most servers never fill, and the twin is 2.7x the GGUF in memory.
                    await self._run(self._preload, fill_name, "fill-mask")
            except BaseException:
                await self.close()
                raise
        return self

    async def close(self) -> None:
        if self._executor is None:
            return
        for ticket in list(self._active):
            ticket.cancelled.set()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if self._scheduler is not None:
            await self._scheduler.stop()
        await self._desk.batcher.close()
        with contextlib.suppress(ServiceError):
            await self._run(self._llama.close)
        await asyncio.to_thread(self._remote.close)  # its loop thread; no model work
        executor, self._executor = self._executor, None
        # Waiting for the worker to finish is not model work: a plain thread, not the boundary.
        await asyncio.to_thread(executor.shutdown, True)

    async def __aenter__(self) -> ModelService:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def started(self) -> bool:
        return self._executor is not None

    # -- engines --------------------------------------------------------------------------------

    def engine_name(self, model: str) -> str:
        """The engine that serves a catalog model: its configured one, or auto's choice."""
        if is_remote(self.config.models[model]):
            return "remote"  # the config allows no other engine for a server's URL
        chosen = self.config.engines.get(model, "auto")
        if chosen != "auto":
            return chosen
        return (
            "llama.cpp"
            if is_gguf(self.config.models[model]) and llamacpp.unavailable() is None
            else "transformers"
        )

    def _engine_for(self, model: str) -> Engine:
        """On the executor (the engine core asks from a step): the runner of a catalog model."""
        if self.engine_name(model) == "llama.cpp":
            registry = self._registry
            return LlamaCppEngine(self._llama, model, lambda: TransformersEngine(registry, model))
        if self.engine_name(model) == "remote":
            twin = (
                (lambda: TransformersEngine(self._registry, model))
                if self._remote.has_weights(model)
                else None
            )
            return RemoteEngine(self._remote, model, twin)
        if self.engine_name(model) == "transformers" and self._desk.kind(model) == "seq2seq":
            return Seq2SeqEngine(self._registry, model)
        return TransformersEngine(self._registry, model)

    def _serving_length(self, model: str) -> int | None:
        """The tokens one request may hold where the engine allows less than the model (llama.cpp)."""
        if self.engine_name(model) == "remote":
            facts = self._remote.server(model).facts
            return facts.context if facts else None
        return self.config.llama_context if self.engine_name(model) == "llama.cpp" else None

    def _preload(self, model: str, task: Task) -> None:
        """On the executor: load what ``task`` needs of ``model`` on its engine."""
        if task == "generate" and self.engine_name(model) == "llama.cpp":
            self._llama.get(model)
        elif self.engine_name(model) == "remote":
            self._remote.preload(model)  # never fails for a server that is down: /status tells
        else:
            self._registry.get(model, task)

    # -- the executor boundary ----------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """The one place model work leaves the event loop."""
        if self._executor is None:
            raise InternalError("the model service is not running")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except ServiceError:
            raise
        except Exception as exc:
            log.exception("model work failed")
            raise InternalError("the model failed while working on this request") from exc

    # -- admission ------------------------------------------------------------------------------

    def _admit(self, timeout: float) -> _Ticket:
        if self._executor is None:
            raise InternalError("the model service is not running: call start() first")
        if len(self._active) >= self.config.queue_limit:
            raise OverloadedError(
                f"the model is busy ({len(self._active)} requests queued); try again in "
                f"{self._retry_hint():.0f} s",
                retry_after=self._retry_hint(),
            )
        waiting = self._scheduler.waiting if self._scheduler is not None else 0
        if self._latencies and waiting and (wait := self._wait_estimate(waiting + 1)) > timeout:
            # Told now rather than after waiting out the whole deadline in the queue.
            raise OverloadedError(
                f"the queue is {waiting} requests long, about {wait:.0f} s, longer than a request may "
                f"wait ({timeout:.0f} s); try again in {self._retry_hint():.0f} s",
                retry_after=self._retry_hint(),
            )
        ticket = _Ticket(time.monotonic() + timeout)
        self._active.add(ticket)
        return ticket

    async def _wait_started(self, ticket: _Ticket, future: asyncio.Future[Any]) -> None:
        """Bound the time in the queue by the request's deadline, not by the work ahead of it."""
        waiter = asyncio.ensure_future(ticket.started.wait())
        try:
            remaining = max(0.0, ticket.deadline - time.monotonic())
            await asyncio.wait({waiter, future}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not ticket.started.is_set() and not future.done():
            ticket.cancelled.set()  # the worker skips it when it gets there
            raise RequestTimeoutError("the request timed out while waiting for the model")

    def _queue_place(self, job: Job | None) -> tuple[int, float] | None:
        place = self._scheduler.place(job) if job is not None and self._scheduler is not None else None
        return None if place is None else (place, self._wait_estimate(place))

    def _wait_estimate(self, place: int) -> float:
        """About how long the ``place``-th waiting request waits: the slots free up one typical
        request's time apart, ``max_batch_size`` at a time."""
        typical = sum(self._latencies) / len(self._latencies) if self._latencies else 5.0
        return typical * math.ceil(place / self.config.max_batch_size)

    def _release(self, ticket: _Ticket) -> None:
        self._active.discard(ticket)

    def _retry_hint(self) -> float:
        typical = sum(self._latencies) / len(self._latencies) if self._latencies else 5.0
        return max(1.0, min(60.0, typical * len(self._active) / 2))

    def _timeout(self, timeout: float | None) -> float:
        return self.config.request_timeout_s if timeout is None else timeout

    # -- generation ------------------------------------------------------------------------------

    def params(self, values: dict[str, object] | None = None) -> GenerationParams:
        return GenerationParams.from_values(values, max_new_tokens_cap=self.config.max_new_tokens_cap)

    def _check_request(self, request: GenerationRequest) -> None:
        cap = self.config.max_new_tokens_cap
        if request.params.max_new_tokens > cap:
            raise ValidationError(
                f"`max_new_tokens` must be in [1, {cap}], got {request.params.max_new_tokens}"
            )
        if request.model is not None:
            self._check_model(request.model)
        name = request.model or self.config.default_model
        if self._desk.kind(name) == "seq2seq":
            raise ModelUnavailableError(
                f"model `{name}` is a sequence-to-sequence model: it writes summaries and "
                "translations (`/summarize`, `/translate`), not continuations"
            )

    def _check_model(self, name: str) -> None:
        if name not in self._registry.names:
            raise ValidationError(f"unknown model `{name}`; available: {', '.join(self._registry.names)}")

    def stream(self, request: GenerationRequest, *, timeout: float | None = None) -> GenerationStream:
        self._check_request(request)
        return self._open_stream(request, timeout)

    def _open_stream(self, request: GenerationRequest, timeout: float | None = None) -> GenerationStream:
        # A seed for every request, reported in its result: the same seed and settings redo it.
        request = dataclasses.replace(request, params=request.params.seeded())
        return GenerationStream(self, request, self._timeout(timeout))

    async def generate(self, request: GenerationRequest, *, timeout: float | None = None) -> GenerationResult:
        stream = self.stream(request, timeout=timeout)
        async for _ in stream:
            pass
        assert stream.result is not None
        return stream.result

    def _scheduler_submit(self, job: Job | FillJob) -> None:
        if self._scheduler is None:
            raise InternalError("the model service is not running: call start() first")
        if isinstance(job, FillJob):
            self._scheduler.submit_fill(job)
        else:
            self._scheduler.submit(job)

    def _record(self, elapsed: float, tokens: int) -> None:
        self._latencies.append(elapsed)
        self._samples.finished(elapsed)
        if elapsed > 0 and tokens:
            self._token_rates.append(tokens / elapsed)

    def take_sample(self) -> None:
        """Note the throughput, queue depth and latency now (every ``SAMPLE_EVERY_S``, for /status)."""
        live = self._scheduler.tokens_per_s() if self._scheduler else None
        self._samples.take(time.monotonic(), live, len(self._active))

    async def _sample_every(self) -> None:
        while True:
            self.take_sample()
            await asyncio.sleep(self._samples.every_s)

    # -- fill-mask ------------------------------------------------------------------------------

    async def fill_mask(self, request: FillMaskRequest) -> FillMaskResult:
        """Fill the blank; requests waiting on one model are filled together."""
        name = request.model or self.config.fill_model or self.config.default_model
        self._check_model(name)
        ticket = self._admit(self.config.request_timeout_s)
        job = FillJob(request=request, model=name, should_stop=ticket.should_stop, started=ticket.started)
        try:
            self._scheduler_submit(job)
            await self._wait_started(ticket, job.result)
            return await job.result
        finally:
            ticket.cancelled.set()  # the batch skips the rest of its work
            self._release(ticket)

    # -- the other Auto classes' tasks (routed and batched by the task desk) ----------------------

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResult:
        """The tokenizer's view of a text: tokens, ids, attention mask, token type ids."""
        return await self._desk.tokenize(request)

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        return await self._desk.classify(request)

    async def entities(self, request: EntitiesRequest) -> EntitiesResult:
        return await self._desk.entities(request)

    async def answer(self, request: AnswerRequest) -> AnswerResult:
        return await self._desk.answer(request)

    async def similar(self, request: SimilarRequest) -> SimilarResult:
        return await self._desk.similar(request)

    async def rewrite(self, request: RewriteRequest) -> TaskTextStream:
        """A summary or a translation, streamed; the stream says which model writes it, and how."""
        return await self._desk.rewrite(request)

    # -- inside the model: its probabilities (ProbabilitiesAPI) --------------------------------------

    async def next_tokens(self, request: NextTokenRequest) -> NextTokenResult:
        """The likeliest next tokens after a prompt, each with its probability, on any engine."""
        name = request.model or self.config.default_model
        self._check_model(name)
        ticket = self._admit(self.config.request_timeout_s)
        try:
            return await self._probabilities.next_tokens(name, request)
        finally:
            self._release(ticket)

    async def token_probabilities(self, request: TokenProbabilitiesRequest) -> TokenProbabilitiesResult:
        """The probability the model gave each token of a text it wrote (one forward, after the fact)."""
        name = request.request.model or self.config.default_model
        self._check_model(name)
        ticket = self._admit(self.config.request_timeout_s)
        try:
            return await self._probabilities.token_probabilities(name, request)
        finally:
            self._release(ticket)

    def tasks(self) -> tuple[TaskModels, ...]:
        """Which models do each task here (or stand in for it), as detected at start."""
        return self._desk.available()

    # -- introspection ----------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        return self._registry.names

    def status(self) -> ServiceStatus:
        llama = tuple(
            ModelInfo(
                name=m.name,
                source=m.source.label,
                task="generate",
                device=f"cpu, {m.threads} threads, {m.slots} slots",
                dtype=m.quantization,
                parameters=m.parameters,
                engine="llama.cpp",
            )
            for m in self._llama.loaded()
        )
        llama = self._remote.infos() + llama  # and the remote models, first, answering or not
        served = {m.name for m in llama}
        models = llama + tuple(
            ModelInfo(
                name=m.name,
                source=m.source.label,
                task=self._serves(m, served),
                device=str(m.device),
                dtype=str(m.dtype).removeprefix("torch."),
                parameters=m.parameters,
                engine="transformers",
            )
            for m in self._registry.loaded()
        )
        latency = sum(self._latencies) / len(self._latencies) if self._latencies else None
        live = self._scheduler.tokens_per_s() if self._scheduler else None
        rate = (
            live
            if live is not None
            else (sum(self._token_rates) / len(self._token_rates) if self._token_rates else None)
        )
        running = self._scheduler.running if self._scheduler else 0
        return ServiceStatus(
            models=models,
            catalog=tuple(self._registry.names),
            queue_depth=len(self._active),
            queue_limit=self.config.queue_limit,
            running=running,
            batch_size=running,
            recent_latency_s=latency,
            tokens_per_s=rate,
            uptime_s=time.monotonic() - self._started_at if self._executor else 0.0,
            filling=self._scheduler.filling if self._scheduler else 0,
            waiting=self._scheduler.waiting if self._scheduler else 0,
            oldest_wait_s=self._scheduler.oldest_wait_s() if self._scheduler else 0.0,
            shares=tuple(
                sorted(
                    (self._scheduler.waiting_shares() if self._scheduler else {}).items(),
                    key=lambda kv: -kv[1],
                )
            ),
            samples=self._samples.samples(time.monotonic()),
            sample_interval_s=self._samples.every_s,
            sample_span_s=self._samples.span_s,
        )

    def _serves(self, loaded: LoadedModel, served: set[str]) -> str:
        """What a loaded model does here, in words, for /status."""
        if loaded.head == "masked":
            return "fill-mask (masked LM)"
        if loaded.head == "causal":
            return "fill-mask" if loaded.name in served else "generate, fill-mask"
        if loaded.head == "seq2seq":
            return ", ".join(kinds.seq2seq_tasks(loaded.model.config, None))
        return {
            "sequence-classification": "classify",
            "token-classification": "entities",
            "question-answering": "answer",
            "features": "similar",
        }[loaded.head]
