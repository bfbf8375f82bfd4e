"""Stories with a cast on a real database: the cast in order, who spoke each line, a line taken out
(and logged), a character that left; all of it kept across a reopen."""

from __future__ import annotations

from domain.settings import ChannelSettings
from storage import Storage
from storage.types import NARRATOR_ID, CastMember, Story
from tests.storage.conftest import Opener, Sql

GUILD, CHANNEL = 10, 20
MOD, ALICE, BOB = 1001, 1, 2
MIRA, BARD = 7, 8
CONFIG = ChannelSettings()
# Snowflake-sized ids: a webhook message's id does not fit 32 bits.
MESSAGE = 1_234_567_890_123_456_789


async def cast_story(store: Storage, cast_turns: str = "rotation") -> Story:
    story = await store.stories.create_story(
        guild_id=GUILD,
        channel_id=CHANNEL,
        starter_id=ALICE,
        starter_name="alice",
        premise="A ship of fools.",
        turn_mode="free",
        max_players=4,
        cast_turns=cast_turns,  # type: ignore[arg-type]
        narrator=True,
        cast=[(MIRA, "Mira"), (BARD, "Bard")],
    )
    assert story is not None
    return story


async def test_a_story_keeps_its_cast_in_order_and_who_said_each_line(
    store: Storage, open_storage: Opener
) -> None:
    story = await cast_story(store, "all")
    assert (story.cast_turns, story.narrator, story.has_cast) == ("all", True, True)
    await store.stories.add_story_turns(
        story.id, [("opening", None, "Narrator", "It was a dark sea.", NARRATOR_ID, MESSAGE)]
    )
    await store.stories.add_story_turns(
        story.id,
        [
            ("player", ALICE, "alice", "Alice hoists the sail."),
            ("bot", None, "Narrator", "The wind rose.", NARRATOR_ID, MESSAGE + 1),
            ("bot", None, "Mira", "Hold fast!", MIRA, MESSAGE + 2),
        ],
    )
    await store.close()
    async with await open_storage(CONFIG) as reopened:
        assert await reopened.stories.open_story(CHANNEL) == story
        assert await reopened.stories.story_cast(story.id) == [
            CastMember(1, MIRA, "Mira"),
            CastMember(2, BARD, "Bard"),
        ]
        turns = await reopened.stories.story_turns(story.id)
        assert [(t.author_name, t.character_id, t.message_id) for t in turns] == [
            ("Narrator", NARRATOR_ID, MESSAGE),
            ("alice", None, None),
            ("Narrator", NARRATOR_ID, MESSAGE + 1),
            ("Mira", MIRA, MESSAGE + 2),
        ]


async def test_a_story_without_a_cast_is_as_before(store: Storage) -> None:
    story = await store.stories.create_story(
        guild_id=GUILD,
        channel_id=CHANNEL,
        starter_id=ALICE,
        starter_name="alice",
        premise="Plain.",
        turn_mode="free",
        max_players=2,
    )
    assert story is not None and (story.cast_turns, story.narrator, story.has_cast) == ("none", False, False)
    assert await store.stories.story_cast(story.id) == []
    [turn] = await store.stories.add_story_turns(story.id, [("player", ALICE, "alice", "Hi.")])
    assert (turn.character_id, turn.message_id) == (None, None)


async def test_a_moderator_takes_one_line_out_and_it_is_logged(
    store: Storage, sql: Sql, open_storage: Opener
) -> None:
    story = await cast_story(store)
    await store.stories.add_story_turns(story.id, [("opening", None, "Narrator", "Once.", NARRATOR_ID, 5)])
    await store.stories.add_story_turns(
        story.id, [("player", BOB, "bob", "Bob sings."), ("bot", None, "Mira", "Rude words.", MIRA, 6)]
    )
    await store.stories.add_story_turns(story.id, [("player", ALICE, "alice", "Alice laughs.")])

    removed = await store.stories.remove_story_line(story.id, 3, actor_id=MOD)
    assert removed is not None and (removed.author_name, removed.text, removed.message_id) == (
        "Mira",
        "Rude words.",
        6,
    )
    assert await store.stories.remove_story_line(story.id, 3, actor_id=MOD) is None  # gone already
    assert await store.stories.remove_story_line(story.id, 99, actor_id=MOD) is None  # no such line
    await store.close()
    async with await open_storage(CONFIG) as reopened:
        turns = await reopened.stories.story_turns(story.id)
        assert [(t.seq, t.text) for t in turns] == [(1, "Once."), (2, "Bob sings."), (4, "Alice laughs.")]
        [entry] = await reopened.rules.audit_log(GUILD, [CHANNEL])
        assert (entry.action, entry.detail, entry.actor_id) == (
            "story remove",
            f"story #{story.id}: removed line 3 (Mira)",
            MOD,
        )
        await reopened.stories.end_story(story.id, actor_id=MOD)
        assert await reopened.stories.remove_story_line(story.id, 1, actor_id=MOD) is None  # ended
    # The line is kept, marked, for the record.
    assert await sql("SELECT text FROM story_turns WHERE undone_by = ?", MOD) == [("Rude words.",)]


async def test_a_character_leaves_the_cast_once(store: Storage, open_storage: Opener) -> None:
    story = await cast_story(store)
    assert await store.stories.leave_cast(story.id, MIRA)
    assert not await store.stories.leave_cast(story.id, MIRA)  # said once
    assert not await store.stories.leave_cast(story.id, 999)  # never in it
    await store.close()
    async with await open_storage(CONFIG) as reopened:
        mira, bard = await reopened.stories.story_cast(story.id)
        assert mira.character_id == MIRA and mira.left_at is not None
        assert bard.left_at is None


async def test_ending_a_story_keeps_its_cast_and_a_new_one_starts_afresh(store: Storage) -> None:
    story = await cast_story(store)
    await store.stories.end_story(story.id, actor_id=ALICE)
    later = await store.stories.create_story(
        guild_id=GUILD,
        channel_id=CHANNEL,
        starter_id=BOB,
        starter_name="bob",
        premise="Another.",
        turn_mode="free",
        max_players=2,
        cast_turns="rotation",
        cast=[(BARD, "Bard")],
    )
    assert later is not None and not later.narrator
    assert [c.name for c in await store.stories.story_cast(story.id)] == ["Mira", "Bard"]
    assert [c.name for c in await store.stories.story_cast(later.id)] == ["Bard"]
