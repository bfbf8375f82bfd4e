"""The last minutes of the service, sampled: throughput, queue depth and latency, for /status's chart.

A bounded ring (``SAMPLE_EVERY_S`` apart, ``SAMPLE_SPAN_S`` long): memory stays fixed however long
the bot runs. Pure: the service takes a sample on its own timer and hands the ring out with its
status; no event loop, no model, no drawing here.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from model_service.types import StatusSample

SAMPLE_EVERY_S = 5.0
SAMPLE_SPAN_S = 600.0  # ten minutes


@dataclass(frozen=True)
class _Taken:
    at_s: float  # monotonic
    tokens_per_s: float
    queue_depth: int
    latency_s: float | None


class SampleRing:
    """The samples of the last ``span_s`` seconds, at most ``span_s / every_s`` of them."""

    def __init__(self, every_s: float = SAMPLE_EVERY_S, span_s: float = SAMPLE_SPAN_S) -> None:
        self.every_s = every_s
        self.span_s = span_s
        self._taken: collections.deque[_Taken] = collections.deque(maxlen=max(1, round(span_s / every_s)))
        self._finished: list[float] = []  # latencies since the last sample

    def finished(self, latency_s: float) -> None:
        """A request finished, taking ``latency_s``: counted in the next sample."""
        self._finished.append(latency_s)

    def take(self, now: float, tokens_per_s: float | None, queue_depth: int) -> None:
        latency = sum(self._finished) / len(self._finished) if self._finished else None
        self._finished.clear()
        self._taken.append(_Taken(now, max(0.0, tokens_per_s or 0.0), queue_depth, latency))

    def samples(self, now: float) -> tuple[StatusSample, ...]:
        """Oldest first, each with its age at ``now``."""
        return tuple(
            StatusSample(max(0.0, now - t.at_s), t.tokens_per_s, t.queue_depth, t.latency_s)
            for t in self._taken
        )
