"""The token quota contract, on every backend: budgets per server or channel and role (each change
in the audit log), and tokens counted per member, scope and UTC window, also by two processes at once."""

from __future__ import annotations

import asyncio

import pytest

from domain.quotas import UNLIMITED, Budget, window_start
from domain.settings import ChannelSettings
from storage import Storage
from tests.storage.conftest import Opener, Sql

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC: the start of an hour
HOUR, DAY = 3600, 86_400
GUILD, OTHER_GUILD = 1_300_000_000_000_000_001, 1_300_000_000_000_000_002
CHANNEL, THREAD, ELSEWHERE = 1_300_000_000_000_000_100, 1_300_000_000_000_000_200, 1_300_000_000_000_000_300
PATRONS = 1_300_000_000_000_000_900
MOD, ADA, BOB = 7, 1, 2
HERE = [("guild", GUILD), ("channel", CHANNEL)]


# --- budgets ------------------------------------------------------------------------------------


async def test_budgets_are_set_replaced_and_cleared_per_scope_and_role(store: Storage) -> None:
    rules = store.rules
    server = Budget("guild", GUILD, 10_000, "day")
    await rules.set_token_budget(server, actor_id=MOD)
    await rules.set_token_budget(Budget("channel", CHANNEL, 500, "hour"), actor_id=MOD)
    await rules.set_token_budget(Budget("channel", CHANNEL, 2000, "hour"), actor_id=MOD)  # replaces it
    await rules.set_token_budget(Budget("channel", CHANNEL, UNLIMITED, "hour", PATRONS), actor_id=MOD)
    await rules.set_token_budget(Budget("channel", ELSEWHERE, 5, "hour"), actor_id=MOD)
    await rules.set_token_budget(Budget("guild", OTHER_GUILD, 5, "hour"), actor_id=MOD)
    assert await rules.token_budgets(GUILD, [CHANNEL, THREAD]) == [
        Budget("channel", CHANNEL, 2000, "hour"),
        Budget("channel", CHANNEL, UNLIMITED, "hour", PATRONS),
        server,
    ]
    assert await rules.clear_token_budget("channel", CHANNEL, role_id=PATRONS, actor_id=MOD)
    assert not await rules.clear_token_budget("channel", CHANNEL, role_id=PATRONS, actor_id=MOD)
    assert await rules.clear_token_budget("guild", GUILD, actor_id=MOD)
    assert await rules.token_budgets(GUILD, [CHANNEL]) == [Budget("channel", CHANNEL, 2000, "hour")]


async def test_every_budget_change_is_in_the_audit_log(store: Storage) -> None:
    rules = store.rules
    await rules.set_token_budget(Budget("guild", GUILD, 10_000, "day"), actor_id=MOD)
    await rules.set_token_budget(Budget("channel", CHANNEL, UNLIMITED, "hour", PATRONS), actor_id=MOD)
    await rules.clear_token_budget("channel", CHANNEL, role_id=PATRONS, actor_id=MOD)
    await rules.clear_token_budget("channel", CHANNEL, actor_id=MOD)  # nothing there: nothing logged
    entries = await rules.audit_log(GUILD, [CHANNEL])
    assert [(e.scope, e.actor_id, e.action, e.detail) for e in entries] == [
        ("channel", MOD, "quota clear", f"for <@&{PATRONS}>"),
        ("channel", MOD, "quota set", f"unlimited for <@&{PATRONS}>"),
        ("guild", MOD, "quota set", "10,000 tokens per day for everyone"),
    ]


async def test_the_database_refuses_a_plain_budget_of_unlimited(store: Storage, sql: Sql) -> None:
    with pytest.raises(Exception, match=r"(?i)check"):
        await sql(
            "INSERT INTO token_budgets (scope, scope_id, role_id, tokens, per, updated_by, updated_at)"
            " VALUES ('channel', ?, 0, 0, 'hour', 1, 0)",
            CHANNEL,
        )


# --- counting -------------------------------------------------------------------------------------


async def used(store: Storage, user: int, per: str, now: float, scope: tuple[str, int] = HERE[1]) -> int:
    since = window_start(per, now)  # type: ignore[arg-type]
    return await store.limits.tokens_used(scope[0], scope[1], user, since=since)  # type: ignore[arg-type]


async def test_tokens_count_per_member_and_scope_in_hour_and_day_windows(store: Storage) -> None:
    limits = store.limits
    await limits.spend_tokens(HERE, ADA, 120, now=T0 + 10)
    await limits.spend_tokens(HERE, ADA, 30, now=T0 + 3599)
    await limits.spend_tokens([("channel", THREAD)], ADA, 7, now=T0 + 20)  # another scope
    await limits.spend_tokens(HERE, BOB, 1000, now=T0 + 30)  # another member
    assert await used(store, ADA, "hour", T0 + 100) == 150
    assert await used(store, ADA, "hour", T0 + 100, HERE[0]) == 150  # counted in the server too
    assert await used(store, ADA, "hour", T0, ("channel", THREAD)) == 7
    await limits.spend_tokens(HERE, ADA, 40, now=T0 + HOUR + 5)  # the next hour
    assert await used(store, ADA, "hour", T0 + HOUR + 6) == 40  # a fresh hour
    assert await used(store, ADA, "day", T0 + HOUR + 6) == 190  # the day adds its hours
    assert await used(store, ADA, "day", T0 + DAY) == 0  # a fresh day
    assert await used(store, BOB, "day", T0 + 60) == 1000


async def test_hours_before_today_are_deleted_when_tokens_are_counted(store: Storage, sql: Sql) -> None:
    limits = store.limits
    for hour in range(30):  # more than a day of hours, for three scopes
        await limits.spend_tokens([*HERE, ("channel", THREAD)], ADA, 1, now=T0 + hour * HOUR)
    today = window_start("day", T0 + 29 * HOUR)
    rows = await sql("SELECT COUNT(*), MIN(hour) FROM token_usage")
    assert rows == [(3 * len(range(int(today), int(T0) + 30 * HOUR, HOUR)), today)]
    assert await used(store, ADA, "day", T0 + 29 * HOUR) == 14  # 00:00 to 13:00 UTC


async def test_two_processes_spending_at_once_both_count(store: Storage, open_storage: Opener) -> None:
    async with await open_storage(ChannelSettings()) as other:
        spenders = [(store, other)[i % 2].limits for i in range(20)]
        await asyncio.gather(
            *(limits.spend_tokens(HERE, ADA, 5, now=T0 + i) for i, limits in enumerate(spenders))
        )
        assert await used(other, ADA, "hour", T0) == 100
        assert await used(store, ADA, "hour", T0, HERE[0]) == 100


async def test_counts_and_budgets_outlive_a_restart(store: Storage, open_storage: Opener) -> None:
    await store.rules.set_token_budget(Budget("channel", CHANNEL, 50, "hour"), actor_id=MOD)
    await store.limits.spend_tokens(HERE, ADA, 42, now=T0)
    await store.close()
    async with await open_storage(ChannelSettings()) as again:
        assert await used(again, ADA, "hour", T0 + 60) == 42
        assert await again.rules.token_budgets(GUILD, [CHANNEL]) == [Budget("channel", CHANNEL, 50, "hour")]
