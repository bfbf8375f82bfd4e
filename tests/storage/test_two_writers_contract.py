"""Two stores on one database (two bot processes) race on the same stories, blocklists and thread.

Within one store, writes already take turns; across stores only the database keeps the limits
(SQLite's write lock; Postgres's row and advisory locks). Each race is run on several stories or
channels at once, so a missing lock shows up on most runs rather than by luck.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from domain.rules import MAX_PHRASES
from domain.settings import ChannelSettings
from storage import LimitReached, Storage
from storage.types import ConversationKey
from tests.storage.conftest import Opener, Sql

CONFIG = ChannelSettings()
MOD = 1001
CHANNELS = range(20, 36)


@pytest.fixture
async def stores(open_storage: Opener) -> AsyncIterator[tuple[Storage, Storage]]:
    async with await open_storage(CONFIG) as one, await open_storage(CONFIG) as two:
        yield one, two


async def open_stories(store: Storage, max_players: int) -> list[int]:
    ids = []
    for channel in CHANNELS:
        story = await store.stories.create_story(
            guild_id=None,
            channel_id=channel,
            starter_id=1,
            starter_name="p1",
            premise="p",
            turn_mode="free",
            max_players=max_players,
        )
        assert story is not None
        ids.append(story.id)
    return ids


async def test_the_last_seat_goes_to_one_of_two_racing_joins(stores: tuple[Storage, Storage]) -> None:
    one, two = stores
    ids = await open_stories(one, max_players=2)
    results = await asyncio.gather(
        *(store.stories.join_story(story, user, "p") for story in ids for store, user in ((one, 2), (two, 3)))
    )
    assert results.count("joined") == results.count("full") == len(ids)
    for story in ids:
        assert len(await two.stories.story_players(story)) == 2


async def test_racing_turns_are_numbered_without_gaps_or_clashes(stores: tuple[Storage, Storage]) -> None:
    one, two = stores
    story, *_ = await open_stories(one, max_players=2)
    await asyncio.gather(
        *(
            (one if i % 2 else two).stories.add_story_turns(
                story, [("player", 1, "p1", f"a{i}"), ("bot", None, "Transcord", f"b{i}")]
            )
            for i in range(12)
        )
    )
    turns = await two.stories.story_turns(story)
    assert [t.seq for t in turns] == list(range(1, 25))
    assert [t.text[1:] for t in turns[0::2]] == [t.text[1:] for t in turns[1::2]]  # each pair together


async def test_the_last_blocked_phrase_goes_to_one_of_two_racing_adds(
    stores: tuple[Storage, Storage], sql: Sql
) -> None:
    one, two = stores
    for channel in CHANNELS:  # one short of the limit, written directly (200 adds each would be slow)
        await sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO blocked_phrases (channel_id, phrase, added_by, added_at)"
            " SELECT ?, 'w' || i, 1, 0.0 FROM n",
            MAX_PHRASES - 1,
            channel,
        )
    added = await asyncio.gather(
        *(
            store.rules.add_blocked_phrase(channel, phrase, actor_id=MOD)
            for channel in CHANNELS
            for store, phrase in ((one, "x"), (two, "y"))
        ),
        return_exceptions=True,
    )
    assert added.count(True) == len(CHANNELS)
    assert all(isinstance(result, LimitReached) for result in added if result is not True)
    for channel in CHANNELS:
        assert len((await one.rules.channel_rules(channel)).blocklist.phrases) == MAX_PHRASES


async def test_racing_exchanges_in_one_thread_never_interleave(stores: tuple[Storage, Storage]) -> None:
    one, two = stores
    thread = ConversationKey(500)
    await asyncio.gather(
        *(
            (one if i % 2 else two).conversations.add_exchange(
                thread, asker_id=i, author=f"u{i}", message=f"m{i}", reply=f"r{i}"
            )
            for i in range(20)
        )
    )
    said = [t.text for t in await one.conversations.recent_turns(thread, limit=100)]
    assert [m[1:] for m in said[0::2]] == [r[1:] for r in said[1::2]]
    assert sorted(int(m[1:]) for m in said[0::2]) == list(range(20))
