"""Past one box: two bot processes on two shards, one PostgreSQL, one inference server, in one run.

    scripts/test-postgres .venv/bin/python -m benchmarks.shards [--requests 16] [--max-new-tokens 48]

(``make bench-shards`` does that.) llama-server serves the default GGUF over HTTP on loopback
(``--slots`` slots, continuous batching). First the engine alone: ``--requests`` streamed
completions sent to it at once. Then the same requests as real ``/generate`` interactions through
the loopback Discord, half in a guild on shard 0 and half in one on shard 1, each shard run by
its own ``python bot.py`` (SHARD_COUNT=2) whose model is that server (a remote catalog entry),
both on one fresh PostgreSQL schema. It prints the aggregate tokens/s of both and their ratio,
which process answered what, and whether a setting and a channel limit held across the two
processes; as its last line one JSON object. Compare within one run: the machine's cores are
shared by the server, both bots and the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from app.environment import DEFAULT_MODEL_GGUF
from benchmarks.measure import cpu, loadavg
from benchmarks.rival import http_server
from benchmarks.workloads import DEFAULT_MODEL_DIR, PROMPTS
from loopback import InteractionRecord, LoopbackDiscord

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "MTIzNDU2Nzg5MDEy.Bench-Token.sh4rds"
FOOTER = re.compile(r"\n-# (\d+) tokens · ")
START_S = 120.0


def _prompts(count: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(count)]


# -- the engine alone -----------------------------------------------------------------------------


async def engine_alone(url: str, prompts: Sequence[str], max_new_tokens: int) -> tuple[int, float]:
    """(tokens, seconds) for ``prompts`` streamed from the server all at once, as the bot asks."""
    async with aiohttp.ClientSession() as session:

        async def one(prompt: str) -> int:
            body = {
                "prompt": prompt,
                "max_tokens": max_new_tokens,
                "temperature": 0.7,
                "top_p": 0.95,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            usage, events = 0, 0
            async with session.post(f"{url}/completions", json=body) as response:
                response.raise_for_status()
                async for raw in response.content:
                    line = raw.decode().strip()
                    if line.startswith("data: {"):
                        event = json.loads(line[6:])
                        usage = int((event.get("usage") or {}).get("completion_tokens") or usage)
                        events += any(c.get("text") for c in event.get("choices") or [])
            return usage or events  # the server's count; else one streamed event a token

        started = time.monotonic()
        counts = await asyncio.gather(*(one(p) for p in prompts))
        return sum(counts), time.monotonic() - started


# -- the bot on two shards --------------------------------------------------------------------------


@asynccontextmanager
async def fresh_schema(server_url: str) -> AsyncIterator[str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
        parts = urlsplit(server_url)
        query = "&".join(q for q in (parts.query, f"search_path={name}") if q)
        yield urlunsplit(parts._replace(query=query))
    finally:
        await conn.execute(f"DROP SCHEMA {name} CASCADE")
        await conn.close()


async def start_bot(folder: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (before the run, not during it)
    (folder / "empty.env").write_text("")
    inherited = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    with (folder / "out.txt").open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "bot.py"),
            "--env-file",
            str(folder / "empty.env"),
            cwd=folder,
            env={**inherited, "PYTHONUNBUFFERED": "1", **env},
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )


def footer_tokens(record: InteractionRecord) -> int | None:
    found = FOOTER.search(record.content or "")
    return int(found.group(1)) if found else None


def shard_of_record(server: LoopbackDiscord, record: InteractionRecord) -> int:
    for shard, sessions in server.sessions_by_shard().items():
        for session in sessions:
            if any((p.get("d") or {}).get("id") == str(record.id) for p in session.sent):
                return shard
    return -1


def bot_env(server: LoopbackDiscord, database: str, engine_url: str, max_new_tokens: int) -> dict[str, str]:
    """A bot process's settings for a shard of two on the loopback server: the shared database,
    the default model served by ``engine_url`` (its tokenizer from the local folder)."""
    return {
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_API_BASE": server.api_base,
        "DISCORD_GATEWAY_URL": server.gateway_url,
        "DATABASE_URL": database,
        "SHARD_COUNT": "2",
        "MODELS": f"smollm2={engine_url}",
        "REMOTE_TOKENIZERS": f"smollm2={DEFAULT_MODEL_DIR}",
        "DEFAULT_MAX_NEW_TOKENS": str(max_new_tokens),
        "STREAM_EDIT_INTERVAL_S": "1.0",
        "MODEL_OFFLINE": "true",
    }


async def through_the_bots(
    url: str, database: str, prompts: Sequence[str], max_new_tokens: int, work: Path
) -> dict[str, Any]:
    async with LoopbackDiscord(token=TOKEN, shard_count=2, max_concurrency=2) as server:
        assert server.guild is not None and server.moderator is not None
        second = server.add_guild("Second Guild", shard=1)
        visitor = server.add_member("visitor", guild=second)
        half = (len(prompts) + 1) // 2
        places = [(server.add_channel(f"a-{i}"), server.member) for i in range(half)]
        places += [(server.add_channel(f"b-{i}", guild=second), visitor) for i in range(len(prompts) - half)]
        env = {
            **bot_env(server, database, url, max_new_tokens),
            "MAX_BATCH_SIZE": str(len(prompts)),
            "QUEUE_LIMIT": str(4 * len(prompts)),
            "MAX_NEW_TOKENS_CAP": "1024",
        }
        bots = [await start_bot(work / f"shard-{i}", {**env, "SHARD_IDS": str(i)}) for i in (0, 1)]
        try:

            def ready() -> bool:
                for bot in bots:
                    if bot.returncode is not None:
                        raise RuntimeError(f"a bot process exited {bot.returncode}; see {work}")
                by_shard = server.sessions_by_shard()
                return all(any(s.conn and s.conn.ready for s in by_shard.get(i, [])) for i in (0, 1))

            await server.wait_for(ready, START_S, "both shard processes")
            warm = await server.invoke("generate", {"prompt": "Hi", "max_new_tokens": 2})
            await warm.wait_for(lambda r: footer_tokens(r) is not None, 60)

            started = time.monotonic()
            records = [
                await server.invoke("generate", {"prompt": p}, channel=channel, user=user)
                for p, (channel, user) in zip(prompts, places, strict=True)
            ]
            for record in records:
                await record.wait_for(lambda r: footer_tokens(r) is not None, 300)
            seconds = time.monotonic() - started
            tokens = sum(footer_tokens(r) or 0 for r in records)
            by_shard = [shard_of_record(server, r) for r in records]
            agree, held = await _shared_state(server, places[0][0])
        finally:
            for bot in bots:
                if bot.returncode is None:
                    bot.terminate()
            await asyncio.gather(*(bot.wait() for bot in bots))
    return {
        "tokens": tokens,
        "seconds": seconds,
        "answered_by_shard": {str(k): by_shard.count(k) for k in sorted(set(by_shard))},
        "settings_agree": agree,
        "limit_held": held,
    }


async def _shared_state(server: LoopbackDiscord, channel: Any) -> tuple[bool, bool]:
    """A setting made through shard 0's process, read through shard 1's; a limit of 1 in flight."""
    moderator = server.moderator
    done = await server.invoke("config set", {"temperature": 0.35}, user=moderator, channel=channel)
    await done.wait_for(lambda r: bool(r.content), 30)
    shown = await server.invoke("settings show", channel=channel, shard=1)
    await shown.wait_for(lambda r: bool(r.content), 30)
    agree = "**temperature**: `0.35`" in (shown.content or "")
    limited = await server.invoke("mod limit", {"n": 1}, user=moderator, channel=channel)
    await limited.wait_for(lambda r: bool(r.content), 30)
    long = await server.invoke("generate", {"prompt": "Once", "max_new_tokens": 200}, channel=channel)
    await long.wait_for(lambda r: " …" in (r.content or "") or footer_tokens(r) is not None, 60)
    other = await server.invoke("generate", {"prompt": "Twice"}, channel=channel, shard=1)
    await other.wait_for(lambda r: bool(r.content), 30)
    held = footer_tokens(long) is None and "This channel is busy" in (other.content or "")
    await long.wait_for(lambda r: footer_tokens(r) is not None, 120)
    return agree, held


# -- the run -------------------------------------------------------------------------------------


async def run(requests: int, max_new_tokens: int, slots: int, database: str) -> dict[str, Any]:
    gguf = DEFAULT_MODEL_DIR.parent / DEFAULT_MODEL_GGUF
    if not gguf.exists():
        raise SystemExit(f"{gguf} is missing: run `make setup` first")
    prompts = _prompts(requests)
    with http_server(gguf, slots=slots, context=512) as url, tempfile.TemporaryDirectory() as work:
        await engine_alone(url, prompts[:1], 4)  # the server's first-call costs, paid once
        engine_tokens, engine_s = await engine_alone(url, prompts, max_new_tokens)
        async with fresh_schema(database) as schema:
            bots = await through_the_bots(url, schema, prompts, max_new_tokens, Path(work))
    engine_rate = engine_tokens / engine_s
    bot_rate = bots["tokens"] / bots["seconds"]
    return {
        "cpu": cpu(),
        "loadavg": loadavg(),
        "requests": requests,
        "max_new_tokens": max_new_tokens,
        "slots": slots,
        "engine_tok_s": round(engine_rate, 1),
        "engine_tokens": engine_tokens,
        "bots_tok_s": round(bot_rate, 1),
        "bots_tokens": bots["tokens"],
        "bots_vs_engine": round(bot_rate / engine_rate, 3),
        "answered_by_shard": bots["answered_by_shard"],
        "settings_agree": bots["settings_agree"],
        "limit_held": bots["limit_held"],
    }


def render(report: dict[str, Any]) -> str:
    flags = ", ".join(report["cpu"]["flags"]) or "none of avx2/avx512"
    lines = [
        f"CPU: {report['cpu']['model']} ({flags}); loadavg {report['loadavg']}",
        f"{report['requests']} requests at once, {report['max_new_tokens']} new tokens each, "
        f"llama-server with {report['slots']} slots",
        f"  engine alone (HTTP, streamed):      {report['engine_tok_s']:>7.1f} tok/s",
        f"  2 bot processes on 2 shards:        {report['bots_tok_s']:>7.1f} tok/s"
        f"  ({report['bots_vs_engine']:.2f}x the engine)",
        f"  answered by shard: {report['answered_by_shard']}",
        f"  a setting made through one process, read through the other: "
        f"{'the same' if report['settings_agree'] else 'DIFFERENT'}",
        f"  a channel limit of 1 across both processes: {'held' if report['limit_held'] else 'NOT held'}",
        json.dumps(report),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shards", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--slots", type=int, default=16)
    args = parser.parse_args(argv)
    database = os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if not database:
        why = os.environ.get("TEST_DATABASE_UNAVAILABLE", "no DATABASE_URL or TEST_DATABASE_URL")
        print(f"benchmarks.shards needs a PostgreSQL server: {why}", file=sys.stderr)
        return 2
    report = asyncio.run(run(args.requests, args.max_new_tokens, args.slots, database))
    print(render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
