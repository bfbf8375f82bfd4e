"""Discord ids are 64-bit snowflakes: every store keeps them whole (BIGINT on Postgres)."""

from __future__ import annotations

from storage import Storage
from storage.types import ConversationKey

BIG = 1_300_000_000_000_000_000  # a 2026 snowflake: past 32 bits by far
GUILD, CHANNEL, THREAD, MOD, ALICE = (BIG + i for i in range(1, 6))
BOB = 2**63 - 1  # the largest a signed 64-bit column holds


async def test_snowflakes_round_trip_through_every_store(store: Storage) -> None:
    await store.settings.set_values(
        "guild", GUILD, {"top_k": 5}, actor_id=MOD, max_new_tokens_cap=256, model_names=None
    )
    await store.settings.set_values(
        "channel", THREAD, {"top_p": 0.5}, actor_id=BOB, max_new_tokens_cap=256, model_names=None
    )
    in_thread = await store.settings.explain(GUILD, THREAD, CHANNEL)
    assert (in_thread["top_k"], in_thread["top_p"]) == ((5, "guild"), (0.5, "thread"))

    await store.rules.set_channel_rules(CHANNEL, actor_id=MOD, locked=True)
    assert (await store.rules.channel_rules(CHANNEL)).locked
    entries = await store.rules.audit_log(GUILD, [CHANNEL, THREAD])
    assert [(e.scope_id, e.actor_id) for e in entries] == [(CHANNEL, MOD), (THREAD, BOB), (GUILD, MOD)]

    story = await store.stories.create_story(
        guild_id=GUILD,
        channel_id=CHANNEL,
        starter_id=ALICE,
        starter_name="alice",
        premise="p",
        turn_mode="round-robin",
        max_players=3,
    )
    assert story is not None and (story.guild_id, story.channel_id, story.starter_id) == (
        GUILD,
        CHANNEL,
        ALICE,
    )
    assert await store.stories.join_story(story.id, BOB, "bob") == "joined"
    await store.stories.add_story_turns(story.id, [("player", BOB, "bob", "hi")])
    assert [p.user_id for p in await store.stories.story_players(story.id)] == [ALICE, BOB]
    assert [t.author_id for t in await store.stories.story_turns(story.id)] == [BOB]
    assert await store.stories.skip_turn(story.id, BOB, by_id=MOD)
    assert [(s.skipped_id, s.by_id) for s in await store.stories.story_skips(story.id)] == [(BOB, MOD)]

    key = ConversationKey(THREAD, owner_id=BOB)
    await store.conversations.add_exchange(key, asker_id=BOB, author="bob", message="m", reply="r")
    assert [t.asker_id for t in await store.conversations.recent_turns(key)] == [BOB, BOB]
