"""Throughput of the whole bot against a naive one-at-a-time bot, in one process run.

    python -m benchmarks.throughput [--quick] [--engine llama.cpp|transformers] [--model-dir DIR]
                                    [--gguf FILE] [--dtype D] [--threads N] [--llama-priority P]
                                    [--no-rival] [--json-only]

The real bot (config from ``load_config``, ``build_service``, ``open_store``, ``Transcord``)
runs against the loopback Discord server with 8 channels, each with its own sampling
settings. Two workloads go through it as real ``/generate`` interactions, then through a
naive bot (one worker thread, plain ``model.generate`` per request, first come first served)
holding the same model object:

  A  8 requests at once, one per channel;
  B  one request per second for 30 s (10 s with ``--quick``), round-robin over the channels.

It prints a table per workload, then as its last line one JSON object (headline: workload A).
Timings on a shared machine are noisy: compare the two paths of one run, and read
``loadavg`` and ``torch_threads`` alongside.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.environment import DEFAULT_MODEL_FOLDER, DEFAULT_MODEL_NAME
from benchmarks import rival
from benchmarks.batched import BotBench
from benchmarks.measure import (
    NEIGHBOUR_LEAD_S,
    SPEED_FLAGS,
    LoopLag,
    Summary,
    busy_neighbour,
    cpu,
    loadavg,
    peak_rss_mb,
    percentile,
    process_started_at,
    summarize,
)
from benchmarks.memory import MemoryReport
from benchmarks.memory import measure as measure_memory
from benchmarks.naive import NaiveBot
from benchmarks.rival import RivalReport
from benchmarks.workloads import (
    DEFAULT_MODEL_DIR,
    Arrival,
    Sampling,
    channel_sampling,
    fills,
    prompt_for,
    simultaneous,
    staggered,
)
from model_service import fetch
from model_service.config import PRIORITIES

DEFAULT_BUDGET_S = 270.0  # the whole run, from process start: under 5 minutes with room to shut down
MEMORY_RESERVE_S = 30.0  # benchmarks.memory's two fresh processes, after the workloads
REQUIRED_KEYS = (
    "aggregate_tok_s",
    "naive_tok_s",
    "speedup",
    "ttft_p95_s",
    "defer_p99_ms",
    "loop_lag_p99_ms",
    "rss_mb",
    "cold_start_s",
    "weights_mb",
    "torch_threads",
)

log = logging.getLogger("benchmarks.throughput")


@dataclass(frozen=True)
class Options:
    model_dir: Path = DEFAULT_MODEL_DIR
    channels: int = 8
    max_new_tokens: int = 64
    b_requests: int = 30
    b_interval: float = 1.0
    budget_s: float | None = DEFAULT_BUDGET_S  # None: never shorten workload B
    warmup: bool = True
    torch_threads: int | None = None  # None: leave torch's own setting, as the bot does
    memory: bool = True  # run benchmarks.memory after the workloads
    dtype: str | None = None  # MODEL_DTYPE for the bot; None: the bot's default (auto)
    rival: bool = True  # llama-server on the same GGUF, after the bot's workloads
    gguf: Path | None = None  # the rival's GGUF; None: the default model's (fetched once)
    engine: str = "llama.cpp"  # the bot's engine: llama.cpp serves the GGUF, transformers the folder
    llama_priority: str | None = None  # LLAMA_PRIORITY for the bot; None: its default

    @property
    def model_name(self) -> str:
        if self.model_dir.name == DEFAULT_MODEL_FOLDER:
            return DEFAULT_MODEL_NAME
        return re.sub(r"[^a-z0-9_.-]+", "-", self.model_dir.name.lower()).strip("-") or "bench"


@dataclass(frozen=True)
class WorkloadReport:
    name: str
    description: str
    batched: Summary
    naive: Summary
    planned_requests: int
    loadavg: list[float] = field(default_factory=list)  # when the workload started

    @property
    def speedup(self) -> float:
        """Tokens/s over the naive bot's; requests/s for fills, which count no tokens."""
        if self.batched.tokens == 0 and self.naive.tokens == 0:
            return self.batched.req_s / self.naive.req_s if self.naive.req_s > 0 else math.nan
        return self.batched.tok_s / self.naive.tok_s if self.naive.tok_s > 0 else math.nan

    @property
    def capped(self) -> bool:
        return self.batched.requests < self.planned_requests

    def as_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "requests": self.batched.requests,
            "planned_requests": self.planned_requests,
            "capped": self.capped,
            "speedup": self.speedup,
            "loadavg": self.loadavg,
            "batched": self.batched.as_dict(),
            "naive": self.naive.as_dict(),
        }


@dataclass
class Report:
    model: str
    max_new_tokens: int
    cold_start_s: float
    weights_mb: float
    torch_threads: int
    cpu_count: int
    dtype: str
    cpu: dict[str, Any]
    loadavg_start: list[float]
    bot_settings: dict[str, float | int] = field(default_factory=dict)
    workloads: dict[str, WorkloadReport] = field(default_factory=dict)
    rss_mb: float = 0.0
    memory: MemoryReport | None = None
    loadavg_end: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rival: RivalReport | None = None
    rival_note: str | None = None  # why there is no rival figure
    engine: str = "transformers"  # the bot's
    naive_dtype: str = ""  # the naive bot's (transformers) dtype
    # The whole bot in channels that set nothing (its defaults): "together" (one request per
    # channel at once), "alone", and "busy" (together, beside one busy process).
    defaults: dict[str, Summary] = field(default_factory=dict)
    # One @mention at a time in a channel that sets nothing: median seconds to the reply's first
    # words and to its final edit.
    mention: dict[str, float] = field(default_factory=dict)

    def vs_rival(self) -> dict[str, float] | None:
        """Whole bot on its defaults / llama-server: at once against llama-server on its own
        defaults and on the same sampling, alone on the same sampling; and each one's throughput
        beside a busy process over its own idle throughput."""
        r, d = self.rival, self.defaults
        if r is None or not {"together", "alone", "busy"} <= set(d):
            return None
        return {
            "together": d["together"].tok_s / r.together_tok_s,
            "together_same_sampling": d["together"].tok_s / r.same_together_tok_s,
            "alone_same_sampling": d["alone"].tok_s / r.same_alone_tok_s,
            "bot_busy_over_idle": d["busy"].tok_s / d["together"].tok_s,
            "rival_busy_over_idle": r.busy_together_tok_s / r.same_together_tok_s,
        }

    def as_dict(self) -> dict[str, Any]:
        a = self.workloads["A"]
        c = self.workloads.get("C")
        return _finite_dict(
            {
                "aggregate_tok_s": a.batched.tok_s,
                "naive_tok_s": a.naive.tok_s,
                "speedup": a.speedup,
                "ttft_p95_s": a.batched.ttft_p95_s,
                "naive_ttft_p95_s": a.naive.ttft_p95_s,
                "defer_p99_ms": a.batched.defer_p99_ms,
                "loop_lag_p99_ms": a.batched.loop_lag_p99_ms,
                "rss_mb": self.rss_mb,
                "cold_start_s": self.cold_start_s,
                "weights_mb": self.weights_mb,
                "dtype": self.dtype,
                "engine": self.engine,
                "naive_dtype": self.naive_dtype,
                "memory_ratio": self.memory.ratio if self.memory else None,
                "memory_peak_ratio": self.memory.peak_ratio if self.memory else None,
                "fill_speedup": c.speedup if c else None,
                "memory": self.memory.as_dict() if self.memory else None,
                "torch_threads": self.torch_threads,
                "cpu_count": self.cpu_count,
                "cpu": self.cpu,
                "loadavg_start": self.loadavg_start,
                "loadavg_end": self.loadavg_end,
                "model": self.model,
                "max_new_tokens": self.max_new_tokens,
                "bot_settings": self.bot_settings,
                "workloads": {name: w.as_dict() for name, w in self.workloads.items()},
                "defaults": {name: summary.as_dict() for name, summary in self.defaults.items()},
                "mention": self.mention,
                "rival": self.rival.as_dict() if self.rival else None,
                "rival_note": self.rival_note,
                "vs_rival": self.vs_rival(),
                "notes": self.notes,
            }
        )


def _finite_dict(value: dict[str, Any]) -> dict[str, Any]:
    finite: dict[str, Any] = _finite(value)
    return finite


def _finite(value: Any) -> Any:
    """Rounded, and JSON-safe: NaN/inf become null."""
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# -- running ---------------------------------------------------------------------------------


def plan_b(options: Options, a: WorkloadReport, now: float, origin: float) -> int:
    """How many of workload B's requests fit the budget, for both paths (the naive one is long).

    Estimates from workload A: the batched path takes B's span plus one request's latency,
    or longer when B asks for more tokens than A's rate delivers; the naive one serves
    requests back to back, each taking its mean ``generate`` time.
    """
    planned = options.b_requests
    if options.budget_s is None:
        return planned
    left = origin + options.budget_s - now - 5.0 - MEMORY_RESERVE_S  # shutting down, then memory
    service = a.naive.service_mean_s or 0.0
    rate = a.batched.tok_s if a.batched.tok_s > 0 else math.inf

    def cost(n: int) -> float:
        span = (n - 1) * options.b_interval
        batched = max(span + a.batched.latency_p95_s, n * options.max_new_tokens / rate)
        naive = max(n * service, span + service)
        return 1.1 * (batched + naive)

    n = planned
    while n > 2 and cost(n) > left:
        n -= 1
    return n


async def _workload(
    bench: BotBench,
    naive: NaiveBot,
    settings: Sequence[Sampling] | None,
    name: str,
    description: str,
    arrivals: Sequence[Arrival],
    planned: int,
) -> WorkloadReport:
    """Generations with the channels' ``settings``; fills when ``settings`` is None."""
    span = arrivals[-1].at if arrivals else 0.0
    load = loadavg()
    log.info("workload %s: %s (batched)", name, description)
    async with LoopLag() as lag:
        if settings is None:
            batched = await bench.run_fill(arrivals, timeout=span + 300)
        else:
            batched = await bench.run(arrivals, timeout=span + 300)
    batched_summary = summarize(batched, lag)
    log.info("workload %s: %s (naive)", name, description)
    async with LoopLag() as lag:
        naive_timings = await naive.run(arrivals, settings)
    naive_summary = summarize(naive_timings, lag)
    return WorkloadReport(name, description, batched_summary, naive_summary, planned, load)


async def _bot_alone(bench: BotBench, arrivals: Sequence[Arrival], what: str) -> Summary:
    """The whole bot alone (no naive bot): for the figures against llama-server."""
    log.info("defaults: %s", what)
    async with LoopLag() as lag:
        timings = await bench.run(arrivals, timeout=300)
    return summarize(timings, lag)


async def _defaults(bench: BotBench, options: Options) -> dict[str, Summary]:
    """The bot in the channels that set nothing: at once, alone, and at once beside a busy process."""
    first = options.channels  # the second half of the channels: no /config set there
    together = [
        Arrival(0.0, first + i, prompt_for(i), options.max_new_tokens) for i in range(options.channels)
    ]
    out = {"together": await _bot_alone(bench, together, f"{len(together)} at once")}
    out["alone"] = await _bot_alone(bench, together[:1], "one alone")
    with busy_neighbour(lead_s=0.3):
        await asyncio.sleep(NEIGHBOUR_LEAD_S)  # the loop serves Discord meanwhile
        out["busy"] = await _bot_alone(bench, together, f"{len(together)} at once beside a busy process")
    return out


MENTIONS = 5


async def _mentions(bench: BotBench, options: Options) -> dict[str, float]:
    """@mentions one after another, as members talk: how soon the reply shows words, and ends."""
    log.info("defaults: %d @mentions one after another", MENTIONS)
    times = [
        await bench.mention(options.channels + i % options.channels, prompt_for(i), timeout=120)
        for i in range(MENTIONS)
    ]
    return {
        "first_text_p50_s": percentile([first for first, _ in times], 50),
        "final_p50_s": percentile([final for _, final in times], 50),
    }


def _gguf(options: Options) -> Path | str:
    """The GGUF of the benchmarked model (``--gguf``, else the default model's), or why there is none."""
    if options.gguf is not None:
        return options.gguf
    if options.model_dir.name != DEFAULT_MODEL_FOLDER:
        return f"no GGUF for {options.model_dir.name} (give one with --gguf PATH)"
    reason = rival.unavailable()
    if reason is not None:
        return reason
    try:
        return fetch.default_gguf(options.model_dir.parent, log=log.info)
    except fetch.FetchError as exc:
        return f"the default model's GGUF could not be had: {exc}"


def _rival(options: Options, gguf: Path | str, threads: int) -> RivalReport | str:
    if isinstance(gguf, str):
        return gguf
    return rival.measure(gguf, slots=options.channels, threads=threads, max_new_tokens=options.max_new_tokens)


def _naive_bot(bench: BotBench, options: Options) -> tuple[NaiveBot, str | None]:
    """The naive bot on the very model object the service loaded (else a second copy)."""
    registry = getattr(bench.service, "_registry", None)
    if registry is not None:
        loaded = registry.get(options.model_name, "generate")
        fill_model = registry.get(options.model_name, "fill-mask")
        return NaiveBot(loaded.model, loaded.tokenizer, loaded.lock, fill_model), None
    from model_service.loading import load

    loaded = load(
        options.model_name, str(options.model_dir), "generate", device="auto", dtype="auto", offline=True
    )
    return NaiveBot(
        loaded.model, loaded.tokenizer, fill_model=loaded
    ), "the naive bot loaded its own copy of the model"


async def run_benchmark(options: Options, origin: float) -> Report:
    """Start the bot, run both workloads through it and through the naive bot; ``origin`` is
    the ``time.monotonic()`` reading cold start is counted from (the process start)."""
    import torch

    if options.torch_threads is not None:
        torch.set_num_threads(options.torch_threads)
    load_start = loadavg()
    settings = channel_sampling(options.channels)
    # The GGUF (or why there is none), looked up once: the llama.cpp engine serves it, the rival too.
    gguf = _gguf(options) if options.rival or options.engine == "llama.cpp" else "not asked for"
    served: Path | None = None  # the GGUF the llama.cpp engine serves
    if options.engine == "llama.cpp":
        if isinstance(gguf, str):
            raise SystemExit(f"the llama.cpp engine cannot be benchmarked: {gguf}")
        served = gguf
    with tempfile.TemporaryDirectory(prefix="transcord-bench-") as workdir:
        overrides = {"MODEL_DTYPE": options.dtype} if options.dtype else {}
        if options.torch_threads is not None:
            overrides["MODEL_THREADS"] = str(options.torch_threads)  # llama.cpp's threads too
        if options.llama_priority is not None:
            overrides["LLAMA_PRIORITY"] = options.llama_priority
        source = served or options.model_dir
        overrides["MODELS"] = f"{options.model_name}={source}"
        overrides["MODEL_ENGINES"] = f"{options.model_name}={options.engine}"
        # Twice the channels: the first half set the workloads' sampling, the second half nothing.
        bench = BotBench(
            options.model_name, options.model_dir, Path(workdir), 2 * options.channels, overrides
        )
        async with bench:
            cold_start = bench.ready_at - origin
            naive, note = _naive_bot(bench, options)
            weights = sum(p.numel() * p.element_size() for p in naive.model.parameters()) / 1e6
            dtype = str(next(naive.model.parameters()).dtype).removeprefix("torch.")
            if served is not None:
                weights = served.stat().st_size / 1e6
                dtype = next(m.dtype for m in bench.service.status().models if m.engine == "llama.cpp")
                note = (note or "") + (
                    "the naive bot runs the transformers twin (the de-quantized folder) of the served GGUF"
                )
            report = Report(
                model=str(source),
                max_new_tokens=options.max_new_tokens,
                cold_start_s=cold_start,
                weights_mb=weights,
                torch_threads=torch.get_num_threads(),
                cpu_count=os.cpu_count() or 0,
                dtype=dtype,
                cpu=cpu(),
                loadavg_start=load_start,
                engine=options.engine,
                naive_dtype=str(next(naive.model.parameters()).dtype).removeprefix("torch."),
            )
            if note:
                report.notes.append(note)
            if options.torch_threads is not None:
                report.notes.append(f"torch threads set to {options.torch_threads} by --threads")
            assert bench.config is not None
            report.bot_settings = {
                "max_batch_size": bench.config.service.max_batch_size,
                "queue_limit": bench.config.service.queue_limit,
                "stream_edit_interval_s": bench.config.stream_edit_interval_s,
            }
            await bench.apply_settings(settings)
            if options.warmup:
                # One short request down each path first, so neither pays the first-call costs.
                warm = [Arrival(0.0, 0, "Hello", 4)]
                await bench.run(warm, timeout=120)
                await naive.run(warm, settings)
                warm_fill = [Arrival(0.0, 0, "The [MASK] is warm.", 0)]
                await bench.run_fill(warm_fill, timeout=120)
                await naive.run(warm_fill)

            a_arrivals = simultaneous(options.channels, options.max_new_tokens)
            a = await _workload(
                bench,
                naive,
                settings,
                "A",
                f"{len(a_arrivals)} simultaneous /generate, one per channel",
                a_arrivals,
                len(a_arrivals),
            )
            report.workloads["A"] = a
            c_arrivals = fills(options.channels)
            c_text = f"{len(c_arrivals)} simultaneous /fill, one per channel"
            report.workloads["C"] = await _workload(
                bench, naive, None, "C", c_text, c_arrivals, len(c_arrivals)
            )

            count = plan_b(options, a, time.monotonic(), origin)
            b_arrivals = staggered(count, options.b_interval, options.channels, options.max_new_tokens)
            b_text = f"{count} staggered /generate, one every {options.b_interval:g} s, round-robin"
            if count < options.b_requests:
                report.notes.append(
                    f"workload B capped at {count} of {options.b_requests} requests, for both paths, to "
                    f"stay within the {options.budget_s:g} s budget (naive generate() took "
                    f"{a.naive.service_mean_s or 0:.1f} s per request in A)"
                )
            report.workloads["B"] = await _workload(
                bench, naive, settings, "B", b_text, b_arrivals, options.b_requests
            )
            alone = [Arrival(0.0, 0, a_arrivals[0].prompt, options.max_new_tokens)]
            report.workloads["1"] = await _workload(
                bench, naive, settings, "1", "one /generate alone", alone, 1
            )
            if options.rival and not isinstance(gguf, str):  # the figures against llama-server
                report.defaults = await _defaults(bench, options)
            report.mention = await _mentions(bench, options)
    if options.rival:
        log.info("rival: llama-server on the same GGUF, %d slots, in a fresh process", options.channels)
        found = await asyncio.to_thread(_rival, options, gguf, report.torch_threads)
        report.rival, report.rival_note = (found, None) if isinstance(found, RivalReport) else (None, found)
    report.rss_mb = peak_rss_mb()
    if options.memory:
        log.info("memory: the model's resident share, in fresh processes")
        report.memory = await asyncio.to_thread(
            measure_memory, options.model_dir, dtype=options.dtype or "auto", gguf=served
        )
    report.loadavg_end = loadavg()
    report.notes.append(
        "batched TTFT: interaction sent -> first edit carrying model text, as the server recorded it; "
        "naive TTFT: arrival -> first token out of generate() (wait in the queue included, no Discord)"
    )
    return report


# -- output ----------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}"


def render_table(report: Report) -> list[str]:
    load = "/".join(f"{x:.2f}" for x in report.loadavg_start) or "?"
    lines = [
        f"Transcord throughput — {Path(report.model).name} on {report.engine} ({report.dtype}; "
        f"the naive bot: transformers, {report.naive_dtype}), "
        f"{report.max_new_tokens} new tokens a request, "
        f"torch threads {report.torch_threads}, {report.cpu_count} CPUs, load average {load}",
        f"CPU: {report.cpu['model']} · flags: {' '.join(report.cpu['flags']) or 'none of ' + '/'.join(SPEED_FLAGS)}",
        f"cold start {report.cold_start_s:.1f} s · weights {report.weights_mb:.0f} MB · "
        f"peak RSS {report.rss_mb:.0f} MB",
    ]
    for name, w in report.workloads.items():
        b, n = w.batched, w.naive
        rate = ("tokens/s", _fmt(b.tok_s, 1), _fmt(n.tok_s, 1))
        if b.tokens == 0 and n.tokens == 0:
            rate = ("fills/s", _fmt(b.req_s), _fmt(n.req_s))
        rows = [
            rate,
            ("speedup", f"{_fmt(w.speedup)}x", "1.00x"),
            ("TTFT p50 (s)", _fmt(b.ttft_p50_s), _fmt(n.ttft_p50_s)),
            ("TTFT p95 (s)", _fmt(b.ttft_p95_s), _fmt(n.ttft_p95_s)),
            ("completion p95 (s)", _fmt(b.latency_p95_s), _fmt(n.latency_p95_s)),
            ("defer p99 (ms)", _fmt(b.defer_p99_ms, 1), _fmt(n.defer_p99_ms, 1)),
            ("loop lag p99 (ms)", _fmt(b.loop_lag_p99_ms, 1), _fmt(n.loop_lag_p99_ms, 1)),
            ("requests / tokens", f"{b.requests} / {b.tokens}", f"{n.requests} / {n.tokens}"),
            ("makespan (s)", _fmt(b.makespan_s, 1), _fmt(n.makespan_s, 1)),
        ]
        load = "/".join(f"{x:.2f}" for x in w.loadavg) or "?"
        lines += ["", f"Workload {name}: {w.description} (load average {load})"]
        lines.append(f"{'':<20}{'batched':>14}{'naive':>14}")
        lines += [f"{label:<20}{x:>14}{y:>14}" for label, x, y in rows]
    if (r := report.rival) is not None and (ratios := report.vs_rival()) is not None:
        d = report.defaults
        lines += [
            "",
            f"Against {r.engine}, {r.slots} slots, {r.threads} threads, the same model as a GGUF "
            "(tok/s; the bot in channels that set nothing):",
            f"{'':<34}{'whole bot':>12}{'llama-server':>14}{'ratio':>8}",
            _against(f"{r.slots} at once, each on its defaults", d["together"].tok_s, r.together_tok_s),
            _against(f"{r.slots} at once, the same sampling", d["together"].tok_s, r.same_together_tok_s),
            _against("one alone, the same sampling", d["alone"].tok_s, r.same_alone_tok_s),
            _against(f"{r.slots} at once beside a busy process", d["busy"].tok_s, r.busy_together_tok_s),
            f"beside a busy process / idle: whole bot {ratios['bot_busy_over_idle']:.2f}x, "
            f"llama-server {ratios['rival_busy_over_idle']:.2f}x",
            "(the bot's defaults: temperature 0.7, top_p 0.95, top_k 50, min_p 0; llama-server's: "
            "top_k 40, min_p 0.05)",
        ]
    elif report.rival_note:
        lines += ["", f"Rival: not measured: {report.rival_note}"]
    if report.mention:
        lines += [
            "",
            f"@mention, one at a time ({MENTIONS}): first words after {report.mention['first_text_p50_s']:.2f} s, "
            f"final after {report.mention['final_p50_s']:.2f} s (medians, channels' defaults)",
        ]
    if (m := report.memory) is not None:
        lines += [
            "",
            f"Memory (fresh processes, {m.engine}, {m.dtype}): runtime {m.runtime_mb:.0f} MB; served and idle "
            f"{m.served_rss_mb:.0f} MB, peak {m.served_peak_mb:.0f} MB; the model's share is "
            f"{m.ratio:.2f}x its {m.weights_mb:.0f} MB of weights (peak {m.peak_ratio:.2f}x)",
        ]
    lines += ["", *(f"note: {note}" for note in report.notes)]
    return lines


def _against(label: str, bot: float, server: float) -> str:
    ratio = f"{bot / server:.2f}x" if server > 0 else "—"
    return f"{label:<34}{_fmt(bot, 1):>12}{_fmt(server, 1):>14}{ratio:>8}"


def render(report: Report, *, json_only: bool = False) -> str:
    """The table (unless ``json_only``), then the JSON object as the last line."""
    lines = [] if json_only else [*render_table(report), ""]
    lines.append(json.dumps(report.as_dict(), ensure_ascii=False))
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="workload B over 10 s instead of 30 s")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="the model folder")
    parser.add_argument("--json-only", action="store_true", help="print only the JSON line")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens per request (64)")
    parser.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default=None,
        help="MODEL_DTYPE for the bot (default: its own, auto)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for both paths: torch.set_num_threads and the bot's MODEL_THREADS (default: theirs)",
    )
    parser.add_argument(
        "--engine",
        choices=("llama.cpp", "transformers"),
        default="llama.cpp",
        help="the bot's engine: llama.cpp serves the GGUF (the default model's default), "
        "transformers the folder",
    )
    parser.add_argument(
        "--llama-priority",
        choices=PRIORITIES,
        default=None,
        help="LLAMA_PRIORITY for the bot (default: its own, normal)",
    )
    parser.add_argument("--no-rival", action="store_true", help="skip llama-server (the rival)")
    parser.add_argument(
        "--gguf", type=Path, default=None, help="the rival's GGUF (default: the default model's)"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"shorten workload B to finish within this many s of start ({DEFAULT_BUDGET_S:g}; 0: never)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)  # progress on stderr; stdout holds only the table and the JSON
    logging.getLogger("discord").setLevel(logging.ERROR)  # "voice will NOT be supported" and such
    if not (args.model_dir / "config.json").is_file():
        print(
            f"no model at {args.model_dir}; fetch the default one with: .venv/bin/python -m model_service.fetch",
            file=sys.stderr,
        )
        return 2
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    options = Options(
        model_dir=args.model_dir,
        max_new_tokens=args.max_new_tokens,
        b_requests=10 if args.quick else 30,
        budget_s=args.budget_s or None,
        torch_threads=args.threads,
        dtype=args.dtype,
        rival=not args.no_rival,
        gguf=args.gguf,
        engine=args.engine,
        llama_priority=args.llama_priority,
    )
    report = asyncio.run(run_benchmark(options, process_started_at()))
    print(render(report, json_only=args.json_only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
