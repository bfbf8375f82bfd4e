"""The reply store's contract: a reply saved while it is written and again when done, found by
its id or by the bot's message, kept across a restart, and pruned by age."""

from __future__ import annotations

import dataclasses
import time

from domain.settings import ChannelSettings
from storage import Storage
from storage.types import ReplyRecord
from tests.storage.conftest import Opener

WRITING = ReplyRecord(
    id=1_300_000_000_000_000_001,  # snowflakes are 64-bit
    channel_id=77,
    requester_id=5,
    kind="chat",
    request='{"prompt": "hi"}',
    header="> hi\n",
)


async def test_a_reply_is_saved_while_written_then_completed(store: Storage, open_storage: Opener) -> None:
    await store.replies.save_reply(WRITING)
    first = await store.replies.reply(WRITING.id)
    assert first is not None and first.finish_reason is None and first.text == ""
    assert first.created_at > 0 and first.updated_at >= first.created_at

    done = dataclasses.replace(
        WRITING, text="Hello!", generated_tokens=3, finish_reason="eos", message_id=900, turn_id=12
    )
    await store.replies.save_reply(done)
    async with await open_storage(ChannelSettings()) as reopened:
        got = await reopened.replies.reply(WRITING.id)
        by_message = await reopened.replies.reply_by_message(900)
    assert got == by_message
    assert got is not None
    assert (got.text, got.generated_tokens, got.finish_reason, got.message_id, got.turn_id) == (
        "Hello!",
        3,
        "eos",
        900,
        12,
    )
    assert (got.channel_id, got.requester_id, got.kind, got.request) == (77, 5, "chat", '{"prompt": "hi"}')
    assert got.created_at == first.created_at  # the first save's time is kept


async def test_unknown_replies_and_messages_are_none(store: Storage) -> None:
    await store.replies.save_reply(WRITING)
    assert await store.replies.reply(2) is None
    assert await store.replies.reply_by_message(WRITING.id) is None  # an id is not a message id


async def test_old_replies_are_pruned(store: Storage) -> None:
    await store.replies.save_reply(WRITING)
    await store.replies.save_reply(dataclasses.replace(WRITING, id=2))
    assert await store.replies.prune_replies(before=time.time() - 3600) == 0
    assert await store.replies.prune_replies(before=time.time() + 1) == 2
    assert await store.replies.reply(2) is None
