"""The last minutes of the service, sampled for /status's chart: a bounded ring, and what the service
puts in it (its live throughput, its queue and the latency of what finished since the last sample)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_service.samples import SAMPLE_EVERY_S, SAMPLE_SPAN_S, SampleRing
from model_service.service import ModelService
from model_service.types import GenerationParams, GenerationRequest
from tests.fixtures.tiny_models import service_config

pytestmark = pytest.mark.timeout(120)


def test_the_ring_keeps_ten_minutes_of_samples_and_forgets_older_ones() -> None:
    ring = SampleRing()
    capacity = round(SAMPLE_SPAN_S / SAMPLE_EVERY_S)
    for i in range(capacity + 7):
        ring.take(1000.0 + i * SAMPLE_EVERY_S, float(i), i % 3)
    now = 1000.0 + (capacity + 6) * SAMPLE_EVERY_S
    samples = ring.samples(now)
    assert len(samples) == capacity
    assert [s.tokens_per_s for s in samples] == [float(i) for i in range(7, capacity + 7)]  # oldest first
    assert samples[-1].ago_s == 0.0 and samples[0].ago_s == pytest.approx((capacity - 1) * SAMPLE_EVERY_S)


def test_a_sample_holds_the_mean_latency_of_what_finished_since_the_one_before() -> None:
    ring = SampleRing()
    ring.take(0.0, None, 0)
    ring.finished(1.0)
    ring.finished(3.0)
    ring.take(5.0, 12.5, 2)
    ring.take(10.0, -1.0, 0)
    assert [(s.tokens_per_s, s.queue_depth, s.latency_s) for s in ring.samples(10.0)] == [
        (0.0, 0, None),  # no throughput known: none
        (12.5, 2, 2.0),
        (0.0, 0, None),  # nothing finished since
    ]


async def test_the_service_samples_its_throughput_queue_and_latency(tiny_gpt2_dir: Path) -> None:
    async with ModelService(service_config({"tiny": tiny_gpt2_dir})) as service:
        first = service.status()
        assert len(first.samples) == 1  # one at start, then every SAMPLE_EVERY_S
        assert (first.samples[0].tokens_per_s, first.samples[0].queue_depth) == (0.0, 0)
        assert (first.sample_interval_s, first.sample_span_s) == (SAMPLE_EVERY_S, SAMPLE_SPAN_S)
        params = GenerationParams.from_values({"max_new_tokens": 8, "temperature": 0.0})
        result = await service.generate(GenerationRequest("Once upon a time", params))
        service.take_sample()
        status = service.status()
    last = status.samples[-1]
    assert last.tokens_per_s > 0 and last.queue_depth == 0
    assert last.latency_s == pytest.approx(result.elapsed_s, rel=0.05, abs=0.05)
    assert status.samples[0].ago_s >= last.ago_s
