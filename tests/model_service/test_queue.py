"""The queue through the whole service: requests beyond the slots wait and know their place, take
turns by group and member, can be stopped while waiting, and one that could not start before its
deadline is refused at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from transformers import GPT2LMHeadModel

from model_service import OverloadedError, shares
from model_service.service import GenerationStream, ModelService
from model_service.shares import Share
from model_service.types import GenerationParams, GenerationRequest
from tests.fixtures.tiny_models import service_config

STEP_S = 0.02  # each forward of the tiny model takes at least this long here


@pytest.fixture
def slow_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    original = GPT2LMHeadModel.forward

    def forward(self: GPT2LMHeadModel, *args: Any, **kwargs: Any) -> Any:
        time.sleep(STEP_S)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GPT2LMHeadModel, "forward", forward)


@pytest.fixture
async def service(tiny_gpt2_dir: Path, slow_forward: None) -> AsyncIterator[ModelService]:
    async with ModelService(service_config({"tiny": tiny_gpt2_dir}, max_batch_size=1)) as started:
        yield started


def request(tokens: int = 20) -> GenerationRequest:
    return GenerationRequest(
        "Once upon a time", GenerationParams.from_values({"temperature": 0, "max_new_tokens": tokens})
    )


async def started_at(stream: GenerationStream, log: list[str], name: str) -> None:
    async for _ in stream:
        if name not in log:
            log.append(name)


async def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_waiting_requests_know_their_place_and_a_stop_takes_one_out(service: ModelService) -> None:
    streams = [service.stream(request()) for _ in range(4)]
    order: list[str] = []
    tasks = [asyncio.create_task(started_at(s, order, str(i))) for i, s in enumerate(streams)]
    await wait_for(lambda: streams[3].queue_place() is not None)
    assert streams[0].queue_place() is None  # running
    places = [s.queue_place() for s in streams[1:]]
    assert [p[0] for p in places if p] == [1, 2, 3]
    assert all(p[1] > 0 for p in places if p) and places[0][1] <= places[2][1]  # type: ignore[index]
    assert service.status().waiting == 3 and service.status().oldest_wait_s > 0
    await streams[2].aclose()  # Stop while waiting
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == ["0", "1", "3"]
    assert streams[2].result is None or streams[2].result.generated_tokens == 0


async def test_channels_take_turns_through_the_service(service: ModelService) -> None:
    order: list[str] = []

    async def ask(group: str, name: str) -> None:
        shares.asking(Share(group, name))  # as the bot does for each command's task
        await started_at(service.stream(request(8)), order, name)

    flood = [asyncio.create_task(ask("flood", f"f{i}")) for i in range(5)]
    await wait_for(lambda: service.status().waiting == 4)
    lone = asyncio.create_task(ask("quiet", "lone"))
    await asyncio.gather(*flood, lone)
    assert order.index("lone") <= 2  # f0 ran, then at most one more of the flood
    assert sorted(order) == sorted([*(f"f{i}" for i in range(5)), "lone"])


async def test_a_request_that_could_not_start_before_its_deadline_is_refused_at_once(
    service: ModelService,
) -> None:
    await service.generate(request(20))  # a typical request, for the estimate
    typical = service.status().recent_latency_s
    assert typical is not None
    running = [asyncio.create_task(service.generate(request(20))) for _ in range(5)]
    await wait_for(lambda: service.status().waiting == 4)
    started = time.monotonic()
    with pytest.raises(OverloadedError, match=r"the queue is 4 requests long, about \d+ s, longer than"):
        service.stream(request(20), timeout=typical * 2)  # 5 typical requests ahead of it
    assert time.monotonic() - started < 0.1  # at once, not after the deadline
    patient = service.stream(request(20), timeout=typical * 20)  # with time enough, it may wait
    await patient.aclose()
    await asyncio.gather(*running)
