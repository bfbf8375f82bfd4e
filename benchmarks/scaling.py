"""Scaling: 1 to 64 simultaneous ``/generate`` through the whole bot, beside llama-server's, in one run.

    python -m benchmarks.scaling [--levels 1,2,4,8,16,32,64] [--max-new-tokens 64] [--plot FILE]

The real bot (``App``, the llama.cpp engine on the default model's GGUF, ``MAX_BATCH_SIZE`` slots)
runs against the loopback Discord server; at each level, that many members in as many channels
that set nothing send ``/generate`` at once. More requests than slots wait in the bot's queue
(``QUEUE_LIMIT`` is raised for this run). Then llama-server (the same wheel, GGUF, slots and
threads, in a fresh process) gets the same prompts at each level, with the bot's default sampling.
For each: tokens/s over the level's makespan, and p50/p95 of the time to the first text and to
the last (the bot: the interaction to the first edit with model text and to the final edit;
llama-server: the request to its first and last streamed token). It prints a table, writes a plot
(``--plot``) and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.batched import BotBench
from benchmarks.measure import cpu, percentile
from benchmarks.rival import BOT_SAMPLING
from benchmarks.workloads import DEFAULT_MODEL_DIR, Arrival, prompt_for
from model_service import fetch

LEVELS = (1, 2, 4, 8, 16, 32, 64)
log = logging.getLogger("benchmarks.scaling")


@dataclass(frozen=True)
class Level:
    """One level's figures: ``requests`` sent at once."""

    requests: int
    tokens: int
    tok_s: float
    first_p50_s: float
    first_p95_s: float
    last_p50_s: float
    last_p95_s: float

    @classmethod
    def of(cls, requests: int, tokens: int, sent: float, firsts: list[float], lasts: list[float]) -> Level:
        span = max(lasts) - sent if lasts else 0.0
        return cls(
            requests,
            tokens,
            tokens / span if span > 0 else 0.0,
            percentile([f - sent for f in firsts], 50),
            percentile([f - sent for f in firsts], 95),
            percentile([t - sent for t in lasts], 50),
            percentile([t - sent for t in lasts], 95),
        )


# -- the whole bot ---------------------------------------------------------------------------------


async def bot_levels(gguf: Path, levels: Sequence[int], max_new_tokens: int, slots: int) -> list[Level]:
    overrides = {
        "MODELS": f"smollm2={gguf}",
        "MODEL_ENGINES": "smollm2=llama.cpp",
        "MAX_BATCH_SIZE": str(slots),
        "QUEUE_LIMIT": str(2 * max(levels)),  # this run measures queueing, not refusals
    }
    out = []
    with tempfile.TemporaryDirectory(prefix="transcord-scaling-") as workdir:
        bench = BotBench("smollm2", DEFAULT_MODEL_DIR, Path(workdir), max(levels), overrides)
        async with bench:
            await bench.run([Arrival(0.0, 0, "Hello", 4)], timeout=120)  # the first call's costs
            for n in levels:
                log.info("the bot: %d at once", n)
                arrivals = [Arrival(0.0, i, prompt_for(i), max_new_tokens) for i in range(n)]
                timings = await bench.run(arrivals, timeout=600)
                sent = min(t.sent for t in timings)
                out.append(
                    Level.of(
                        n,
                        sum(t.tokens for t in timings),
                        sent,
                        [t.first_text for t in timings],
                        [t.done for t in timings],
                    )
                )
    return out


# -- llama-server ----------------------------------------------------------------------------------


def server_levels(
    gguf: Path, levels: Sequence[int], max_new_tokens: int, slots: int, threads: int
) -> list[Level]:
    """Here, in this process: llama-server with ``slots`` slots, each level's requests at once."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_parallel = slots
    params.n_ctx = slots * 512
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(params)
    _stream_all(server, ["Hello"], 4)  # the first call's costs
    out = []
    for n in levels:
        sent = time.monotonic()
        tokens, firsts, lasts = _stream_all(server, [prompt_for(i) for i in range(n)], max_new_tokens)
        out.append(Level.of(n, tokens, sent, firsts, lasts))
    del server
    return out


def _stream_all(server: Any, prompts: list[str], max_new_tokens: int) -> tuple[int, list[float], list[float]]:
    firsts: list[float] = []
    lasts: list[float] = []
    counts: list[int] = []
    lock = threading.Lock()

    def one(prompt: str) -> None:
        first: list[float] = []
        tokens = 0

        def on_chunk(chunk: dict[str, Any]) -> bool:
            nonlocal tokens
            if any(choice.get("text") for choice in chunk.get("choices", ())):
                tokens += 1
                if not first:
                    first.append(time.monotonic())
            return False

        body = {
            "prompt": prompt,
            "max_tokens": max_new_tokens,
            "temperature": 0.7,
            "top_p": 0.95,
            "ignore_eos": True,
            "stream": True,
            **BOT_SAMPLING,
        }
        server.handle_completions(body, on_chunk)
        with lock:
            firsts.extend(first)
            lasts.append(time.monotonic())
            counts.append(tokens)

    threads = [threading.Thread(target=one, args=(p,)) for p in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), firsts, lasts


def measure_server(
    gguf: Path, levels: Sequence[int], max_new_tokens: int, slots: int, threads: int
) -> list[Level]:
    """llama-server's levels in a fresh process (it does not share the cores with the bot)."""
    command = [sys.executable, "-m", "benchmarks.scaling", "--server-only", "--gguf", str(gguf)]
    command += ["--levels", ",".join(map(str, levels)), "--max-new-tokens", str(max_new_tokens)]
    command += ["--slots", str(slots), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=True)
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("["))
    return [Level(**level) for level in json.loads(line)]


# -- the report ------------------------------------------------------------------------------------


def table(bot: Sequence[Level], server: Sequence[Level]) -> list[str]:
    head = f"{'at once':>8} | {'bot tok/s':>9} {'first p50/p95 s':>16} {'last p50/p95 s':>16}"
    head += f" | {'llama-server tok/s':>18} {'first p50/p95 s':>16} {'last p50/p95 s':>16} | {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for b, s in zip(bot, server, strict=True):
        lines.append(
            f"{b.requests:>8} | {b.tok_s:>9.1f} {b.first_p50_s:>7.2f} / {b.first_p95_s:<6.2f}"
            f" {b.last_p50_s:>7.2f} / {b.last_p95_s:<6.2f} | {s.tok_s:>18.1f}"
            f" {s.first_p50_s:>7.2f} / {s.first_p95_s:<6.2f} {s.last_p50_s:>7.2f} / {s.last_p95_s:<6.2f}"
            f" | {b.tok_s / s.tok_s if s.tok_s else 0:>5.2f}x"
        )
    return lines


def plot(bot: Sequence[Level], server: Sequence[Level], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [b.requests for b in bot]
    fig, (rate, wait) = plt.subplots(1, 2, figsize=(11, 4.2))
    for levels_of, name, style in ((bot, "whole bot", "o-"), (server, "llama-server", "s--")):
        rate.plot(levels, [x.tok_s for x in levels_of], style, label=name)
        wait.plot(levels, [x.last_p95_s for x in levels_of], style, label=f"{name}: last text, p95")
        wait.plot(
            levels, [x.first_p95_s for x in levels_of], style, alpha=0.45, label=f"{name}: first text, p95"
        )
    for axis in (rate, wait):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(n) for n in levels])
        axis.set_xlabel("requests at once")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    rate.set_ylabel("tokens/s, all requests")
    wait.set_ylabel("seconds from the request")
    wait.set_yscale("log")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--levels", default=",".join(map(str, LEVELS)), help="requests at once, comma-separated"
    )
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--slots", type=int, default=8, help="MAX_BATCH_SIZE, and llama-server's slots")
    parser.add_argument(
        "--threads", type=int, default=2, help="llama-server's threads (the bot's: one per core)"
    )
    parser.add_argument("--gguf", type=Path, default=None, help="the GGUF (default: the default model's)")
    parser.add_argument("--plot", type=Path, default=None, help="write the plot (PNG) here")
    parser.add_argument("--server-only", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    gguf = args.gguf or fetch.default_gguf(DEFAULT_MODEL_DIR.parent, log=lambda *_: None)
    if args.server_only:
        found = server_levels(gguf, levels, args.max_new_tokens, args.slots, args.threads)
        print(json.dumps([asdict(level) for level in found]), flush=True)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    logging.getLogger("discord").setLevel(logging.ERROR)
    bot = asyncio.run(bot_levels(gguf, levels, args.max_new_tokens, args.slots))
    log.info("llama-server, in a fresh process")
    server = measure_server(gguf, levels, args.max_new_tokens, args.slots, args.threads)
    where = cpu()
    title = (
        f"{gguf.name} on llama.cpp, {args.slots} slots, {args.max_new_tokens} tokens a request · "
        f"CPU: {where['model']} ({' '.join(where['flags']) or 'no avx512/bf16 flags'})"
    )
    print(title)
    print("\n".join(table(bot, server)))
    if args.plot is not None:
        plot(bot, server, args.plot, title)
        print(f"plot: {args.plot}")
    report = {
        "cpu": where,
        "gguf": str(gguf),
        "slots": args.slots,
        "max_new_tokens": args.max_new_tokens,
        "bot": [asdict(level) for level in bot],
        "llama_server": [asdict(level) for level in server],
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
