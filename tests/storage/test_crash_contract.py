"""A writer killed with SIGKILL in the middle of its writes loses nothing it was told was written.

On SQLite a commit is in the WAL before it returns; on Postgres the server has it. Either way,
what a killed process had acknowledged is there when the next one opens the database, each
exchange whole, and the database takes writes again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from domain.settings import ChannelSettings
from tests.storage.backends import Location, open_backend
from tests.storage.crash_writer import LANES, lane_key

ROOT = Path(__file__).resolve().parents[2]
ACKS_BEFORE_KILL = 120


async def test_a_killed_writer_loses_no_acknowledged_write(backend: str, database: Location) -> None:
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.storage.crash_writer",
        backend,
        str(database),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert writer.stdout is not None
    acked = dict.fromkeys(LANES, -1)  # lane -> the last step it acknowledged
    try:
        async with asyncio.timeout(60):
            for _ in range(ACKS_BEFORE_KILL):
                line = await writer.stdout.readline()
                assert line, f"the writer exited early ({await writer.wait()})"
                lane, step = map(int, line.split())
                acked[lane] = step
    finally:
        os.kill(writer.pid, signal.SIGKILL)  # while its four lanes are mid-write
        assert await writer.wait() == -signal.SIGKILL
    for line in (await writer.stdout.read()).splitlines():  # acknowledged just before the kill
        lane, step = map(int, line.split())
        acked[lane] = step

    async with await open_backend(backend, database, ChannelSettings()) as store:
        for lane in LANES:
            turns = await store.conversations.recent_turns(lane_key(lane), limit=10_000)
            assert len(turns) % 2 == 0  # no half exchange
            pairs = [(turns[i].text, turns[i + 1].text) for i in range(0, len(turns), 2)]
            written = len(pairs)
            # Whole exchanges in order; every acknowledged step, and at most the one in flight.
            assert pairs == [(f"m{step}", f"r{step}") for step in range(written)]
            assert acked[lane] + 1 <= written <= acked[lane] + 2
            meta = await store.meta.get_meta(f"lane{lane}")
            assert meta is not None and acked[lane] <= int(meta) <= acked[lane] + 1
        await store.conversations.add_exchange(lane_key(1), asker_id=1, author="next", message="m", reply="r")
        assert [t.text for t in await store.conversations.recent_turns(lane_key(1), limit=2)] == ["m", "r"]
