"""llama.cpp's thread count follows the CPU other processes leave free (``ThreadGovernor``):
fewer threads beside a busy neighbour, all of them again once it is gone, never on a short burst;
the switch serves the model anew while running rows finish, and greedy text stays the same."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from model_service.engines import llamacpp
from model_service.engines.cpu_share import CpuReading, ThreadGovernor, read_cpu, threads_for
from model_service.service import ModelService
from model_service.types import GenerationParams, GenerationRequest
from tests.fixtures.tiny_models import service_config


class Machine:
    """A fake kernel: time passes and the machine's busy seconds grow as told."""

    def __init__(self) -> None:
        self.at = 0.0
        self.busy = 0.0
        self.own = 0.0

    def read(self) -> CpuReading:
        return CpuReading(self.at, self.busy, self.own)

    def run(self, seconds: float, *, others: float, own: float = 1.0) -> None:
        self.at += seconds
        self.own += own * seconds
        self.busy += (own + others) * seconds


def test_one_thread_per_core_others_leave_free() -> None:
    assert [threads_for(2, o) for o in (0.0, 0.3, 0.7, 1.0, 1.9, 5.0)] == [2, 2, 1, 1, 1, 1]
    assert [threads_for(8, o) for o in (0.0, 1.0, 2.6, 7.5)] == [8, 7, 5, 1]
    assert threads_for(1, 0.0) == 1


def test_a_lasting_neighbour_takes_a_thread_and_gives_it_back_when_gone() -> None:
    machine = Machine()
    governor = ThreadGovernor(2, window_s=2.0, settle_s=4.0, read=machine.read)
    machine.run(2.0, others=0.0, own=2.0)
    assert governor.threads() == 2
    machine.run(2.0, others=0.7, own=1.3)  # the neighbour starts: one window is not enough
    assert governor.threads() == 2
    machine.run(2.0, others=0.7, own=1.3)
    assert governor.threads() == 1 and governor.others == pytest.approx(0.7)
    machine.run(2.0, others=1.0)
    assert governor.threads() == 1
    machine.run(2.0, others=0.0, own=1.0)  # gone: again only once it has held
    assert governor.threads() == 1
    machine.run(2.0, others=0.0, own=1.0)
    assert governor.threads() == 2


def test_a_short_burst_elsewhere_changes_nothing() -> None:
    machine = Machine()
    governor = ThreadGovernor(2, window_s=2.0, settle_s=4.0, read=machine.read)
    for others in (0.0, 1.0, 0.0, 1.0, 0.1):
        machine.run(2.0, others=others)
        assert governor.threads() == 2


def test_it_samples_at_most_once_a_window_and_a_long_window_counts_whole() -> None:
    machine = Machine()
    governor = ThreadGovernor(2, window_s=2.0, settle_s=4.0, read=machine.read)
    machine.run(1.0, others=2.0)
    assert governor.threads() == 2 and governor.others == 0.0  # too soon to say
    machine.run(5.0, others=1.0)  # the bot was idle while a neighbour ran for 6 s
    assert governor.threads() == 1


def test_where_the_kernel_says_nothing_it_keeps_one_thread_per_core() -> None:
    governor = ThreadGovernor(4, read=lambda: None)
    assert governor.threads() == 4


def test_the_kernel_shows_a_busy_neighbour_as_another_process_taking_a_core() -> None:
    before = read_cpu()
    assert before is not None
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.5)
    finally:
        hog.kill()
        hog.wait()
    after = read_cpu()
    assert after is not None
    span = after.at - before.at
    others = (after.machine_busy_s - before.machine_busy_s) - (after.own_s - before.own_s)
    assert others / span > 0.5  # most of a core, though this process slept


def greedy(prompt: str = "Once upon a time") -> GenerationRequest:
    return GenerationRequest(prompt, GenerationParams.from_values({"temperature": 0, "max_new_tokens": 24}))


async def test_the_engine_follows_the_neighbour_with_the_same_greedy_text(
    tiny_gguf_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Machine()

    def governor(cores: int) -> ThreadGovernor:
        return ThreadGovernor(2, window_s=2.0, settle_s=4.0, read=machine.read)

    monkeypatch.setattr(llamacpp, "ThreadGovernor", governor)
    config = service_config({"tiny": tiny_gguf_path}, engines={"tiny": "llama.cpp"}, llama_context=256)
    assert config.threads == 0  # the default: one per core, following the machine
    async with ModelService(config) as service:
        alone = (await service.generate(greedy())).text
        assert [m.device for m in service.status().models] == ["cpu, 2 threads, 8 slots"]
        running = asyncio.ensure_future(service.generate(greedy("A row in flight")))
        machine.run(6.0, others=1.0)
        after: Any = await service.generate(greedy())
        assert after.text == alone
        assert [m.device for m in service.status().models] == ["cpu, 1 threads, 8 slots"]
        assert (await running).generated_tokens > 0  # finished on the server it started on
        machine.run(6.0, others=0.0)
        assert (await service.generate(greedy())).text == alone
        assert [m.device for m in service.status().models] == ["cpu, 2 threads, 8 slots"]


async def test_a_fixed_thread_count_is_kept_whatever_the_machine_does(
    tiny_gguf_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[int] = []
    monkeypatch.setattr(llamacpp, "ThreadGovernor", lambda cores: made.append(cores))
    config = service_config(
        {"tiny": tiny_gguf_path}, engines={"tiny": "llama.cpp"}, llama_context=256, threads=2
    )
    async with ModelService(config) as service:
        await service.generate(greedy())
        assert [m.device for m in service.status().models] == ["cpu, 2 threads, 8 slots"]
    assert made == []  # MODEL_THREADS set: no governor at all
