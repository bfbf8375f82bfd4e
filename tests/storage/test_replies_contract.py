"""The reply store's contract: a reply saved while it is written and again when done, found by
its id or by the bot's message, kept across a restart, and pruned by age; and the replies being
written, which a process that died leaves for the next one to finish."""

from __future__ import annotations

import dataclasses
import time

from domain.settings import ChannelSettings
from storage import Storage
from storage.types import ReplyRecord, UnfinishedReply
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


# -- replies being written -------------------------------------------------------------------------

BEGUN = 1_700_000_000.0
SLASH = UnfinishedReply(
    reply_id=1_300_000_000_000_000_001,
    owner="dead-process",
    guild_id=1_200_000_000_000_000_000,
    channel_id=77,
    began_at=BEGUN,
    shown="> hi\n",
    application_id=1_100_000_000_000_000_000,
    interaction_token="aW50ZXJhY3Rpb24tdG9rZW4",
)
POSTED = UnfinishedReply(
    reply_id=1_300_000_000_000_000_002,
    owner="dead-process",
    guild_id=None,  # a DM
    channel_id=78,
    began_at=BEGUN + 1,
    message_id=1_300_000_000_000_000_003,
)


async def test_a_reply_begun_and_never_ended_is_found_by_the_next_process(
    store: Storage, open_storage: Opener
) -> None:
    await store.replies.begin_writing(POSTED)
    await store.replies.begin_writing(SLASH)
    async with await open_storage(ChannelSettings()) as restarted:
        left = await restarted.replies.unfinished(began_before=BEGUN + 60, owner="new-process")
    assert left == [SLASH, POSTED]  # oldest first, every field kept (the token included)
    assert left[0].interaction_token == "aW50ZXJhY3Rpb24tdG9rZW4"
    assert "aW50ZXJhY3Rpb24tdG9rZW4" not in repr(left[0])  # never in a log line by accident


async def test_a_reply_that_ended_is_not_unfinished(store: Storage) -> None:
    await store.replies.begin_writing(SLASH)
    await store.replies.begin_writing(POSTED)
    await store.replies.end_writing(SLASH.reply_id)
    await store.replies.end_writing(SLASH.reply_id)  # ending twice is harmless
    assert await store.replies.unfinished(began_before=BEGUN + 60, owner="new-process") == [POSTED]


async def test_replies_of_the_process_itself_or_begun_after_it_started_are_left_alone(
    store: Storage,
) -> None:
    await store.replies.begin_writing(SLASH)
    assert await store.replies.unfinished(began_before=BEGUN + 60, owner="dead-process") == []
    assert await store.replies.unfinished(began_before=BEGUN, owner="new-process") == []


async def test_a_reply_begun_again_replaces_its_note(store: Storage) -> None:
    await store.replies.begin_writing(SLASH)
    again = dataclasses.replace(
        SLASH, owner="second", began_at=BEGUN + 5, shown="> hi\nearlier text", interaction_token="b3RoZXI"
    )
    await store.replies.begin_writing(again)
    assert await store.replies.unfinished(began_before=BEGUN + 60, owner="new-process") == [again]


async def test_only_one_process_takes_over_a_reply(store: Storage, open_storage: Opener) -> None:
    await store.replies.begin_writing(SLASH)
    async with await open_storage(ChannelSettings()) as other:
        first, second = (
            await store.replies.take_over(SLASH.reply_id, from_owner="dead-process", owner="a"),
            await other.replies.take_over(SLASH.reply_id, from_owner="dead-process", owner="b"),
        )
        assert (first, second) == (True, False)
        # Taken over, it is "a"'s now: not "a"'s to take again, but a later process may if "a" dies.
        assert await store.replies.unfinished(began_before=BEGUN + 60, owner="a") == []
        left = await other.replies.unfinished(began_before=BEGUN + 60, owner="b")
        assert [(r.reply_id, r.owner) for r in left] == [(SLASH.reply_id, "a")]
        await store.replies.end_writing(SLASH.reply_id)
        assert not await other.replies.take_over(SLASH.reply_id, from_owner="a", owner="b")
