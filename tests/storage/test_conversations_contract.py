"""The conversation store's contract: per thread or per member, oldest first, exchanges whole,
kept across a restart, forgotten on request, and never across channels."""

from __future__ import annotations

import time

from domain.settings import ChannelSettings
from storage import Storage
from storage.types import ConversationKey
from tests.storage.conftest import Opener

THREAD = ConversationKey(500)  # shared: everyone in the thread
ADA = ConversationKey(600, owner_id=1)  # one member in a channel
BOB = ConversationKey(600, owner_id=2)


async def say(store: Storage, key: ConversationKey, asker: int, message: str, reply: str) -> None:
    await store.conversations.add_exchange(
        key, asker_id=asker, author=f"user{asker}", message=message, reply=reply
    )


async def test_turns_come_back_oldest_first_in_exchanges(store: Storage) -> None:
    await say(store, THREAD, 1, "My name is Ada.", "Nice to meet you, Ada.")
    await say(store, THREAD, 2, "And I am Bob.", "Hello Bob.")

    turns = await store.conversations.recent_turns(THREAD)
    assert [(t.role, t.text, t.author, t.asker_id) for t in turns] == [
        ("user", "My name is Ada.", "user1", 1),
        ("assistant", "Nice to meet you, Ada.", None, 1),
        ("user", "And I am Bob.", "user2", 2),
        ("assistant", "Hello Bob.", None, 2),
    ]
    newest = await store.conversations.recent_turns(THREAD, limit=2)
    assert [t.text for t in newest] == ["And I am Bob.", "Hello Bob."]


async def test_members_in_a_channel_and_channels_are_kept_apart(store: Storage) -> None:
    await say(store, ADA, 1, "Ada here", "hi Ada")
    await say(store, BOB, 2, "Bob here", "hi Bob")
    await say(store, ConversationKey(700, owner_id=1), 1, "elsewhere", "ok")

    assert [t.text for t in await store.conversations.recent_turns(ADA)] == ["Ada here", "hi Ada"]
    assert [t.text for t in await store.conversations.recent_turns(BOB)] == ["Bob here", "hi Bob"]
    assert await store.conversations.recent_turns(ConversationKey(600)) == []  # no shared one here


async def test_since_leaves_out_older_turns(store: Storage) -> None:
    await say(store, ADA, 1, "old", "old reply")
    cut = time.time() + 0.001
    while time.time() < cut:
        pass
    await say(store, ADA, 1, "new", "new reply")

    assert [t.text for t in await store.conversations.recent_turns(ADA, since=cut)] == ["new", "new reply"]
    assert await store.conversations.recent_turns(ADA, since=time.time() + 60) == []


async def test_forget_a_members_exchanges_or_the_whole_channel(store: Storage) -> None:
    await say(store, THREAD, 1, "a", "ra")
    await say(store, THREAD, 2, "b", "rb")
    await say(store, ConversationKey(501), 1, "other thread", "r")

    assert await store.conversations.forget(THREAD.channel_id, asker_id=1) == 2
    assert [t.text for t in await store.conversations.recent_turns(THREAD)] == ["b", "rb"]
    assert await store.conversations.forget(THREAD.channel_id) == 2
    assert await store.conversations.recent_turns(THREAD) == []
    assert len(await store.conversations.recent_turns(ConversationKey(501))) == 2  # untouched


async def test_a_conversation_survives_a_restart(store: Storage, open_storage: Opener) -> None:
    await say(store, THREAD, 1, "remember me", "I will")
    await store.close()

    async with await open_storage(ChannelSettings()) as again:
        assert [t.text for t in await again.conversations.recent_turns(THREAD)] == ["remember me", "I will"]


async def test_a_reply_turn_is_revised_in_place_and_a_forgotten_one_is_not(store: Storage) -> None:
    turn = await store.conversations.add_exchange(
        ADA, asker_id=1, author="Ada", message="Tell a joke", reply="Why did"
    )
    await say(store, ADA, 1, "Another", "Sure")
    assert await store.conversations.revise_turn(turn, "Why did the chicken cross the road?")
    texts = [t.text for t in await store.conversations.recent_turns(ADA)]
    assert texts == ["Tell a joke", "Why did the chicken cross the road?", "Another", "Sure"]
    await store.conversations.forget(ADA.channel_id)
    assert not await store.conversations.revise_turn(turn, "gone")
    assert await store.conversations.recent_turns(ADA) == []


async def test_old_turns_are_pruned_in_every_conversation(store: Storage) -> None:
    await say(store, THREAD, 1, "Old news", "Indeed")
    await say(store, ADA, 1, "Also old", "Yes")
    assert await store.conversations.prune_turns(before=time.time() - 3600) == 0
    cutoff = time.time() + 0.001
    assert await store.conversations.prune_turns(before=cutoff) == 4
    assert await store.conversations.recent_turns(THREAD) == []
    assert await store.conversations.recent_turns(ADA) == []
