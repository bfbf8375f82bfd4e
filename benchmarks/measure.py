"""Clocks and figures: process age, event-loop lag, peak memory, per-request timings, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from benchmarks import IMPORTED_AT


def process_started_at() -> float:
    """When this process started, on the ``time.monotonic()`` clock (import time if unknown).

    ``/proc/self/stat`` field 22 is the start time in clock ticks after boot, and
    ``/proc/uptime`` the time since boot: their difference is the process's age.
    """
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return IMPORTED_AT
    now = time.monotonic()
    return now - age if 0 <= age < now else IMPORTED_AT


def peak_rss_mb() -> float:
    """Peak resident set of this process in MB (10^6 bytes)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux


SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "neon", "asimd")


def cpu() -> dict[str, Any]:
    """The CPU's model and the flags that decide the fast dtype (bf16 needs avx512_bf16 or amx)."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model") and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags |= set(value.split())
    except OSError:
        pass
    return {"model": model, "flags": [f for f in SPEED_FLAGS if f in flags]}


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated between the nearest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class LoopLag:
    """A ticker on the running loop: sleeps ``period`` s and records by how much it overslept.

    A coroutine that blocks the loop (or a thread holding the GIL) shows up as overshoot.
    """

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.period)
            self.samples.append(max(0.0, time.monotonic() - before - self.period))

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._tick(), name="loop-lag")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def p99_ms(self) -> float:
        return percentile(self.samples, 99) * 1000


@dataclass(frozen=True)
class RequestTiming:
    """One request's clock readings (``time.monotonic()``) and how many tokens it produced."""

    sent: float  # the interaction was sent (batched) / the request arrived (naive)
    first_text: float  # first model text visible (batched) / first token generated (naive)
    done: float  # the final edit with the footer (batched) / generate() returned (naive)
    tokens: int
    deferred: float | None = None  # the bot's deferral reached the server (batched only)
    started: float | None = None  # the worker picked the request up (naive only)


@dataclass(frozen=True)
class Summary:
    requests: int
    tokens: int
    makespan_s: float
    tok_s: float
    req_s: float  # requests completed per second
    ttft_p50_s: float
    ttft_p95_s: float
    latency_p95_s: float  # sent -> done
    defer_p99_ms: float | None
    loop_lag_p99_ms: float
    service_mean_s: float | None  # naive: mean time one generate() takes

    def as_dict(self) -> dict[str, float | int | None]:
        return {k: _round(v) for k, v in self.__dict__.items()}


def _round(value: float | int | None) -> float | int | None:
    return round(value, 4) if isinstance(value, float) else value


def summarize(timings: Sequence[RequestTiming], lag: LoopLag) -> Summary:
    """Aggregate tokens/s = all tokens / (last completion - first send)."""
    first_sent = min(t.sent for t in timings)
    makespan = max(t.done for t in timings) - first_sent
    tokens = sum(t.tokens for t in timings)
    ttft = [t.first_text - t.sent for t in timings]
    deferrals = [t.deferred - t.sent for t in timings if t.deferred is not None]
    services = [t.done - t.started for t in timings if t.started is not None]
    return Summary(
        requests=len(timings),
        tokens=tokens,
        makespan_s=makespan,
        tok_s=tokens / makespan if makespan > 0 else math.nan,
        req_s=len(timings) / makespan if makespan > 0 else math.nan,
        ttft_p50_s=percentile(ttft, 50),
        ttft_p95_s=percentile(ttft, 95),
        latency_p95_s=percentile([t.done - t.sent for t in timings], 95),
        defer_p99_ms=percentile(deferrals, 99) * 1000 if deferrals else None,
        loop_lag_p99_ms=lag.p99_ms(),
        service_mean_s=sum(services) / len(services) if services else None,
    )


# How long the neighbour has been running when a measurement beside it starts (both engines alike).
NEIGHBOUR_LEAD_S = 6.0


@contextlib.contextmanager
def busy_neighbour(lead_s: float = NEIGHBOUR_LEAD_S) -> Iterator[None]:
    """One other process that never sleeps, at the same priority, for the body's length: what a
    bot on a small shared machine (or beside its own busy Python) runs next to. It has been
    running ``lead_s`` when the body starts, as a neighbour on a real box has (a build, a game
    server), so whoever adapts to it has had the time to notice."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(lead_s)
        yield
    finally:
        hog.kill()
        hog.wait()
