"""The bot as a real process (``python bot.py``) against a loopback server run by the test.

kill -9 in the middle of many settings writes loses no acknowledged write and leaves a sound
database; a reply cut off by kill -9 ends with the restart notice once the bot is back; SIGTERM during a generation ends the reply properly and the process exits 0 within
its grace period; a refused token ends the process with a message that says so, and the token
appears in none of its output.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from core.replies import RESTARTING
from loopback import InteractionRecord, LoopbackDiscord
from tests.e2e.reliability import GENERATION_FOOTER, settled, shown_text
from tests.fixtures.bot_process import START_S, BotProcess, connected_anew

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "MTIzNDU2Nzg5MDEy.Process-Token.k1ll-m3-N0t"
GRACE_S = 0.5


def bot_env(server: LoopbackDiscord, database: Path, models: str, **overrides: str) -> dict[str, str]:
    return {
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_API_BASE": server.api_base,
        "DISCORD_GATEWAY_URL": server.gateway_url,
        "MODELS": models,
        "DATABASE_PATH": str(database),
        "MODEL_DEVICE": "cpu",
        "MODEL_DTYPE": "float32",
        "MODEL_OFFLINE": "true",
        "STREAM_EDIT_INTERVAL_S": "0.2",
        "SHUTDOWN_GRACE_S": str(GRACE_S),
        "MAX_NEW_TOKENS_CAP": "1024",
        **overrides,
    }


def read_db(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return list(db.execute(sql, args))


def acknowledged(record: InteractionRecord) -> bool:
    return (record.content or "").startswith("⚙️ ")


async def test_kill_9_mid_writes_loses_nothing_acknowledged_and_sigterm_mid_generation_exits_0(
    tmp_path: Path, long_gpt2_dir: Path
) -> None:
    async with LoopbackDiscord(token=TOKEN) as server:
        assert server.moderator
        database = tmp_path / "data" / "transcord.sqlite3"
        env = bot_env(server, database, f"long={long_gpt2_dir}")
        channels = [server.add_channel(f"busy-{i}") for i in range(60)]
        by_id = {c.id: c for c in channels}

        first = await BotProcess(tmp_path / "first", env).start()
        try:
            await connected_anew(server, first)
            # Many writes at once; kill -9 as soon as 20 are acknowledged, with the rest in flight.
            sent: list[tuple[int, float, InteractionRecord]] = []
            for i, channel in enumerate(channels):
                temperature = round(0.01 * (i + 1), 2)
                record = await server.invoke(
                    "config set", {"temperature": temperature}, user=server.moderator, channel=channel
                )
                sent.append((channel.id, temperature, record))
            await server.wait_for(lambda: sum(acknowledged(r) for _, _, r in sent) >= 20, 30, "20 writes")
            assert first.process is not None
            first.process.send_signal(signal.SIGKILL)
            assert await first.wait(10) == -signal.SIGKILL
        finally:
            await first.stop()
        await asyncio.sleep(0.2)  # replies already on the wire still land
        acked = [(cid, t) for cid, t, r in sent if acknowledged(r)]
        assert 20 <= len(acked) < len(sent), (len(acked), len(sent))  # killed in the middle

        assert read_db(database, "PRAGMA integrity_check") == [("ok",)]
        stored = dict(
            read_db(
                database,
                "SELECT scope_id, value FROM settings WHERE scope = 'channel' AND key = 'temperature'",
            )
        )
        missing = [(cid, t) for cid, t in acked if stored.get(cid) != str(t)]
        assert not missing, missing

        # The next start opens the same file and carries on where the killed one stopped.
        second = await BotProcess(tmp_path / "second", env).start()
        try:
            await connected_anew(server, second)
            cid, temperature = acked[-1]
            show = await (await server.invoke("settings show", channel=by_id[cid])).wait_for(settled, 15)
            assert f"• **temperature**: `{temperature}` · *channel*" in (show.content or ""), show.summary()
            before = await (
                await server.invoke("config set", {"top_k": 7}, user=server.moderator, channel=channels[0])
            ).wait_for(settled, 15)
            assert acknowledged(before), before.summary()

            reply = await server.invoke(
                "generate",
                {"prompt": "Once upon a time", "max_new_tokens": 1000, "temperature": 0.0},
                channel=channels[1],
            )
            await reply.wait_for(lambda r: bool(r.edits) and r.edits[-1].content.endswith("…"), 30)
            assert second.process is not None
            signalled = time.monotonic()
            second.process.send_signal(signal.SIGTERM)
            code = await second.wait(GRACE_S + 20)
            took = time.monotonic() - signalled
        finally:
            await second.stop()

        await reply.wait_for(lambda r: not (r.content or "").endswith("…"), 5)
        content = reply.content or ""
        assert not reply.is_thinking
        assert content.endswith("\n\n" + RESTARTING) or GENERATION_FOOTER.search(shown_text(reply)), content[
            -300:
        ]
        assert code == 0, second.output()[-3000:]
        assert took < GRACE_S + 5, f"exit took {took:.1f} s after SIGTERM (grace {GRACE_S} s)"

        # Everything written before the restart is still there, in a sound file.
        assert read_db(database, "PRAGMA integrity_check") == [("ok",)]
        rows = read_db(database, "SELECT key, value FROM settings WHERE scope_id = ?", channels[0].id)
        assert set(rows) == {("temperature", "0.01"), ("top_k", "7")}
        for process in (first, second):
            assert TOKEN not in process.output()


def buttons(record: InteractionRecord) -> dict[str, bool]:
    """The reply's buttons as it shows them now: custom id -> enabled."""
    assert record.original is not None
    rows = record.original.versions[-1].components
    return {b["custom_id"]: not b.get("disabled", False) for row in rows for b in row["components"]}


async def test_a_reply_cut_off_by_kill_9_ends_with_the_restart_notice_after_the_restart(
    tmp_path: Path, long_gpt2_dir: Path
) -> None:
    async with LoopbackDiscord(token=TOKEN) as server:
        database = tmp_path / "data" / "transcord.sqlite3"
        env = bot_env(server, database, f"long={long_gpt2_dir}")
        channel = server.add_channel("cut-off")

        first = await BotProcess(tmp_path / "first", env).start()
        try:
            await connected_anew(server, first)
            reply = await server.invoke(
                "generate",
                {"prompt": "Once upon a time", "max_new_tokens": 1000, "temperature": 0.0},
                channel=channel,
            )
            await reply.wait_for(lambda r: bool(r.edits) and r.edits[-1].content.endswith("…"), 30)
            # While it is written, the database holds what edits it from another process.
            assert read_db(database, "SELECT reply_id, interaction_token FROM unfinished_replies") == [
                (reply.id, reply.token)
            ]
            assert first.process is not None
            first.process.send_signal(signal.SIGKILL)
            assert await first.wait(10) == -signal.SIGKILL
        finally:
            await first.stop()
        await asyncio.sleep(0.2)  # edits already on the wire still land
        half_written = reply.content or ""
        assert half_written.endswith("…") and RESTARTING not in half_written, half_written[-300:]

        second = await BotProcess(tmp_path / "second", env).start()
        try:
            await connected_anew(server, second)
            await reply.wait_for(lambda r: RESTARTING in (r.content or ""), 15)
            # Done with it: nothing is left for a later start to take over again.
            await server.wait_for(
                lambda: read_db(database, "SELECT COUNT(*) FROM unfinished_replies") == [(0,)], 5, "the note"
            )
            # A reply written to its end leaves no note either (nor its token).
            again = await server.invoke("generate", {"prompt": "Hello", "max_new_tokens": 5}, channel=channel)
            await again.wait_for(settled, 30)
            assert GENERATION_FOOTER.search(shown_text(again)), again.summary()
            # (ended just after its last edit)
            await server.wait_for(
                lambda: read_db(database, "SELECT COUNT(*) FROM unfinished_replies") == [(0,)], 5, "no note"
            )
        finally:
            await second.stop()

        content = reply.content or ""
        assert not reply.is_thinking
        # What the reply showed when it began (its prompt), then the notice a clean shutdown writes.
        assert content == "**Once upon a time**\n\n" + RESTARTING, content[-300:]
        enabled = buttons(reply)
        assert enabled == {
            f"transcord:reply:stop:{reply.id}": False,
            f"transcord:reply:again:{reply.id}": True,
            f"transcord:reply:more:{reply.id}": False,
        }, enabled
        for process in (first, second):
            assert TOKEN not in process.output() and reply.token not in process.output()


async def test_a_refused_token_exits_non_zero_saying_so_and_never_prints_it(
    tmp_path: Path, tiny_gpt2_dir: Path
) -> None:
    async with LoopbackDiscord(token="the-right-token") as server:
        env = bot_env(server, tmp_path / "t.sqlite3", f"tiny={tiny_gpt2_dir}", LOG_LEVEL="DEBUG")
        process = await BotProcess(tmp_path / "refused", env).start()
        try:
            code = await process.wait(START_S)
        finally:
            await process.stop()
        assert [c.status for c in server.calls_to("GET", "/users/@me")] == [401]

    output = process.output()
    assert code == 2, output[-3000:]
    assert "Discord refused the bot token (DISCORD_TOKEN)" in output, output[-3000:]
    for secret in (TOKEN, *TOKEN.split(".")):
        assert secret not in output, secret
