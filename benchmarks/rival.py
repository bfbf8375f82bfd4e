"""The rival a server admin would pick instead: llama.cpp's server, on the same GGUF, same threads.

``python -m benchmarks.rival --gguf PATH`` runs llama-server in-process through the ``xllamacpp``
wheel (continuous batching over ``--slots`` slots), sends the benchmark's prompts all at once and
then one alone, temperature 0.7 and top-p 0.95 with every token generated, and prints one JSON
line. It measures llama-server twice: on its own defaults for the other samplers (top-k 40,
min-p 0.05) and on the bot's defaults (top-k 50, min-p 0, as transformers' ``generate``); then the
latter again beside one busy process (a neighbour that never sleeps, as on a shared machine). ``benchmarks.throughput`` runs it in a fresh process of its own, after
the bot's workloads, so neither competes with the other for the cores or the memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.measure import busy_neighbour
from benchmarks.workloads import PROMPTS


@dataclass(frozen=True)
class RivalReport:
    engine: str  # e.g. "llama-server (xllamacpp 2026.10.11549)"
    slots: int
    threads: int
    together_tok_s: float  # len(PROMPTS[:slots]) requests at once, on llama-server's defaults
    alone_tok_s: float  # one request alone, on its defaults
    tokens_together: int
    tokens_alone: int
    same_together_tok_s: float = 0.0  # at once, with the bot's default sampling (top-k 50, min-p 0)
    same_alone_tok_s: float = 0.0  # alone, with the bot's default sampling
    busy_together_tok_s: float = 0.0  # at once, the bot's sampling, beside one busy process

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# The bot's defaults for the samplers llama-server would otherwise pick itself (top-k 40, min-p 0.05).
BOT_SAMPLING = {"top_k": 50, "min_p": 0.0}


def _complete(server: Any, prompt: str, max_new_tokens: int, out: list[int], extra: dict[str, Any]) -> None:
    request = {
        "prompt": prompt,
        "max_tokens": max_new_tokens,
        "temperature": 0.7,
        "top_p": 0.95,
        "ignore_eos": True,  # as many tokens as the bot is asked for, so the rates compare
        **extra,
    }
    result = server.handle_completions(request)
    out.append(int(result.get("usage", {}).get("completion_tokens", 0)))


def _timed(
    server: Any, prompts: list[str], max_new_tokens: int, extra: dict[str, Any] | None = None
) -> tuple[int, float]:
    """(tokens, seconds) for these prompts sent at once (the server runs them in its slots)."""
    counts: list[int] = []
    threads = [
        threading.Thread(target=_complete, args=(server, p, max_new_tokens, counts, extra or {}))
        for p in prompts
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), time.monotonic() - started


def run(gguf: Path, *, slots: int = 8, threads: int = 2, max_new_tokens: int = 64) -> RivalReport:
    """Here, in this process: load the server, warm it, then 8 at once and one alone."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_parallel = slots
    params.n_ctx = slots * 512
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(params)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(slots)]
    _timed(server, prompts[:1], 4)  # the first call's costs, as the bot's warm-up pays them
    tokens_together, seconds_together = _timed(server, prompts, max_new_tokens)
    tokens_alone, seconds_alone = _timed(server, prompts[:1], max_new_tokens)
    same_together = _rate(*_timed(server, prompts, max_new_tokens, BOT_SAMPLING))
    same_alone = _rate(*_timed(server, prompts[:1], max_new_tokens, BOT_SAMPLING))
    with busy_neighbour():
        busy_together = _rate(*_timed(server, prompts, max_new_tokens, BOT_SAMPLING))
    version = getattr(xllamacpp, "__version__", "?")
    return RivalReport(
        engine=f"llama-server (xllamacpp {version})",
        slots=slots,
        threads=threads,
        together_tok_s=tokens_together / seconds_together,
        alone_tok_s=tokens_alone / seconds_alone,
        tokens_together=tokens_together,
        tokens_alone=tokens_alone,
        same_together_tok_s=same_together,
        same_alone_tok_s=same_alone,
        busy_together_tok_s=busy_together,
    )


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def http_server(
    gguf: Path, *, slots: int = 4, context: int = 512, threads: int = 2, port: int | None = None
) -> Iterator[str]:
    """llama-server on ``gguf`` over HTTP, as a user runs it beside the bot: yields its
    ``http://127.0.0.1:<port>/v1`` (``slots`` x ``context`` tokens, continuous batching)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_parallel = slots
    params.n_ctx = slots * context
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.port = port or free_port()
    params.hostnames = ["127.0.0.1"]
    params.verbosity = 0
    params.fit_params = False
    server = xllamacpp.Server(params)
    try:
        yield f"http://127.0.0.1:{params.port}/v1"
    finally:
        del server  # its destructor stops the HTTP server and the model's loop


def unavailable() -> str | None:
    """Why the rival cannot run here (None: it can)."""
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        return "xllamacpp is not installed (`make setup` installs it)"
    return None


def measure(
    gguf: Path, *, slots: int = 8, threads: int = 2, max_new_tokens: int = 64, timeout: float = 300
) -> RivalReport | str:
    """In a fresh process; the report, or why there is none (a line to print)."""
    reason = unavailable()
    if reason is not None:
        return reason
    command = [sys.executable, "-m", "benchmarks.rival", "--gguf", str(gguf), "--slots", str(slots)]
    command += ["--threads", str(threads), "--max-new-tokens", str(max_new_tokens)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"llama-server did not finish within {timeout:g} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"llama-server failed (exit {done.returncode}): {last}"
    return RivalReport(**json.loads(lines[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rival", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, required=True, help="the GGUF file to serve")
    parser.add_argument("--slots", type=int, default=8, help="parallel slots, and requests sent at once")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the bot's torch threads)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    report = run(args.gguf, slots=args.slots, threads=args.threads, max_new_tokens=args.max_new_tokens)
    print(json.dumps(report.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
