"""A crowd, fairly: what members see when more ask at once than the engine has slots.

``python -m benchmarks.crowd`` (``make bench-crowd``) starts the whole bot on its defaults
(``QUEUE_LIMIT`` 256, ``MAX_BATCH_SIZE`` 8, the default model) against the loopback Discord
server and measures, from the interaction to the final edit:

1. **A flood and a lone member**: 24 members of one channel send ``/generate`` at once, then one
   member of another channel. How many were answered and refused, how many waiting replies showed
   their place, and when the lone request finished against the flood's median.
2. **Fair against first come, first served**: 64 requests, 4 from each of 16 channels, sent
   round robin; then the same 64 from one member of one channel (the queue's order is then
   first come, first served). p95 and median time to the final edit, and tokens/s, for both.

It prints a table and one JSON line, with the CPU's model and flags.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.environment import DEFAULT_MODEL_NAME
from benchmarks.batched import BotBench, _settled, _timing
from benchmarks.measure import SPEED_FLAGS, RequestTiming, cpu, percentile
from benchmarks.workloads import DEFAULT_MODEL_DIR, Arrival, prompt_for
from loopback import Channel, InteractionRecord
from loopback.world import Member

log = logging.getLogger("benchmarks.crowd")
WAITING_SHOWN = "in the queue"


async def _send(
    bench: BotBench, asks: Sequence[tuple[Channel, Member]], max_new_tokens: int
) -> list[tuple[InteractionRecord, RequestTiming | None]]:
    """Every ask at once (as fast as the server takes them); each record and its timing, None
    where it was refused."""
    records = []
    for i, (channel, member) in enumerate(asks):
        options = {"prompt": prompt_for(i), "max_new_tokens": max_new_tokens}
        records.append(await bench.server.invoke("generate", options, channel=channel, user=member))
    await asyncio.gather(*(r.wait_for(_ended, 600) for r in records))
    out: list[tuple[InteractionRecord, RequestTiming | None]] = []
    for i, record in enumerate(records):
        try:
            out.append((record, _timing(Arrival(0.0, i, "", max_new_tokens), record)))
        except RuntimeError:
            out.append((record, None))
    return out


def _ended(record: InteractionRecord) -> bool:
    """Answered, refused, or ended with an error in place (a wait past the deadline)."""
    return _settled(record) or any(icon in (record.content or "") for icon in ("⌛", "❌"))


def _showed_place(record: InteractionRecord) -> bool:
    return any(WAITING_SHOWN in v.content for m in record.messages for v in m.versions)


def _figures(done: Sequence[tuple[InteractionRecord, RequestTiming | None]]) -> dict[str, Any]:
    timings = [t for _, t in done if t is not None]
    start = min(t.sent for t in timings) if timings else 0.0
    finishes = [t.done - start for t in timings]
    span = max(finishes, default=0.0)
    return {
        "answered": len(timings),
        "refused": len(done) - len(timings),
        "showed_place": sum(_showed_place(r) for r, _ in done),
        "final_p50_s": percentile(finishes, 50),
        "final_p95_s": percentile(finishes, 95),
        "tok_s": sum(t.tokens for t in timings) / span if span else 0.0,
    }


async def run(max_new_tokens: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="transcord-crowd-") as workdir:
        # The bot's own QUEUE_LIMIT (256), not the other benchmarks' 32: this one measures the queue.
        # A deadline long enough for 64 at once on 2 cores, so both orders answer everyone and
        # compare on the same work (at the default 120 s the bot refuses at once, by its estimate,
        # what could not start in time).
        overrides = {"QUEUE_LIMIT": "256", "REQUEST_TIMEOUT_S": "600"}
        bench = BotBench(
            DEFAULT_MODEL_NAME, DEFAULT_MODEL_DIR, Path(workdir), channels=17, overrides=overrides
        )
        async with bench:
            server = bench.server
            members = [server.add_member(f"member-{i}") for i in range(64)]
            await bench.run([Arrival(0.0, 0, "Hello", 4)], timeout=120)  # the first call's costs

            log.info("a flood of 24 in one channel, then one member in another")
            flood_channel, lone_channel = bench.channels[0], bench.channels[1]
            asks = [(flood_channel, members[i]) for i in range(24)] + [(lone_channel, members[24])]
            flood = await _send(bench, asks, max_new_tokens)
            lone = flood[-1][1]
            flood_done = [t.done for _, t in flood[:-1] if t is not None]
            scenario_1 = {
                **_figures(flood),
                "lone_final_s": (lone.done - lone.sent) if lone else None,
                "flood_median_final_s": percentile([d - flood[0][1].sent for d in flood_done], 50)
                if flood[0][1]
                else None,
            }

            log.info("64 from 16 channels, fair")
            fair_asks = [(bench.channels[1 + i % 16], members[i % 16 * 4 + i // 16]) for i in range(64)]
            fair = _figures(await _send(bench, fair_asks, max_new_tokens))
            log.info("the same 64 from one member of one channel: first come, first served")
            fcfs = _figures(await _send(bench, [(bench.channels[0], members[0])] * 64, max_new_tokens))
    return {
        "cpu": cpu(),
        "max_new_tokens": max_new_tokens,
        "flood": scenario_1,
        "fair_64": fair,
        "fcfs_64": fcfs,
        "fair_p95_over_fcfs": fair["final_p95_s"] / fcfs["final_p95_s"] if fcfs["final_p95_s"] else None,
    }


def render(report: dict[str, Any]) -> str:
    f, a, b = report["flood"], report["fair_64"], report["fcfs_64"]
    c = report["cpu"]
    lines = [
        f"CPU: {c['model']} · {os.cpu_count()} cores · flags {' '.join(c['flags']) or 'none of ' + ', '.join(SPEED_FLAGS)}",
        "",
        "1. 24 at once in one channel, then 1 in another (the bot's defaults, llama.cpp):",
        f"   answered {f['answered']}, refused {f['refused']}, waiting replies that showed their place "
        f"{f['showed_place']}",
        f"   the lone channel's request: final after {f['lone_final_s']:.1f} s; the flood's median "
        f"{f['flood_median_final_s']:.1f} s",
        "",
        "2. 64 at once, to the final edit:",
        f"{'':<34}{'p50 (s)':>10}{'p95 (s)':>10}{'tok/s':>10}{'answered':>10}",
        f"{'16 channels x 4 (fair shares)':<34}{a['final_p50_s']:>10.1f}{a['final_p95_s']:>10.1f}{a['tok_s']:>10.1f}{a['answered']:>10}",
        f"{'1 member (first come, first served)':<34}{b['final_p50_s']:>10.1f}{b['final_p95_s']:>10.1f}{b['tok_s']:>10.1f}{b['answered']:>10}",
        f"   fair p95 / first-come p95: {report['fair_p95_over_fcfs']:.2f}x",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crowd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens per request (32)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("discord", "transcord", "model_service", "httpx", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    report = asyncio.run(run(args.max_new_tokens))
    print(render(report))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
