"""Two bot processes (``python bot.py``) on the two shards of one Discord, sharing one PostgreSQL
and one inference server (llama-server over HTTP, the default model): each guild's commands reach
the process of its shard, a setting made through one is the other's too, and a channel's limit
holds across both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.environment import DEFAULT_MODEL_GGUF
from benchmarks.workloads import DEFAULT_MODEL_DIR
from loopback import InteractionRecord, LoopbackDiscord
from tests.e2e.reliability import GENERATION_FOOTER, settled
from tests.fixtures.bot_process import START_S, BotProcess
from tests.fixtures.openai_servers import llama_server
from tests.storage.backends import fresh_schema, postgres_server

pytestmark = pytest.mark.timeout(240)

TOKEN = "MTIzNDU2Nzg5MDEy.Shard-Token.tw0-pr0cesses"


def shard_env(server: LoopbackDiscord, url: str, model_url: str, shard: int) -> dict[str, str]:
    return {
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_API_BASE": server.api_base,
        "DISCORD_GATEWAY_URL": server.gateway_url,
        "DATABASE_URL": url,
        "SHARD_COUNT": "2",
        "SHARD_IDS": str(shard),
        "MODELS": f"smollm2={model_url}",
        "REMOTE_TOKENIZERS": f"smollm2={DEFAULT_MODEL_DIR}",
        "MODEL_OFFLINE": "true",
        "STREAM_EDIT_INTERVAL_S": "0.2",
        "SHUTDOWN_GRACE_S": "0.5",
        "MAX_NEW_TOKENS_CAP": "300",
    }


def answered_by(server: LoopbackDiscord, record: InteractionRecord) -> int:
    """The shard whose session was sent the interaction."""
    shards = {
        shard
        for shard, sessions in server.sessions_by_shard().items()
        for session in sessions
        if any(
            p.get("d", {}).get("id") == str(record.id)
            for p in session.sent
            if p.get("t") == "INTERACTION_CREATE"
        )
    }
    assert len(shards) == 1, shards
    return shards.pop()


async def both_ready(server: LoopbackDiscord, processes: list[BotProcess]) -> None:
    def ready() -> bool:
        for process in processes:
            assert process.process is not None
            if process.process.returncode is not None:
                raise AssertionError(
                    f"bot.py exited {process.process.returncode}:\n{process.output()[-3000:]}"
                )
        return all(
            any(s.conn is not None and s.conn.ready for s in server.sessions_by_shard().get(shard, []))
            for shard in range(len(processes))
        )

    await server.wait_for(ready, START_S, "both shard processes to connect")


async def test_two_shard_processes_share_settings_and_a_channel_limit(tmp_path: Path) -> None:
    postgres = postgres_server()  # skips, saying why, where there is none
    gguf = DEFAULT_MODEL_DIR.parent / DEFAULT_MODEL_GGUF
    if not gguf.exists():
        pytest.skip(f"the default model is not set up ({gguf}); make setup does it")
    with llama_server(gguf, slots=4, context=512) as model_url:
        await run_two_shards(tmp_path, postgres, model_url)


async def run_two_shards(tmp_path: Path, postgres: str, model_url: str) -> None:
    async with (
        fresh_schema(postgres) as url,
        LoopbackDiscord(token=TOKEN, shard_count=2, max_concurrency=2) as server,
    ):
        assert server.guild is not None and server.general is not None and server.moderator is not None
        assert server.shard_of(server.guild) == 0
        second = server.add_guild("Second Guild", shard=1)
        elsewhere = server.add_channel("lobby", guild=second)
        visitor = server.add_member("visitor", guild=second)
        processes = [
            BotProcess(tmp_path / f"shard-{i}", shard_env(server, url, model_url, i)) for i in (0, 1)
        ]
        try:
            for process in processes:
                await process.start()
            await both_ready(server, processes)

            # Each guild's command reaches the process of its shard, and both answer.
            here = await server.invoke("generate", {"prompt": "Once upon a time", "max_new_tokens": 8})
            there = await server.invoke(
                "generate",
                {"prompt": "Once upon a time", "max_new_tokens": 8},
                channel=elsewhere,
                user=visitor,
            )
            for record, shard in ((here, 0), (there, 1)):
                await record.wait_for(lambda r: GENERATION_FOOTER.search(r.content or "") is not None, 60)
                assert answered_by(server, record) == shard

            # A setting made through one process is the other's too.
            changed = await server.invoke("config set", {"temperature": 0.3}, user=server.moderator)
            await changed.wait_for(settled, 30)
            assert (changed.content or "").startswith("⚙️"), changed.summary()
            shown = await server.invoke("settings show", shard=1)  # the same channel, the other process
            await shown.wait_for(settled, 30)
            assert answered_by(server, shown) == 1
            assert "**temperature**: `0.3`" in (shown.content or ""), shown.summary()
            status = await server.invoke("status", channel=elsewhere, user=visitor)
            await status.wait_for(settled, 30)
            assert "Shards: this process runs 1 of 2 (this server's: 1)" in (status.content or ""), (
                status.summary()
            )

            # A channel's limit holds across both: one request in flight here, through either process.
            limited = await server.invoke("mod limit", {"n": 1}, user=server.moderator)
            await limited.wait_for(settled, 30)
            long = await server.invoke("generate", {"prompt": "Once upon a time", "max_new_tokens": 300})
            await long.wait_for(lambda r: bool(r.content) and " …" in (r.content or ""), 60)
            refused = await server.invoke("generate", {"prompt": "Another"}, shard=1)
            await refused.wait_for(settled, 30)
            assert refused.ephemeral and "This channel is busy: 1 of its requests" in (refused.content or "")
            assert answered_by(server, refused) == 1
            await long.wait_for(lambda r: GENERATION_FOOTER.search(r.content or "") is not None, 120)
            await asyncio.sleep(0.3)
            after = await server.invoke("generate", {"prompt": "Now", "max_new_tokens": 4}, shard=1)
            await after.wait_for(lambda r: GENERATION_FOOTER.search(r.content or "") is not None, 60)
        finally:
            for process in processes:
                await process.stop()
