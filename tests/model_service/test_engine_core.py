"""The engine core carrying out the plan on a real tiny model: requests share steps, each row keeps its own settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from model_service import (
    FillMaskRequest,
    FillMaskResult,
    GenerationParams,
    GenerationRequest,
    ValidationError,
)
from model_service.batching import Batch
from model_service.fill_mask import FillBatch
from model_service.service import ModelService
from tests.conftest import service_config

PROMPT = "Once upon a time"


def request(max_new_tokens: int, prompt: str = PROMPT, **values: Any) -> GenerationRequest:
    params = GenerationParams.from_values({"max_new_tokens": max_new_tokens, **values})
    return GenerationRequest(prompt, params)


@pytest.fixture
async def batched(tiny_gpt2_dir: Path) -> AsyncIterator[ModelService]:
    config = service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=True, max_batch_size=4, queue_limit=8)
    async with ModelService(config) as running:
        yield running


async def test_a_greedy_row_beside_hot_sampled_rows_reads_as_it_does_alone(batched: ModelService) -> None:
    alone = await batched.generate(request(24, temperature=0))
    hot = [
        batched.generate(request(24, prompt, temperature=1.5, top_p=1.0, top_k=0, repetition_penalty=1.3))
        for prompt in ("The dog", "A long time ago in a land far away there lived", "She")
    ]
    results = await asyncio.gather(batched.generate(request(24, temperature=0)), *hot)
    assert results[0].text == alone.text
    # The hot rows really ran beside it, with their own settings: they don't read like the greedy row.
    assert all(r.generated_tokens > 0 for r in results[1:])
    assert any(r.text != alone.text for r in results[1:])


async def test_each_row_stops_on_its_own_length(batched: ModelService) -> None:
    results = await asyncio.gather(*(batched.generate(request(n, temperature=0)) for n in (3, 9, 17)))
    assert [r.generated_tokens for r in results] == [3, 9, 17]
    assert all(r.finish_reason == "length" for r in results)


async def test_a_seeded_row_repeats_whatever_runs_beside_it(batched: ModelService) -> None:
    alone = await batched.generate(request(16, temperature=1.0, seed=7))
    crowd = [batched.generate(request(16, "The cat", temperature=1.2)) for _ in range(3)]
    again, *_ = await asyncio.gather(batched.generate(request(16, temperature=1.0, seed=7)), *crowd)
    assert again.text == alone.text


async def test_a_late_request_starts_before_the_earlier_one_finishes(batched: ModelService) -> None:
    early = batched.stream(request(120, temperature=0))
    first_text = asyncio.Event()

    async def read_early() -> None:
        async for _ in early:
            first_text.set()

    reader = asyncio.create_task(read_early())
    await asyncio.wait_for(first_text.wait(), timeout=10)
    late = await batched.generate(request(4, "The dog", temperature=0))
    assert late.generated_tokens == 4
    assert not reader.done(), "the late request waited for the early one to finish"
    await reader
    assert early.result is not None and early.result.generated_tokens == 120


async def test_a_cancelled_row_frees_its_slot_for_a_waiting_request(tiny_gpt2_dir: Path) -> None:
    config = service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=True, max_batch_size=1, queue_limit=4)
    async with ModelService(config) as service:
        first = service.stream(request(200, temperature=0))
        iterator = aiter(first)
        await anext(iterator)
        waiting = asyncio.create_task(service.generate(request(3, "The dog", temperature=0)))
        for _ in range(3):  # a few loop turns: the request is submitted, far fewer than 200 steps
            await asyncio.sleep(0)
        assert service.status().running == 1
        assert not waiting.done(), "with one slot, the second request should wait"
        await first.aclose()
        result = await asyncio.wait_for(waiting, timeout=10)
        assert result.generated_tokens == 3
        assert first.result is None or first.result.finish_reason == "cancelled"


async def test_status_reports_the_batch_while_rows_run(batched: ModelService) -> None:
    streams = [batched.stream(request(60, temperature=0)) for _ in range(3)]
    tasks = [asyncio.create_task(_drain(s)) for s in streams]
    seen = 0
    for _ in range(400):
        seen = max(seen, batched.status().batch_size)
        if seen == 3:
            break
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)
    assert seen == 3
    status = batched.status()
    assert status.batch_size == 0 and status.queue_depth == 0
    assert status.tokens_per_s is not None and status.tokens_per_s > 0


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


# -- fill-mask ------------------------------------------------------------------------------------

FILL_TEXTS = (
    "The capital of France is [MASK].",
    "The [MASK] barked at the mailman.",
    "She played the [MASK] at the concert.",
    "[MASK] is the largest planet.",
)


def _count_fill_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the fill batches the scheduler makes, in order."""
    sizes: list[int] = []
    original = FillBatch.__init__

    def counting(self: FillBatch, loaded: Any, tasks: Any) -> None:
        sizes.append(len(tasks))
        original(self, loaded, tasks)

    monkeypatch.setattr(FillBatch, "__init__", counting)
    return sizes


async def test_fill_requests_arriving_together_are_filled_together(
    batched: ModelService, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = [await batched.fill_mask(FillMaskRequest(text, top_k=3)) for text in FILL_TEXTS]
    sizes = _count_fill_batches(monkeypatch)
    together = await asyncio.gather(
        *(batched.fill_mask(FillMaskRequest(text, top_k=3)) for text in FILL_TEXTS)
    )
    assert sizes == [4]
    for one, many in zip(alone, together, strict=True):
        assert [p.token for p in many.predictions] == [p.token for p in one.predictions]
        assert [p.score for p in many.predictions] == pytest.approx(
            [p.score for p in one.predictions], abs=1e-4
        )
    assert batched.status().queue_depth == 0


async def test_a_bad_fill_request_fails_alone_in_its_batch(batched: ModelService) -> None:
    long_text = "word " * 300 + "The [MASK] barked."
    good, bad = await asyncio.gather(
        batched.fill_mask(FillMaskRequest(FILL_TEXTS[0])),
        batched.fill_mask(FillMaskRequest(long_text)),
        return_exceptions=True,
    )
    assert isinstance(good, FillMaskResult) and good.predictions
    assert isinstance(bad, ValidationError) and "too long" in bad.message


async def test_generation_goes_on_between_a_fills_forward_passes(
    batched: ModelService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fill is worked one forward per turn: a running generation steps between them."""
    monkeypatch.setattr("model_service.fill_mask.FORWARD_TOKENS", 32)  # many small forwards
    order: list[str] = []
    for cls, name in ((FillBatch, "fill"), (Batch, "step")):
        original = cls.advance if cls is FillBatch else cls.step

        def noting(self: Any, *args: Any, _name: str = name, _original: Any = original) -> Any:
            order.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(cls, "advance" if cls is FillBatch else "step", noting)
    stream = batched.stream(request(240, temperature=0))
    reader = asyncio.create_task(_drain(stream))
    await asyncio.gather(*(batched.fill_mask(FillMaskRequest(text)) for text in FILL_TEXTS))
    generating = not reader.done()
    await stream.aclose()
    await asyncio.gather(reader, return_exceptions=True)
    assert generating, "the stream ended before the fills did; the test needs a longer one"
    fills = [i for i, what in enumerate(order) if what == "fill"]
    assert len(fills) > 3
    assert all(order[i + 1] == "step" for i in fills[:-1]), "two fill forwards ran with no step between"


async def test_a_cancelled_fill_frees_its_slot(tiny_gpt2_dir: Path) -> None:
    config = service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=True, queue_limit=1)
    async with ModelService(config) as service:
        first = asyncio.create_task(service.fill_mask(FillMaskRequest(FILL_TEXTS[0])))
        await asyncio.sleep(0)
        assert service.status().queue_depth == 1
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        assert service.status().queue_depth == 0
        result = await asyncio.wait_for(service.fill_mask(FillMaskRequest(FILL_TEXTS[1])), timeout=30)
        assert result.predictions


async def test_status_reports_the_fills_in_progress(
    batched: ModelService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("model_service.fill_mask.FORWARD_TOKENS", 32)  # a fill of many turns
    fills = asyncio.gather(*(batched.fill_mask(FillMaskRequest(text)) for text in FILL_TEXTS[:3]))
    seen = 0
    while not fills.done():
        seen = max(seen, batched.status().filling)
        await asyncio.sleep(0.002)
    await fills
    assert seen == 3
    # Each fill is answered as soon as its rows are scored; the batch is let go just after.
    for _ in range(500):
        if batched.status().filling == 0:
            break
        await asyncio.sleep(0.002)
    assert batched.status().filling == 0
