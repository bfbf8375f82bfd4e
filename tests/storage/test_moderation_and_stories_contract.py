"""Moderation rules, the audit log and stories on a real database: persistence, order, races."""

from __future__ import annotations

import asyncio

import pytest

from domain.rules import MAX_PHRASES, Blocklist, ChannelRules
from domain.settings import ChannelSettings
from model_service.errors import ValidationError
from storage import LimitReached, Storage
from tests.storage.conftest import Opener, Sql

GUILD, CHANNEL, THREAD, OTHER = 10, 20, 30, 40
MOD, ALICE, BOB, CAROL = 1001, 1, 2, 3
CONFIG = ChannelSettings()


async def new_story(store: Storage, channel: int = CHANNEL, mode: str = "round-robin", players: int = 3):
    return await store.stories.create_story(
        guild_id=GUILD,
        channel_id=channel,
        starter_id=ALICE,
        starter_name="alice",
        premise="A dragon guards a library.",
        turn_mode=mode,  # type: ignore[arg-type]
        max_players=players,
    )


# --- channel rules ----------------------------------------------------------------------


async def test_a_channel_without_rules_is_unmoderated(store: Storage) -> None:
    assert await store.rules.channel_rules(CHANNEL) == ChannelRules()


async def test_rules_change_one_at_a_time_and_survive_a_reopen(store: Storage, open_storage: Opener) -> None:
    assert await store.rules.set_channel_rules(CHANNEL, actor_id=MOD, locked=True) == ChannelRules(
        locked=True
    )
    await store.rules.set_channel_rules(CHANNEL, actor_id=MOD, cooldown_s=30)
    rules = await store.rules.set_channel_rules(CHANNEL, actor_id=MOD, max_inflight=2)
    assert rules == ChannelRules(locked=True, cooldown_s=30, max_inflight=2)
    assert await store.rules.channel_rules(OTHER) == ChannelRules()
    await store.close()
    async with await open_storage(CONFIG) as reopened:
        assert await reopened.rules.channel_rules(CHANNEL) == rules
        unlocked = await reopened.rules.set_channel_rules(CHANNEL, actor_id=MOD, locked=False, cooldown_s=0)
        assert unlocked == ChannelRules(max_inflight=2)


async def test_out_of_range_rules_are_refused_and_nothing_is_written(store: Storage) -> None:
    with pytest.raises(ValidationError, match=r"`seconds` must be in \[0, 3600\], got 5000"):
        await store.rules.set_channel_rules(CHANNEL, actor_id=MOD, locked=True, cooldown_s=5000)
    with pytest.raises(ValidationError, match="`n` must be in"):
        await store.rules.set_channel_rules(CHANNEL, actor_id=MOD, max_inflight=-1)
    assert await store.rules.channel_rules(CHANNEL) == ChannelRules()
    assert await store.rules.audit_log(GUILD, [CHANNEL]) == []


async def test_blocked_phrases_are_normalised_per_channel_and_persist(
    store: Storage, open_storage: Opener
) -> None:
    assert await store.rules.add_blocked_phrase(CHANNEL, "  Dark   LORD ", actor_id=MOD)
    assert not await store.rules.add_blocked_phrase(CHANNEL, "dark lord", actor_id=MOD)  # already there
    assert await store.rules.add_blocked_phrase(CHANNEL, "c++", actor_id=MOD)
    assert await store.rules.add_blocked_phrase(OTHER, "elf", actor_id=MOD)
    await store.close()
    async with await open_storage(CONFIG) as reopened:
        rules = await reopened.rules.channel_rules(CHANNEL)
        assert rules.blocklist == Blocklist(("c++", "dark lord"))
        assert rules.blocklist.find("hail the Dark Lord") == "dark lord"
        assert await reopened.rules.remove_blocked_phrase(CHANNEL, "DARK LORD", actor_id=MOD)
        assert not await reopened.rules.remove_blocked_phrase(CHANNEL, "dark lord", actor_id=MOD)
        assert (await reopened.rules.channel_rules(CHANNEL)).blocklist.phrases == ("c++",)
        assert (await reopened.rules.channel_rules(OTHER)).blocklist.phrases == ("elf",)


async def test_a_channel_holds_at_most_max_phrases(store: Storage) -> None:
    for i in range(MAX_PHRASES):
        await store.rules.add_blocked_phrase(CHANNEL, f"word{i}", actor_id=MOD)
    with pytest.raises(LimitReached) as info:
        await store.rules.add_blocked_phrase(CHANNEL, "one more", actor_id=MOD)
    assert (info.value.what, info.value.limit) == ("blocked phrases", MAX_PHRASES)
    assert len((await store.rules.channel_rules(CHANNEL)).blocklist.phrases) == MAX_PHRASES
    assert await store.rules.add_blocked_phrase(OTHER, "one more", actor_id=MOD)


# --- the audit log ----------------------------------------------------------------------


async def test_every_rule_change_and_settings_change_is_logged_newest_first(store: Storage) -> None:
    await store.rules.set_channel_rules(CHANNEL, actor_id=MOD, locked=True)
    await store.rules.set_channel_rules(CHANNEL, actor_id=MOD, cooldown_s=15, max_inflight=3)
    await store.rules.add_blocked_phrase(CHANNEL, "orc", actor_id=MOD)
    await store.rules.remove_blocked_phrase(CHANNEL, "orc", actor_id=MOD)
    await store.settings.set_values(
        "channel", CHANNEL, {"temperature": 0.3}, actor_id=ALICE, max_new_tokens_cap=256, model_names=None
    )
    await store.settings.reset("channel", CHANNEL, ["temperature", "top_k"], actor_id=BOB)
    await store.settings.reset("channel", CHANNEL, ["top_k"], actor_id=BOB)  # nothing to reset: not logged
    await store.settings.set_values(
        "guild", GUILD, {"persona": "x" * 100}, actor_id=MOD, max_new_tokens_cap=256, model_names=None
    )
    await store.rules.set_channel_rules(OTHER, actor_id=MOD, locked=True)  # another channel
    await store.rules.record_action("channel", CHANNEL, actor_id=MOD, action="note", detail="hello")

    entries = await store.rules.audit_log(GUILD, [CHANNEL])
    assert [(e.actor_id, e.action, e.detail) for e in entries] == [
        (MOD, "note", "hello"),
        (MOD, "config set", "persona=" + "x" * 59 + "…"),
        (BOB, "config reset", "temperature"),
        (ALICE, "config set", "temperature=0.3"),
        (MOD, "blocklist remove", "orc"),
        (MOD, "blocklist add", "orc"),
        (MOD, "limit", "3 at once"),
        (MOD, "cooldown", "15 s per user"),
        (MOD, "lock", "model commands paused"),
    ]
    assert entries[0].at >= entries[-1].at > 0
    assert [e.action for e in await store.rules.audit_log(GUILD, [CHANNEL], limit=2)] == [
        "note",
        "config set",
    ]
    assert [e.action for e in await store.rules.audit_log(None, [OTHER])] == ["lock"]


async def test_a_thread_log_shows_the_thread_and_its_parent(store: Storage) -> None:
    await store.rules.set_channel_rules(CHANNEL, actor_id=MOD, locked=True)
    await store.rules.set_channel_rules(THREAD, actor_id=MOD, cooldown_s=5)
    entries = await store.rules.audit_log(GUILD, [CHANNEL, THREAD])
    assert [(e.scope_id, e.action) for e in entries] == [(THREAD, "cooldown"), (CHANNEL, "lock")]


# --- stories ----------------------------------------------------------------------------


async def test_one_open_story_per_channel_with_the_starter_as_first_player(store: Storage) -> None:
    story = await new_story(store)
    assert story is not None and story.status == "open" and story.turn_mode == "round-robin"
    assert await new_story(store) is None
    assert await new_story(store, channel=OTHER) is not None
    assert [p.user_id for p in await store.stories.story_players(story.id)] == [ALICE]
    assert await store.stories.open_story(CHANNEL) == story
    assert await store.stories.end_story(story.id, actor_id=MOD)
    assert not await store.stories.end_story(story.id, actor_id=MOD)
    assert await store.stories.open_story(CHANNEL) is None
    assert (await store.stories.story(story.id)).status == "ended"  # type: ignore[union-attr]
    assert await new_story(store) is not None  # the channel is free again


async def test_joining_respects_the_player_limit_and_join_order(store: Storage) -> None:
    story = await new_story(store, players=2)
    assert story is not None
    assert await store.stories.join_story(story.id, ALICE, "alice") == "already"
    assert await store.stories.join_story(story.id, BOB, "bob") == "joined"
    assert await store.stories.join_story(story.id, CAROL, "carol") == "full"
    assert [p.name for p in await store.stories.story_players(story.id)] == ["alice", "bob"]
    await store.stories.end_story(story.id, actor_id=ALICE)
    assert await store.stories.join_story(story.id, CAROL, "carol") == "closed"


async def test_racing_joins_never_exceed_the_limit(store: Storage) -> None:
    story = await new_story(store, players=3)
    assert story is not None
    results = await asyncio.gather(*(store.stories.join_story(story.id, 100 + i, f"p{i}") for i in range(6)))
    assert results.count("joined") == 2 and results.count("full") == 4
    assert len(await store.stories.story_players(story.id)) == 3


async def test_turns_are_numbered_in_order_and_concurrent_additions_are_all_kept(store: Storage) -> None:
    story = await new_story(store)
    assert story is not None
    await store.stories.add_story_turns(story.id, [("opening", None, "Transcord", "Once, a dragon.")])

    async def add(i: int) -> None:
        await store.stories.add_story_turns(
            story.id, [("player", ALICE, "alice", f"p{i}"), ("bot", None, "Transcord", f"b{i}")]
        )

    await asyncio.gather(*(add(i) for i in range(10)))
    turns = await store.stories.story_turns(story.id)
    assert [t.seq for t in turns] == list(range(1, 22))
    texts = [t.text for t in turns[1:]]
    # Each contribution is directly followed by its own continuation; none was lost.
    assert sorted(texts[0::2]) == sorted(f"p{i}" for i in range(10))
    assert [int(b[1:]) for b in texts[1::2]] == [int(p[1:]) for p in texts[0::2]]


async def test_undo_removes_the_last_contribution_and_its_continuation(
    store: Storage, sql: Sql, open_storage: Opener
) -> None:
    story = await new_story(store)
    assert story is not None
    await store.stories.add_story_turns(story.id, [("opening", None, "Transcord", "Opening.")])
    assert await store.stories.undo_story_turn(story.id, actor_id=MOD) == []  # no contribution yet
    await store.stories.add_story_turns(
        story.id, [("player", ALICE, "alice", "A1"), ("bot", None, "Transcord", "B1")]
    )
    await store.stories.add_story_turns(
        story.id, [("player", BOB, "bob", "A2"), ("bot", None, "Transcord", "B2")]
    )
    undone = await store.stories.undo_story_turn(story.id, actor_id=MOD)
    assert [t.text for t in undone] == ["A2", "B2"]
    await store.stories.add_story_turns(story.id, [("player", BOB, "bob", "A2'")])
    await store.close()
    async with await open_storage(CONFIG) as reopened:
        turns = await reopened.stories.story_turns(story.id)
        assert [(t.seq, t.text) for t in turns] == [(1, "Opening."), (2, "A1"), (3, "B1"), (6, "A2'")]
        [entry] = await reopened.rules.audit_log(GUILD, [CHANNEL])
        assert entry.action == "story undo" and "bob" in entry.detail
    # The undone turns are kept, marked, for the record.
    assert await sql("SELECT COUNT(*) FROM story_turns WHERE undone_by = ?", MOD) == [(2,)]


async def test_an_ended_story_takes_no_more_turns(store: Storage) -> None:
    story = await new_story(store)
    assert story is not None
    await store.stories.end_story(story.id, actor_id=ALICE)
    assert await store.stories.add_story_turns(story.id, [("player", ALICE, "alice", "late")]) == []
    assert await store.stories.undo_story_turn(story.id, actor_id=MOD) == []
    assert await store.stories.story_turns(story.id) == []


async def test_a_discarded_story_leaves_nothing_behind(store: Storage) -> None:
    story = await new_story(store)
    assert story is not None
    await store.stories.discard_story(story.id)
    assert await store.stories.story(story.id) is None
    assert await store.stories.story_players(story.id) == []
    assert await new_story(store) is not None


async def test_skips_and_the_turn_timer_are_kept_for_open_stories_only(store: Storage) -> None:
    story = await new_story(store)
    assert story is not None and story.turn_timeout_s == 0
    assert await store.stories.timed_stories() == []
    assert await store.stories.set_turn_timeout(story.id, 90.0, actor_id=MOD)
    [timed] = await store.stories.timed_stories()
    assert timed.id == story.id and timed.turn_timeout_s == 90.0
    assert await store.stories.skip_turn(story.id, ALICE, by_id=None)  # the timer
    assert await store.stories.skip_turn(story.id, BOB, by_id=MOD)
    assert [(s.skipped_id, s.by_id) for s in await store.stories.story_skips(story.id)] == [
        (ALICE, None),
        (BOB, MOD),
    ]
    log = await store.rules.audit_log(GUILD, [CHANNEL])
    assert [e.action for e in log][:2] == ["story skip", "story timer"]

    assert await store.stories.end_story(story.id, actor_id=MOD)
    assert not await store.stories.skip_turn(story.id, CAROL, by_id=MOD)
    assert not await store.stories.set_turn_timeout(story.id, 10.0, actor_id=MOD)
    assert await store.stories.timed_stories() == []
