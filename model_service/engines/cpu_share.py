"""How many cores llama.cpp should use now: fewer while other processes take the CPU.

llama.cpp's compute threads wait for each other at every operation, so when a neighbour takes
one core of two, the thread that shares it stalls the other: measured on a 2-core box, 2
threads fell to 0.31x of their idle speed beside one busy process while 1 thread kept 0.55x
(docs/benchmarks.md, "Sharing the machine"). So with ``MODEL_THREADS`` left at its default, the
engine asks ``ThreadGovernor.threads()`` before each step and serves on one thread per core
that others leave free.

What others take is read from the kernel: the whole machine's busy time (``/proc/stat``,
steal included: a VPS's hypervisor is a neighbour too) less this process's own (``os.times``),
over windows of a few seconds. A change is made only once the same answer has held for
``settle_s`` of observed time, so a short burst elsewhere (a compiler, a backup's first second)
does not reload the engine back and forth.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

# Columns of /proc/stat's "cpu" line that count as busy: user nice system (idle iowait) irq
# softirq steal; guest time is already inside user.
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


@dataclass(frozen=True)
class CpuReading:
    at: float  # monotonic seconds
    machine_busy_s: float  # CPU seconds busy on every core, since boot
    own_s: float  # CPU seconds this process used, since it started


def read_cpu() -> CpuReading | None:
    """Now's reading, or None where the kernel doesn't say (not Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    busy = sum(int(fields[1 + i]) for i in _BUSY_COLUMNS if 1 + i < len(fields)) / ticks
    own = os.times()
    return CpuReading(time.monotonic(), busy, own.user + own.system)


def threads_for(cores: int, others: float) -> int:
    """One thread per core that other processes leave free (``others`` in cores), at least one."""
    return max(1, min(cores, cores - round(others)))


class ThreadGovernor:
    """The thread count for llama.cpp, following what the rest of the machine takes."""

    def __init__(
        self,
        cores: int,
        *,
        window_s: float = 2.0,
        settle_s: float = 4.0,
        read: Callable[[], CpuReading | None] = read_cpu,
    ) -> None:
        self.cores = cores
        self.others = 0.0  # cores others took in the last window
        self._window_s = window_s
        self._settle_s = settle_s
        self._read = read
        self._last = read()
        self._current = cores
        self._candidate = cores
        self._candidate_for_s = 0.0  # observed time the candidate has held

    def threads(self) -> int:
        """Cheap to call often: samples at most once a window."""
        if self._last is None or self.cores <= 1:
            return self._current
        now = self._read()
        if now is None or now.at - self._last.at < self._window_s:
            return self._current
        span = now.at - self._last.at
        others = (now.machine_busy_s - self._last.machine_busy_s) - (now.own_s - self._last.own_s)
        self._last = now
        self.others = max(0.0, others / span)
        wanted = threads_for(self.cores, self.others)
        if wanted != self._candidate:
            self._candidate, self._candidate_for_s = wanted, 0.0
        self._candidate_for_s += span
        if wanted != self._current and self._candidate_for_s >= self._settle_s:
            self._current = wanted
        return self._current
