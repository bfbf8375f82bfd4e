"""The peer: llmcord, the popular one-file Discord LLM bot, beside Transcord, in one run.

    python -m benchmarks.peer [--levels 1,8] [--rounds 3] [--max-new-tokens 64] [--gguf PATH]

Both bots answer members of a loopback Discord server from the same GGUF (the default model's Q4_1)
on llama.cpp, with the same sampling (Transcord's defaults: temperature 0.7, top-p 0.95, top-k 50,
min-p 0, no repetition penalty) and as many new tokens:

- Transcord, the whole bot (``App``, the llama.cpp engine, ``--slots`` slots), answers ``/generate``;
- llmcord (``jakobdylanc/llmcord`` at ``LLMCORD_COMMIT``: its own ``llmcord.py``, unchanged, in a
  venv of its own under ``data/peer/``) answers @mentions, streaming from llama-server (the
  ``xllamacpp`` wheel over HTTP, as many slots, ``--threads`` threads) through the OpenAI client,
  with ``ignore_eos`` so every answer is ``--max-new-tokens`` long.

At each level that many members, in as many channels, ask at once, ``--rounds`` times, after one
untimed round at the top level (the first calls' costs, on as many slots). Figures,
from the server's record of what a member saw: tokens/s (all tokens over the rounds' makespans), and
p50/p95 of the time from the interaction (or the member's message) to the first visible model text
and to the final edit. Each bot runs in a fresh process, one after the other, so neither shares the
cores with the other. It prints the CPU, a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.batched import BotBench
from benchmarks.measure import RequestTiming, cpu, loadavg, percentile
from benchmarks.rival import http_server
from benchmarks.workloads import DEFAULT_MODEL_DIR, Arrival, prompt_for
from loopback import Channel, LoopbackDiscord, MessageRecord
from model_service import fetch
from model_service.types import GenerationParams

ROOT = Path(__file__).resolve().parents[1]
PEER_DIR = ROOT / "data" / "peer"  # git-ignored: llmcord.py, its venv, its last log
LAUNCHER = Path(__file__).with_name("peer_llmcord.py")
LLMCORD_COMMIT = "d0aa8d211c2db2adb8be1aa7d5df5792f9dbd05f"  # 2026-07-02, "tweak wording"
LLMCORD_BLOB = "23d2d202250522cc91bcf67a19d4a47e10548242"  # `git hash-object` of its llmcord.py
LLMCORD_URL = f"https://raw.githubusercontent.com/jakobdylanc/llmcord/{LLMCORD_COMMIT}/llmcord.py"
# llmcord's requirements.txt (discord.py>=2.6.0, httpx, openai, python-dotenv, pyyaml), pinned as
# installed for the figures; discord.py as the bot's own.
LLMCORD_REQUIREMENTS = (
    "discord.py==2.7.1",
    "openai==3.63.0",
    "httpx==0.29.0",
    "PyYAML==6.0.4",
    "python-dotenv==1.2.4",
)
STREAMING_INDICATOR = " ⚪"  # llmcord's, at the end of every edit but the last
LEVELS = (1, 8)
log = logging.getLogger("benchmarks.peer")


@dataclass(frozen=True)
class Figures:
    """One level: ``requests`` at once, ``rounds`` times."""

    requests: int
    rounds: int
    tokens: int
    tok_s: float
    first_p50_s: float
    first_p95_s: float
    last_p50_s: float
    last_p95_s: float

    @classmethod
    def of(cls, requests: int, rounds: Sequence[Sequence[RequestTiming]]) -> Figures:
        timings = [t for one in rounds for t in one]
        span = sum(max(t.done for t in one) - min(t.sent for t in one) for one in rounds)
        tokens = sum(t.tokens for t in timings)
        firsts = [t.first_text - t.sent for t in timings]
        lasts = [t.done - t.sent for t in timings]
        return cls(
            requests,
            len(rounds),
            tokens,
            tokens / span if span > 0 else 0.0,
            percentile(firsts, 50),
            percentile(firsts, 95),
            percentile(lasts, 50),
            percentile(lasts, 95),
        )


# -- llmcord: its source, its venv, its config -----------------------------------------------------


def git_blob_id(data: bytes) -> str:
    """What ``git hash-object`` says of a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def llmcord_source(path: Path) -> Path | str:
    """``path``, holding llmcord.py at the pinned commit (fetched once if missing), or why not."""
    if not path.is_file():
        try:
            with urllib.request.urlopen(LLMCORD_URL, timeout=30) as answer:
                data = answer.read()
        except OSError as exc:
            return (
                f"llmcord's source is missing and {LLMCORD_URL} could not be fetched ({exc}).\n"
                f"Put llmcord.py of github.com/jakobdylanc/llmcord at commit {LLMCORD_COMMIT} in {path}, e.g.\n"
                f"  git clone https://github.com/jakobdylanc/llmcord && "
                f"git -C llmcord show {LLMCORD_COMMIT}:llmcord.py > {path}\n"
                "or pass --llmcord PATH."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    found = git_blob_id(path.read_bytes())
    if found != LLMCORD_BLOB:
        return f"{path} is not llmcord.py at commit {LLMCORD_COMMIT} (git blob {found}, not {LLMCORD_BLOB})"
    return path


def llmcord_python(venv: Path) -> Path:
    """The venv's python, made with llmcord's requirements the first time (pip, about 20 s)."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    wanted = "\n".join(LLMCORD_REQUIREMENTS)
    if python.exists() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    log.info("making llmcord's venv in %s", venv)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *LLMCORD_REQUIREMENTS], check=True)
    stamp.write_text(wanted)
    return python


def llmcord_config(token: str, base_url: str, max_new_tokens: int) -> dict[str, Any]:
    """llmcord's config.yaml (as JSON, which YAML reads): one provider, one model, the bot's sampling."""
    p = GenerationParams()
    sampling = {
        "temperature": p.temperature,
        "top_p": p.top_p,
        "top_k": p.top_k,
        "min_p": 0.0,  # as the bot's llama.cpp engine sends it
        "repeat_penalty": p.repetition_penalty,
        "max_tokens": max_new_tokens,
        "ignore_eos": True,  # every answer max_tokens long
    }
    nobody: dict[str, list[int]] = {"allowed_ids": [], "blocked_ids": []}
    return {
        "bot_token": token,
        "status_message": "benchmarks.peer",
        "max_text": 100000,
        "max_images": 0,
        "max_messages": 25,
        "use_plain_responses": False,
        "allow_dms": True,
        "permissions": {"users": {"admin_ids": [], **nobody}, "roles": nobody, "channels": nobody},
        "providers": {"llama-server": {"base_url": base_url}},
        "models": {"llama-server/smollm2": sampling},
        "system_prompt": "",
    }


# -- the two sides, each in a process of its own ---------------------------------------------------


async def transcord_side(
    gguf: Path, levels: Sequence[int], rounds: int, max_new_tokens: int, slots: int
) -> list[Figures]:
    overrides = {
        "MODELS": f"smollm2={gguf}",
        "MODEL_ENGINES": "smollm2=llama.cpp",
        "MAX_BATCH_SIZE": str(slots),
    }
    out = []
    with tempfile.TemporaryDirectory(prefix="transcord-peer-") as workdir:
        bench = BotBench("smollm2", DEFAULT_MODEL_DIR, Path(workdir), max(levels), overrides)
        async with bench:
            top = [Arrival(0.0, i, prompt_for(i), max_new_tokens) for i in range(max(levels))]
            await bench.run(top, timeout=300)  # untimed: the first calls' costs, on as many slots
            for n in levels:
                log.info("Transcord: %d at once", n)
                arrivals = [Arrival(0.0, i, prompt_for(i), max_new_tokens) for i in range(n)]
                out.append(Figures.of(n, [await bench.run(arrivals, timeout=300) for _ in range(rounds)]))
    return out


def llmcord_times(server: LoopbackDiscord, message: MessageRecord) -> tuple[float, float] | None:
    """When llmcord's reply to ``message`` first showed model text, and its final edit (no streaming
    indicator); None while it has not finished."""
    bot = server.bot_user.id
    versions = sorted(
        (v for reply in server.replies_to(message) if reply.author_id == bot for v in reply.versions),
        key=lambda v: v.at,
    )
    texts = [(v.at, str(v.embeds[0].get("description") or "") if v.embeds else v.content) for v in versions]
    first = next((at for at, text in texts if text.removesuffix(STREAMING_INDICATOR).strip()), None)
    done = next((at for at, text in texts if text.strip() and not text.endswith(STREAMING_INDICATOR)), None)
    return (first, done) if first is not None and done is not None else None


async def _llmcord_round(
    server: LoopbackDiscord, channels: Sequence[Channel], tokens: int
) -> list[RequestTiming]:
    mention = server.bot_user.mention
    posted = [await server.post_message(c, f"{mention} {prompt_for(i)}") for i, c in enumerate(channels)]
    await server.wait_for(lambda: all(llmcord_times(server, m) for m in posted), 300, "llmcord's final edits")
    timings = []
    for message in posted:
        times = llmcord_times(server, message)
        assert times is not None
        timings.append(RequestTiming(message.versions[0].at, times[0], times[1], tokens))  # ignore_eos
    return timings


async def llmcord_side(
    gguf: Path,
    levels: Sequence[int],
    rounds: int,
    max_new_tokens: int,
    slots: int,
    threads: int,
    source: Path,
) -> list[Figures]:
    python = llmcord_python(PEER_DIR / "venv")
    out = []
    journal = PEER_DIR / "llmcord.log"
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llmcord-peer-")))
        base_url = stack.enter_context(http_server(gguf, slots=slots, threads=threads))
        output = stack.enter_context(journal.open("wb"))
        async with LoopbackDiscord() as server:
            channels = [server.add_channel(f"bench-{i}") for i in range(max(levels))]
            config = llmcord_config(server.token, base_url, max_new_tokens)
            (workdir / "config.yaml").write_text(json.dumps(config, indent=2))
            command = [str(python), "-I", str(LAUNCHER), str(source), server.api_base, server.gateway_url]
            process = await asyncio.create_subprocess_exec(
                *command, cwd=workdir, stdout=output, stderr=output
            )
            exited = asyncio.create_task(process.wait(), name="llmcord")
            server.watch(exited)  # a wait fails at once if llmcord dies
            try:
                ready = "llmcord's ready (its /model command synced)"
                await server.wait_for(lambda: bool(server.synced_commands()), 60, ready)
                await _llmcord_round(server, channels, max_new_tokens)  # untimed, as Transcord's
                for n in levels:
                    log.info("llmcord: %d at once", n)
                    found = [
                        await _llmcord_round(server, channels[:n], max_new_tokens) for _ in range(rounds)
                    ]
                    out.append(Figures.of(n, found))
                refused = [*server.contract_violations, *server.unmatched_calls]
                if refused:
                    raise RuntimeError(f"llmcord made calls Discord would refuse: {refused}")
            except BaseException:
                tail = journal.read_text(errors="replace").splitlines()[-20:]
                log.error("llmcord's log (%s), last lines:\n%s", journal, "\n".join(tail))
                raise
            finally:
                server.unwatch(exited)
                if process.returncode is None:
                    process.terminate()
                await exited
    return out


def measure_side(side: str, args: argparse.Namespace, gguf: Path, source: Path) -> list[Figures]:
    """One side's levels in a fresh process (its figures on stdout)."""
    command = [sys.executable, "-m", "benchmarks.peer", "--side", side, "--gguf", str(gguf)]
    command += ["--levels", args.levels, "--rounds", str(args.rounds), "--slots", str(args.slots)]
    command += ["--max-new-tokens", str(args.max_new_tokens), "--threads", str(args.threads)]
    command += ["--llmcord", str(source)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    said = done.stderr.splitlines()  # llama.cpp's loading log too: only ours goes on, or the end
    shown = [line for line in said if " benchmarks.peer: " in line] if done.returncode == 0 else said[-40:]
    print("\n".join(shown), file=sys.stderr, flush=True)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed (exit {done.returncode})")
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("["))
    return [Figures(**level) for level in json.loads(line)]


# -- the report ------------------------------------------------------------------------------------


def table(transcord: Sequence[Figures], llmcord: Sequence[Figures]) -> list[str]:
    head = f"{'at once':>8} | {'Transcord tok/s':>15} {'first p50/p95 s':>16} {'last p50/p95 s':>16}"
    head += f" | {'llmcord tok/s':>13} {'first p50/p95 s':>16} {'last p50/p95 s':>16} | {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for t, c in zip(transcord, llmcord, strict=True):
        lines.append(
            f"{t.requests:>8} | {t.tok_s:>15.1f} {t.first_p50_s:>7.2f} / {t.first_p95_s:<6.2f}"
            f" {t.last_p50_s:>7.2f} / {t.last_p95_s:<6.2f} | {c.tok_s:>13.1f}"
            f" {c.first_p50_s:>7.2f} / {c.first_p95_s:<6.2f} {c.last_p50_s:>7.2f} / {c.last_p95_s:<6.2f}"
            f" | {ratio(t, c):>5.2f}x"
        )
    return lines


def ratio(transcord: Figures, llmcord: Figures) -> float:
    """Transcord's tokens/s over llmcord's."""
    return transcord.tok_s / llmcord.tok_s if llmcord.tok_s else 0.0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--levels", default=",".join(map(str, LEVELS)), help="requests at once, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=3, help="times each level is sent")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--slots", type=int, default=8, help="MAX_BATCH_SIZE, and llama-server's slots")
    parser.add_argument(
        "--threads", type=int, default=2, help="llama-server's threads (the bot's: one per core)"
    )
    parser.add_argument("--gguf", type=Path, default=None, help="the GGUF (default: the default model's)")
    parser.add_argument(
        "--llmcord", type=Path, default=PEER_DIR / "llmcord.py", help="llmcord.py at the pinned commit"
    )
    parser.add_argument("--side", choices=("transcord", "llmcord"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    logging.getLogger("discord").setLevel(logging.ERROR)
    source = llmcord_source(args.llmcord)
    if isinstance(source, str):
        print(source, file=sys.stderr)
        return 2
    gguf = args.gguf or fetch.default_gguf(DEFAULT_MODEL_DIR.parent, log=lambda *_: None)
    if args.side is not None:
        if args.side == "transcord":
            run = transcord_side(gguf, levels, args.rounds, args.max_new_tokens, args.slots)
        else:
            run = llmcord_side(
                gguf, levels, args.rounds, args.max_new_tokens, args.slots, args.threads, source
            )
        print(json.dumps([asdict(level) for level in asyncio.run(run)]), flush=True)
        return 0
    llmcord_python(PEER_DIR / "venv")  # before any clock runs
    transcord = measure_side("transcord", args, gguf, source)
    llmcord = measure_side("llmcord", args, gguf, source)
    where = cpu()
    print(
        f"{gguf.name} on llama.cpp, {args.slots} slots, {args.max_new_tokens} tokens a request, "
        f"{args.rounds} rounds · llmcord {LLMCORD_COMMIT[:7]} · "
        f"CPU: {where['model']} ({' '.join(where['flags']) or 'no avx512/bf16 flags'})"
    )
    print("\n".join(table(transcord, llmcord)))
    report = {
        "cpu": where,
        "loadavg": loadavg(),  # after the run: others' work on the same cores shows here
        "gguf": str(gguf),
        "slots": args.slots,
        "max_new_tokens": args.max_new_tokens,
        "rounds": args.rounds,
        "llmcord_commit": LLMCORD_COMMIT,
        "transcord": [asdict(level) for level in transcord],
        "llmcord": [asdict(level) for level in llmcord],
        "ratio": [round(ratio(t, c), 3) for t, c in zip(transcord, llmcord, strict=True)],
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
