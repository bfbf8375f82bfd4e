"""The soak's bookkeeping: what each request came to, which acknowledged writes the database lost,
how a process's memory grew, which tracebacks its log holds. Plain values in, figures out: no
Discord, no processes, so the soak's own arithmetic is tested alone (tests/benchmarks/test_soak.py).
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.measure import percentile

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the colours of a log written to a terminal
FOOTER = re.compile(r"\n-# \d+ tokens · ")
GENERIC_ERROR = "Something went wrong on our side"
# What the bot's answers start with when they refuse or stop for a reason they name (core/replies.py).
REFUSAL_ICONS = ("⏳", "⌛", "🗄️", "🚫", "❌", "❓", "⚠️", "ℹ️", "🔒")
WAITING = "in the queue"
STREAMING = " …"  # the end of a reply the bot is still writing (core/streaming.py)
# One-line warnings the bot's documentation lists: a log record at WARNING or above that carries a
# traceback is counted unless it is one of these (none yet: a traceback is a finding).
DOCUMENTED_TRACEBACKS: tuple[str, ...] = ()

ANSWERED, REFUSED, FAILED, UNANSWERED, THINKING = "answered", "refused", "failed", "unanswered", "thinking"


@dataclass(frozen=True)
class Shown:
    """One state of one message the bot showed for a request: when, what, whether a placeholder."""

    at: float
    text: str
    loading: bool = False
    deleted: bool = False


@dataclass(frozen=True)
class View:
    """Everything the bot showed for one request: each message's states, oldest first."""

    responded: bool
    messages: tuple[tuple[Shown, ...], ...] = ()

    def final_texts(self) -> list[str]:
        return [m[-1].text for m in self.messages if m and not m[-1].deleted and not m[-1].loading]

    @property
    def thinking(self) -> bool:
        return any(m and m[-1].loading and not m[-1].deleted for m in self.messages)


@dataclass(frozen=True)
class Outcome:
    status: str  # answered, refused, failed, unanswered (no response at all), thinking
    final: bool  # a generated answer shows its footer (or the command needs none)
    duplicates: int  # answers shown more than once for this one request
    first_text_s: float | None  # from the request to the first text a user could read
    final_s: float | None  # from the request to the last change
    text: str = ""


def _is_refusal(text: str) -> bool:
    return text.lstrip().startswith(REFUSAL_ICONS)


def classify(view: View, sent_at: float, *, needs_footer: bool) -> Outcome:
    """What one request came to, as its member saw it once everything settled."""
    if view.thinking:
        return Outcome(THINKING, False, 0, None, None)
    if not view.responded and not view.messages:
        return Outcome(UNANSWERED, False, 0, None, None)
    texts = view.final_texts()
    joined = "\n".join(texts)
    # A click's message had states before the click: only what changed since counts.
    states = [s for m in view.messages for s in m if s.at >= sent_at]
    readable = [s.at for s in states if s.text and not s.loading and WAITING not in s.text]
    changes = [s.at for s in states]
    # An answer is final when its footer first shows: a later click on its buttons (another
    # request, timed on its own) edits the same message again.
    footed = [s.at for s in states if FOOTER.search(s.text)]
    first = min(readable) - sent_at if readable else None
    last = (min(footed) if footed else max(changes)) - sent_at if changes else None
    footers = sum(1 for t in texts if FOOTER.search(t))
    duplicates = max(0, footers - 1)
    if GENERIC_ERROR in joined:
        return Outcome(FAILED, False, duplicates, first, last, joined)
    if not texts:
        return Outcome(FAILED, False, duplicates, first, last, joined)
    if _is_refusal(texts[-1].split("\n\n")[-1]):
        # An answer with an error written under it (a write that failed after the text was shown,
        # the database away): the member was told it was not kept.
        return Outcome(REFUSED, False, duplicates, first, last, joined)
    if footers:
        return Outcome(ANSWERED, True, duplicates, first, last, joined)
    if any(_is_refusal(t) or _is_refusal(t.split("\n\n")[-1]) for t in texts):
        return Outcome(REFUSED, False, duplicates, first, last, joined)
    # A reply still being written ends with the streaming mark: it never became final.
    writing = any(t.rstrip().endswith(STREAMING) for t in texts)
    return Outcome(ANSWERED, not needs_footer and not writing, duplicates, first, last, joined)


# -- writes the bot acknowledged ---------------------------------------------------------------------


@dataclass
class Write:
    """One write a member asked for: ``kind`` setting, rule, turn or story; ``key`` where it lands
    (a setting's channel and name; else the channel), ``value`` what must be found there (a
    setting's value; else a tag unique to this write)."""

    kind: str
    key: tuple[Any, ...]
    value: Any
    sent_at: float
    acked: bool = False


@dataclass
class Stored:
    """What the database holds at the end: each setting's value, and the tags found per kind."""

    settings: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    tags: dict[str, set[str]] = field(default_factory=dict)


def lost_writes(writes: Sequence[Write], stored: Stored) -> list[Write]:
    """Acknowledged writes the database does not hold.

    A setting holds when its stored value is the last acknowledged one or that of a later write
    (acknowledged or not: one the member never saw confirmed may still have landed). Writes to one
    setting are sent one at a time, so their order is the order they were sent.
    """
    lost: list[Write] = []
    by_key: dict[tuple[Any, ...], list[Write]] = {}
    for write in writes:
        if write.kind == "setting":
            by_key.setdefault(write.key, []).append(write)
        elif write.acked and write.value not in stored.tags.get(write.kind, set()):
            lost.append(write)
    for key, chain in by_key.items():
        chain.sort(key=lambda w: w.sent_at)
        acked = [i for i, w in enumerate(chain) if w.acked]
        if not acked:
            continue
        allowed = [w.value for w in chain[acked[-1] :]]
        if key not in stored.settings or not any(_same(stored.settings[key], v) for v in allowed):
            lost.append(chain[acked[-1]])
    return lost


def _same(stored: Any, value: Any) -> bool:
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            pass
    if isinstance(stored, float | int) and isinstance(value, float | int):
        return math.isclose(float(stored), float(value), abs_tol=1e-9)
    return bool(stored == value)


def tags_in(texts: Iterable[str], pattern: re.Pattern[str]) -> set[str]:
    return {m for text in texts for m in pattern.findall(text or "")}


# -- processes over time -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the soak began
    rss_mb: float
    fds: int


def growth(samples: Sequence[Sample], warm_up_s: float) -> dict[str, float | None]:
    """How much one process's memory and descriptors grew after its warm-up: the median of the last
    quarter of its samples over the median of the first samples after ``warm_up_s``."""
    if not samples:
        return {"rss_growth": None, "fd_growth": None, "rss_start_mb": None, "rss_end_mb": None}
    begin = samples[0].at + warm_up_s
    warm = [s for s in samples if s.at >= begin]
    if len(warm) < 4:
        return {"rss_growth": None, "fd_growth": None, "rss_start_mb": None, "rss_end_mb": None}
    quarter = max(2, len(warm) // 4)
    head, tail = warm[:quarter], warm[-quarter:]
    rss0, rss1 = statistics.median(s.rss_mb for s in head), statistics.median(s.rss_mb for s in tail)
    fd0, fd1 = statistics.median(s.fds for s in head), statistics.median(s.fds for s in tail)
    return {
        "rss_growth": rss1 / rss0 - 1 if rss0 else None,
        "fd_growth": fd1 / fd0 - 1 if fd0 else None,
        "rss_start_mb": rss0,
        "rss_end_mb": rss1,
    }


def read_proc(pid: int) -> tuple[float, int] | None:
    """(resident MB, open descriptors) of a live process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            rss = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return None
    return rss * 1024 / 1e6, fds


# -- logs --------------------------------------------------------------------------------------------


def tracebacks(log_text: str) -> list[str]:
    """The log line each traceback in a bot's output belongs to (the line before it), minus the
    documented ones."""
    lines = ANSI.sub("", log_text).splitlines()
    found: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            head = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            if head.startswith(CHAINED):  # the same error, chained: keep its last exception
                if found:
                    found[-1] = found[-1].split(" | ")[0] + " | " + _last_exception(lines, i)
                continue
            entry = f"{head.strip()[:200]} | {_last_exception(lines, i)}"
            if not any(doc in entry for doc in DOCUMENTED_TRACEBACKS):
                found.append(entry)
    return found


CHAINED = ("The above exception was the direct cause", "During handling of the above exception")


def _last_exception(lines: Sequence[str], start: int) -> str:
    """The exception line of the traceback starting at ``start``: its first unindented line."""
    end = min(start + 400, len(lines))
    return next((lines[j] for j in range(start + 1, end) if lines[j][:1] not in (" ", "")), "").strip()[:200]


# -- latency by phase ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    name: str
    start: float  # seconds since the soak began
    end: float
    detail: str = ""
    recovered_s: float | None = None  # from the end of the fault to the first answered probe


def phase_of(at: float, fault: Fault, window: float) -> str | None:
    if fault.start - window <= at < fault.start:
        return "before"
    if fault.start <= at < fault.end:
        return "during"
    if fault.end <= at < fault.end + window:
        return "after"
    return None


def quantiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "p99": round(percentile(values, 99), 3),
    }


def by_phase(
    timed: Sequence[tuple[float, float | None, float | None]], faults: Sequence[Fault], window: float
) -> dict[str, dict[str, dict[str, dict[str, float | None]]]]:
    """For each fault, for before/during/after: quantiles of (first text, final) over the requests
    sent then. ``timed``: (sent at, first text s, final s) per answered request."""
    out: dict[str, dict[str, dict[str, dict[str, float | None]]]] = {}
    for fault in faults:
        phases: dict[str, dict[str, dict[str, float | None]]] = {}
        for phase in ("before", "during", "after"):
            rows = [t for t in timed if phase_of(t[0], fault, window) == phase]
            phases[phase] = {
                "first": quantiles([r[1] for r in rows if r[1] is not None]),
                "final": quantiles([r[2] for r in rows if r[2] is not None]),
            }
        out[fault.name] = phases
    return out


def counts(outcomes: Iterable[str]) -> Mapping[str, int]:
    tally = dict.fromkeys((ANSWERED, REFUSED, FAILED, UNANSWERED, THINKING), 0)
    for status in outcomes:
        tally[status] = tally.get(status, 0) + 1
    return tally
