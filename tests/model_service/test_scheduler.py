"""The scheduler's behaviour: requests share steps, each row keeps its own settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from model_service import GenerationParams, GenerationRequest
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
        await asyncio.sleep(0.2)
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
