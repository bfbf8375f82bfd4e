"""The writer the crash test kills: ``python -m tests.storage.crash_writer BACKEND WHERE``.

Four lanes write at once, each a conversation exchange and then a meta value per step, and
print ``LANE STEP`` on stdout once both writes returned (acknowledged), until the process is killed.
"""

from __future__ import annotations

import asyncio
import sys

from domain.settings import ChannelSettings
from storage import Storage
from storage.types import ConversationKey
from tests.storage.backends import open_backend

CHANNEL = 1_300_000_000_000_000_777
LANES = range(1, 5)


def lane_key(lane: int) -> ConversationKey:
    return ConversationKey(CHANNEL, owner_id=lane)


async def write(store: Storage, lane: int) -> None:
    step = 0
    while True:
        await store.conversations.add_exchange(
            lane_key(lane), asker_id=lane, author=f"lane{lane}", message=f"m{step}", reply=f"r{step}"
        )
        await store.meta.set_meta(f"lane{lane}", str(step))
        sys.stdout.write(f"{lane} {step}\n")
        sys.stdout.flush()
        step += 1


async def main(backend: str, where: str) -> None:
    store = await open_backend(backend, where, ChannelSettings())
    await asyncio.gather(*(write(store, lane) for lane in LANES))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
