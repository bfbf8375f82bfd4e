"""Token budgets without Discord or a database: which budget holds, windows, what is left."""

from __future__ import annotations

import pytest

from domain.quotas import (
    MAX_BUDGET_TOKENS,
    UNLIMITED,
    Budget,
    in_force,
    standing,
    strictest,
    wait_text,
    window_start,
)
from model_service.errors import ValidationError

GUILD, CHANNEL, THREAD = 10, 20, 30
PATRONS, HELPERS, OTHERS = 101, 102, 103
HERE = [("guild", GUILD), ("channel", CHANNEL)]
T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


def plain(tokens: int, per: str = "hour", scope: str = "channel", scope_id: int = CHANNEL) -> Budget:
    return Budget(scope, scope_id, tokens, per)  # type: ignore[arg-type]


def role(role_id: int, tokens: int, per: str = "hour", scope: str = "channel") -> Budget:
    return Budget(scope, CHANNEL if scope == "channel" else GUILD, tokens, per, role_id)  # type: ignore[arg-type]


# --- which budget holds ------------------------------------------------------------------------


def test_a_member_without_a_role_budget_gets_the_plain_one() -> None:
    budgets = [plain(1000), role(PATRONS, 5000)]
    assert in_force(budgets, {HELPERS}, HERE) == [plain(1000)]


def test_the_most_generous_of_the_members_role_budgets_replaces_the_plain_one() -> None:
    budgets = [plain(1000), role(PATRONS, 5000), role(HELPERS, 3000), role(OTHERS, 9000)]
    assert in_force(budgets, {PATRONS, HELPERS}, HERE) == [role(PATRONS, 5000)]


def test_a_role_budget_replaces_the_plain_one_even_when_smaller() -> None:
    # A moderator who gives a role its own budget means it for that role: it is not topped up.
    assert in_force([plain(1000), role(PATRONS, 500)], {PATRONS}, HERE) == [role(PATRONS, 500)]


def test_generosity_compares_rates_and_unlimited_wins() -> None:
    hourly, daily = role(PATRONS, 2000, "hour"), role(HELPERS, 20_000, "day")  # 48,000 a day vs 20,000
    assert in_force([hourly, daily], {PATRONS, HELPERS}, HERE) == [hourly]
    free = role(OTHERS, UNLIMITED)
    assert in_force([hourly, daily, free], {PATRONS, HELPERS, OTHERS}, HERE) == [free]
    assert free.unlimited and free.describe() == "unlimited"


def test_every_scope_holds_its_own_budget_server_first() -> None:
    server, channel, thread = plain(10_000, "day", "guild", GUILD), plain(2000), plain(500, scope_id=THREAD)
    scopes = [*HERE, ("channel", THREAD)]
    assert in_force([thread, channel, server], set(), scopes) == [server, channel, thread]
    assert in_force([channel, plain(9, scope_id=99)], set(), HERE) == [channel]  # another channel's: not here


def test_no_budget_anywhere_holds_nothing() -> None:
    assert in_force([], {PATRONS}, HERE) == []
    assert in_force([role(PATRONS, 5000)], set(), HERE) == []  # only a role's, and the member lacks it


# --- budgets are checked -------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", [0, -1, MAX_BUDGET_TOKENS + 1])
def test_a_plain_budget_needs_at_least_one_token(tokens: int) -> None:
    with pytest.raises(
        ValidationError, match=f"`tokens` must be in \\[1, {MAX_BUDGET_TOKENS}\\], got {tokens}"
    ):
        plain(tokens)


def test_only_a_role_may_be_unlimited_and_windows_are_hours_or_days() -> None:
    assert role(PATRONS, UNLIMITED).unlimited
    with pytest.raises(ValidationError, match="`per` must be hour or day, got week"):
        plain(10, "week")


# --- windows and standings -----------------------------------------------------------------------


def test_windows_are_fixed_utc_hours_and_days() -> None:
    assert window_start("hour", T0 + 59 * 60) == T0
    assert window_start("day", T0 + 3600) == T0 - 8 * 3600  # midnight UTC
    assert standing(plain(100), 40, T0 + 1800).refills_at == T0 + 3600
    assert standing(plain(100, "day"), 40, T0).refills_at == T0 + 16 * 3600


def test_a_budget_is_used_up_at_its_size_and_left_never_goes_negative() -> None:
    assert not standing(plain(100), 99, T0).used_up
    over = standing(plain(100), 130, T0)  # the last request ran past it
    assert over.used_up and over.left == 0


def test_the_strictest_is_the_used_up_one_that_refills_last_else_the_one_with_least_left() -> None:
    hour = standing(plain(100, "hour"), 100, T0)
    day = standing(plain(1000, "day", "guild", GUILD), 1000, T0)
    assert strictest([hour, day]) == day  # the member waits for both: the day is the longer wait
    roomy = standing(plain(1000, "day", "guild", GUILD), 300, T0)
    tight = standing(plain(100, "hour"), 60, T0)
    assert strictest([roomy, tight]) == tight
    assert strictest([standing(role(PATRONS, UNLIMITED), 0, T0)]) is None
    assert strictest([]) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1 min"),
        (60, "1 min"),
        (61, "2 min"),
        (23 * 60, "23 min"),
        (3600, "1 h"),
        (5 * 3600 + 550, "5 h 10 min"),
    ],
)
def test_waits_are_rounded_up_to_the_minute(seconds: float, text: str) -> None:
    assert wait_text(seconds) == text
