"""The async facade as the bot feels it: lifecycle, a bounded queue, timeouts, cancellation,
failures that stay contained, and an event loop that keeps answering while the model works."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from transformers import GPT2LMHeadModel

from model_service.api import ModelServiceAPI, TextStream
from model_service.errors import (
    ErrorKind,
    InternalError,
    ModelUnavailableError,
    OverloadedError,
    RequestTimeoutError,
    ValidationError,
)
from model_service.service import GenerationStream, ModelService
from model_service.types import FillMaskRequest, GenerationParams, GenerationRequest, GenerationResult
from tests.fixtures.tiny_models import service_config

PROMPT = "Once upon a time"
LONG = 200  # new tokens: seconds of work once each forward is slowed down


def greedy(max_new_tokens: int, **values: Any) -> GenerationRequest:
    return GenerationRequest(
        PROMPT, GenerationParams.from_values({"temperature": 0, "max_new_tokens": max_new_tokens, **values})
    )


class Forwards:
    """Counts the model's forward calls; can slow each one down or make one of them fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.delay = 0.0
        self.fail_at: int | None = None

    def before(self) -> None:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (simulated)")
        if self.delay:
            time.sleep(self.delay)


@pytest.fixture
def forwards(monkeypatch: pytest.MonkeyPatch) -> Forwards:
    counter = Forwards()
    original = GPT2LMHeadModel.forward

    @functools.wraps(original)
    def forward(self: GPT2LMHeadModel, *args: Any, **kwargs: Any) -> Any:
        counter.before()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GPT2LMHeadModel, "forward", forward)
    return counter


@pytest.fixture
async def service(tiny_gpt2_dir: Path) -> AsyncIterator[ModelService]:
    async with ModelService(service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=True)) as running:
        yield running


@pytest.fixture
async def small_queue(tiny_gpt2_dir: Path) -> AsyncIterator[ModelService]:
    config = service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=True, queue_limit=2)
    async with ModelService(config) as running:
        yield running


@pytest.fixture
async def serial(tiny_gpt2_dir: Path) -> AsyncIterator[ModelService]:
    """One row per batch: a second request must wait in the queue for the first."""
    config = service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=True, max_batch_size=1)
    async with ModelService(config) as running:
        yield running


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


class Reader:
    """Consumes a stream in its own task, the way a cog edits a Discord message as text arrives."""

    def __init__(self, stream: GenerationStream) -> None:
        self.stream = stream
        self.deltas: list[str] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> GenerationResult | None:
        async for delta in self.stream:
            self.deltas.append(delta)
        return self.stream.result

    async def started(self) -> None:
        await wait_until(lambda: bool(self.deltas))


# -- lifecycle ---------------------------------------------------------------------------------


async def test_requests_before_start_get_a_clear_error(tiny_gpt2_dir: Path) -> None:
    service = ModelService(service_config({"tiny-gpt2": tiny_gpt2_dir}))
    assert not service.started
    with pytest.raises(InternalError, match=r"not running: call start\(\) first"):
        await service.generate(greedy(5))
    with pytest.raises(InternalError, match=r"call start\(\) first"):
        async for _ in service.stream(greedy(5)):
            pass
    with pytest.raises(InternalError, match=r"call start\(\) first"):
        await service.fill_mask(FillMaskRequest("The [MASK] barked."))
    status = service.status()
    assert (status.models, status.queue_depth, status.uptime_s) == ((), 0, 0.0)


async def test_async_with_starts_and_stops(tiny_gpt2_dir: Path) -> None:
    service = ModelService(service_config({"tiny-gpt2": tiny_gpt2_dir}))
    async with service as running:
        assert running is service and service.started
        assert await service.start() is service  # starting twice is harmless
        assert (await service.generate(greedy(3))).generated_tokens == 3
    assert not service.started
    with pytest.raises(InternalError, match="not running"):
        await service.generate(greedy(3))
    await service.close()  # closing twice is harmless


async def test_the_service_satisfies_the_protocol_cogs_use(service: ModelService) -> None:
    assert isinstance(service, ModelServiceAPI)
    stream = service.stream(greedy(3))
    try:
        assert isinstance(stream, TextStream)
    finally:
        await stream.aclose()
    assert service.status().queue_depth == 0


async def test_preload_loads_the_default_model_at_start(tiny_gpt2_dir: Path) -> None:
    lazy = ModelService(service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=False))
    async with lazy:
        assert lazy.status().models == ()
        await lazy.generate(greedy(2))
        assert [m.name for m in lazy.status().models] == ["tiny-gpt2"]
    eager = ModelService(service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=True))
    async with eager:
        assert [m.name for m in eager.status().models] == ["tiny-gpt2"]


async def test_preload_of_an_unusable_model_fails_start_with_the_reason(no_head_dir: Path) -> None:
    service = ModelService(service_config({"vision": no_head_dir}, preload=True))
    try:
        with pytest.raises(ModelUnavailableError, match="can't generate text: it has no causal LM head"):
            await service.start()
    finally:
        await service.close()


async def test_a_failed_start_leaves_the_service_stopped(no_head_dir: Path) -> None:
    service = ModelService(service_config({"vision": no_head_dir}, preload=True))
    try:
        with pytest.raises(ModelUnavailableError):
            await service.start()
        assert not service.started
    finally:
        await service.close()


async def test_unusable_model_on_demand_is_a_model_error_not_a_crash(
    tiny_gpt2_dir: Path, no_head_dir: Path
) -> None:
    config = service_config({"tiny-gpt2": tiny_gpt2_dir, "vision": no_head_dir}, preload=False)
    async with ModelService(config) as service:
        with pytest.raises(ModelUnavailableError) as caught:
            await service.generate(GenerationRequest(PROMPT, model="vision"))
        assert caught.value.kind is ErrorKind.MODEL_UNAVAILABLE
        assert str(no_head_dir) in caught.value.message
        assert service.status().queue_depth == 0
        assert (await service.generate(greedy(3))).model == "tiny-gpt2"


async def test_requests_are_checked_against_the_service(service: ModelService) -> None:
    with pytest.raises(ValidationError, match="unknown model `other`; available: tiny-gpt2"):
        service.stream(GenerationRequest(PROMPT, model="other"))
    cap = service.config.max_new_tokens_cap
    with pytest.raises(ValidationError, match=rf"`max_new_tokens` must be in \[1, {cap}\], got {cap + 1}"):
        await service.generate(GenerationRequest(PROMPT, GenerationParams(max_new_tokens=cap + 1)))
    with pytest.raises(ValidationError, match=rf"\[1, {cap}\]"):
        service.params({"max_new_tokens": cap + 1})
    assert service.model_names() == ["tiny-gpt2"]


async def test_status_reports_model_device_and_queue(service: ModelService, forwards: Forwards) -> None:
    status = service.status()
    (info,) = status.models
    assert (info.name, info.device, info.dtype, info.task) == (
        "tiny-gpt2",
        "cpu",
        "float32",
        "generate, fill-mask",
    )
    assert info.source == str(service.config.models["tiny-gpt2"])
    assert 10_000 < info.parameters < 1_000_000
    assert (status.catalog, status.queue_depth, status.queue_limit, status.running) == (
        ("tiny-gpt2",),
        0,
        256,
        0,
    )
    assert status.recent_latency_s is None and status.tokens_per_s is None

    forwards.delay = 0.01
    reader = Reader(service.stream(greedy(LONG)))
    await reader.started()
    busy = service.status()
    assert (busy.queue_depth, busy.running, busy.batch_size) == (1, 1, 1)
    reader.task.cancel()
    await asyncio.gather(reader.task, return_exceptions=True)

    forwards.delay = 0.0
    await service.generate(greedy(20))
    done = service.status()
    assert (done.queue_depth, done.running) == (0, 0)
    assert done.recent_latency_s is not None and done.recent_latency_s > 0
    assert done.tokens_per_s is not None and done.tokens_per_s > 0
    assert done.uptime_s > 0


async def test_bfloat16_service_reports_and_generates_in_bfloat16(tiny_gpt2_dir: Path) -> None:
    config = service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=True, dtype="bfloat16")
    async with ModelService(config) as service:
        (info,) = service.status().models
        assert (info.dtype, info.device) == ("bfloat16", "cpu")
        result = await service.generate(greedy(8))
        assert result.generated_tokens == 8


# -- a bounded queue ---------------------------------------------------------------------------


async def test_full_queue_refuses_at_once_with_retry_after(
    small_queue: ModelService, forwards: Forwards
) -> None:
    forwards.delay = 0.02
    readers = [Reader(small_queue.stream(greedy(LONG))) for _ in range(2)]
    await readers[0].started()
    await wait_until(lambda: small_queue.status().queue_depth == 2)

    started = time.monotonic()
    with pytest.raises(OverloadedError) as caught:
        await small_queue.generate(greedy(5))
    assert time.monotonic() - started < 0.5  # refused at once, not queued behind 8 s of work
    assert caught.value.kind is ErrorKind.OVERLOADED
    assert caught.value.retry_after is not None and caught.value.retry_after > 0
    assert "busy" in caught.value.message
    with pytest.raises(OverloadedError):
        await small_queue.fill_mask(FillMaskRequest("The [MASK] barked."))

    for reader in readers:
        reader.task.cancel()
    await asyncio.gather(*(r.task for r in readers), return_exceptions=True)
    assert small_queue.status().queue_depth == 0
    forwards.delay = 0.0
    assert (await small_queue.generate(greedy(5))).finish_reason == "length"


# -- timeouts ----------------------------------------------------------------------------------


async def test_timeout_returns_the_partial_text(service: ModelService, forwards: Forwards) -> None:
    full = (await service.generate(greedy(LONG))).text
    forwards.delay = 0.02
    started = time.monotonic()
    result = await service.generate(greedy(LONG), timeout=0.5)
    assert time.monotonic() - started < 2.0  # LONG tokens would take 4 s
    assert result.finish_reason == "timeout" and result.timed_out
    assert 0 < result.generated_tokens < LONG
    assert result.text and full.startswith(result.text)


async def test_timeout_while_waiting_in_the_queue(serial: ModelService, forwards: Forwards) -> None:
    forwards.delay = 0.02
    busy = Reader(serial.stream(greedy(50)))  # about 1 s of work ahead of ours
    await busy.started()
    with pytest.raises(RequestTimeoutError, match="timed out while waiting for the model"):
        await serial.generate(greedy(5), timeout=0.1)
    result = await busy.task
    assert result is not None and result.finish_reason == "length"
    assert serial.status().queue_depth == 0


async def test_timeout_in_the_queue_is_told_on_time(serial: ModelService, forwards: Forwards) -> None:
    forwards.delay = 0.02
    busy = Reader(serial.stream(greedy(LONG)))  # about 4 s of work ahead of ours
    await busy.started()
    waiting = asyncio.create_task(serial.generate(greedy(5), timeout=0.2))
    done, _ = await asyncio.wait({waiting}, timeout=1.0)
    busy.task.cancel()
    await asyncio.gather(busy.task, waiting, return_exceptions=True)
    assert waiting in done, "still waiting 1 s after a 0.2 s timeout"
    assert isinstance(waiting.exception(), RequestTimeoutError)


# -- cancellation ------------------------------------------------------------------------------


async def assert_worker_is_free(service: ModelService, forwards: Forwards) -> None:
    calls = forwards.calls
    await asyncio.sleep(0.1)
    assert forwards.calls == calls, "the model kept working after the request was dropped"
    assert service.status().queue_depth == 0
    started = time.monotonic()
    result = await service.generate(greedy(5))
    assert result.generated_tokens == 5
    assert time.monotonic() - started < 1.0  # 5 slowed tokens, not the rest of the old request


async def test_closing_a_stream_stops_generation(service: ModelService, forwards: Forwards) -> None:
    forwards.delay = 0.02
    stream = service.stream(greedy(LONG))
    received = []
    async for delta in stream:
        received.append(delta)
        if len(received) == 3:
            break
    calls_at_close = forwards.calls
    started = time.monotonic()
    await stream.aclose()
    assert time.monotonic() - started < 0.5
    assert forwards.calls - calls_at_close <= 2  # stops within a token or two
    assert stream.result is None
    await assert_worker_is_free(service, forwards)


async def test_cancelling_the_reader_stops_generation(service: ModelService, forwards: Forwards) -> None:
    forwards.delay = 0.02
    reader = Reader(service.stream(greedy(LONG)))
    await reader.started()
    calls_at_cancel = forwards.calls
    reader.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader.task
    assert forwards.calls - calls_at_cancel <= 2
    await assert_worker_is_free(service, forwards)


async def test_aclose_from_another_task_stops_the_reader(service: ModelService, forwards: Forwards) -> None:
    forwards.delay = 0.02
    reader = Reader(service.stream(greedy(LONG)))
    await reader.started()
    try:
        await reader.stream.aclose()
        done, _ = await asyncio.wait({reader.task}, timeout=1.0)
        assert reader.task in done
    finally:
        reader.task.cancel()
        await asyncio.gather(reader.task, return_exceptions=True)


async def test_a_stop_from_another_task_keeps_the_text_so_far(
    service: ModelService, forwards: Forwards
) -> None:
    """A Stop button: the reader is busy between deltas (editing a message) when another task
    closes the stream; it still gets what was written, as a ``cancelled`` result."""
    forwards.delay = 0.02
    stream = service.stream(greedy(LONG))
    deltas: list[str] = []
    between = asyncio.Event()

    async def read() -> GenerationResult | None:
        async for delta in stream:
            deltas.append(delta)
            between.set()
            await asyncio.sleep(0.05)  # the reader is not inside the stream now
        return stream.result

    task = asyncio.create_task(read())
    await between.wait()
    await stream.aclose()
    result = await asyncio.wait_for(task, 2.0)
    assert result is not None and result.finish_reason == "cancelled"
    assert result.text == "".join(deltas) and 0 < result.generated_tokens < LONG
    await assert_worker_is_free(service, forwards)


async def test_a_cancelled_request_frees_its_slot(tiny_gpt2_dir: Path, forwards: Forwards) -> None:
    config = service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=True, queue_limit=1)
    async with ModelService(config) as service:
        forwards.delay = 0.02
        for _ in range(3):  # a leaked slot would refuse the second round
            reader = Reader(service.stream(greedy(LONG)))
            await reader.started()
            reader.task.cancel()
            await asyncio.gather(reader.task, return_exceptions=True)
        forwards.delay = 0.0
        assert (await service.generate(greedy(4))).generated_tokens == 4


async def test_close_cancels_work_in_flight(tiny_gpt2_dir: Path, forwards: Forwards) -> None:
    service = await ModelService(service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=True)).start()
    forwards.delay = 0.02
    running = Reader(service.stream(greedy(LONG)))
    batched = Reader(service.stream(greedy(LONG)))  # decoded together with the first
    await running.started()
    await wait_until(lambda: service.status().queue_depth == 2)
    started = time.monotonic()
    await service.close()
    assert time.monotonic() - started < 1.0  # two requests of LONG tokens would take 8 s
    first, second = await asyncio.gather(running.task, batched.task)
    assert first is not None and first.finish_reason == "cancelled"
    assert 0 < first.generated_tokens < LONG
    assert second is not None and second.finish_reason == "cancelled"
    assert second.generated_tokens < LONG
    assert not service.started


# -- failures stay contained -------------------------------------------------------------------


async def test_model_crash_mid_generation_is_an_internal_error_and_service_survives(
    service: ModelService, forwards: Forwards, caplog: pytest.LogCaptureFixture
) -> None:
    forwards.fail_at = forwards.calls + 6
    reader = Reader(service.stream(greedy(LONG)))
    with caplog.at_level(logging.ERROR, logger="model_service.service"):
        with pytest.raises(InternalError) as caught:
            await reader.task
    assert caught.value.kind is ErrorKind.INTERNAL
    assert caught.value.message == "the model failed while working on this request"
    assert "illegal memory access" not in caught.value.message  # details go to the log
    assert reader.deltas, "the text before the crash was streamed"
    assert any(r.exc_info and "illegal memory access" in str(r.exc_info[1]) for r in caplog.records)
    assert (service.status().queue_depth, service.status().running) == (0, 0)

    forwards.fail_at = None
    assert (await service.generate(greedy(5))).generated_tokens == 5


# -- the event loop keeps answering ------------------------------------------------------------


def spin(seconds: float) -> None:
    """Pure-Python busy work: holds the GIL like generate()'s own Python code does."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_event_loop_stays_responsive_during_generation(
    service: ModelService, forwards: Forwards, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwards.delay = 0.004
    original_before = forwards.before

    def before() -> None:
        original_before()
        spin(0.006)

    monkeypatch.setattr(forwards, "before", before)
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - started - 0.01)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    result = await service.generate(greedy(LONG))
    took = time.perf_counter() - started
    done.set()
    await tick
    assert result.generated_tokens == LONG
    assert took > 1.5  # long enough that a blocked loop would show
    assert len(lags) > 50
    assert max(lags) < 0.1, f"event loop stalled for {max(lags):.3f} s"


async def test_a_fill_past_its_deadline_is_told_so_and_frees_its_slot(
    tiny_gpt2_dir: Path, forwards: Forwards, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("model_service.fill_mask.FORWARD_TOKENS", 32)  # a fill of many forwards
    config = service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=True, request_timeout_s=0.5)
    async with ModelService(config) as service:
        forwards.delay = 0.15
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError, match="timed out while the model worked on it"):
            await service.fill_mask(FillMaskRequest("The capital of France is [MASK]."))
        assert time.monotonic() - started < 1.2  # told at the next forward, not when the fill ends
        assert service.status().queue_depth == 0
        forwards.delay = 0.0  # the same service answers the next one in time
        assert (await service.fill_mask(FillMaskRequest("The [MASK] barked."))).predictions
