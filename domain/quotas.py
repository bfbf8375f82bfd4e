"""Token budgets: how many tokens a member's model commands may generate per hour or per day.

Plain values and rules, no Discord and no I/O: moderators set budgets (``/mod quota``), the store
keeps them and counts what each member's generations wrote in fixed UTC windows, and the gate
refuses a member whose budget here is used up. Which budgets hold is decided here, once:

- A budget belongs to a server or a channel (a thread is a channel), and is for everyone
  (``role_id`` 0, "the plain budget") or for one role.
- In each scope, a member who has roles with a budget there gets the most generous of those
  instead of the plain one (an unlimited role wins); a member without such a role gets the plain
  one, if the scope has one.
- The budgets of every scope hold at once (the server's, the channel's, a thread's): a member is
  stopped by whichever runs out first, so a channel can tighten the server's budget, never loosen it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from model_service.errors import ValidationError

Window = Literal["hour", "day"]
WINDOW_S: dict[Window, int] = {"hour": 3600, "day": 86_400}
QuotaScope = Literal["guild", "channel"]
ScopeKey = tuple[QuotaScope, int]
MAX_BUDGET_TOKENS = 10_000_000
UNLIMITED = 0  # a role budget of 0 tokens: that role has no limit in the scope


@dataclass(frozen=True)
class Budget:
    """A token budget a moderator set: ``tokens`` per ``per`` (UTC hour or day) for each member."""

    scope: QuotaScope
    scope_id: int
    tokens: int  # per window; UNLIMITED only for a role
    per: Window = "hour"
    role_id: int = 0  # 0: the plain budget, for everyone without a role budget here

    def __post_init__(self) -> None:
        if self.per not in WINDOW_S:
            raise ValidationError(f"`per` must be hour or day, got {self.per}")
        low = 0 if self.role_id else 1  # a plain budget of "unlimited" is no budget: clear it instead
        if not low <= self.tokens <= MAX_BUDGET_TOKENS:
            raise ValidationError(f"`tokens` must be in [{low}, {MAX_BUDGET_TOKENS}], got {self.tokens}")

    @property
    def key(self) -> ScopeKey:
        return (self.scope, self.scope_id)

    @property
    def unlimited(self) -> bool:
        return self.tokens == UNLIMITED

    def describe(self) -> str:
        """``2,000 tokens per hour``, or ``unlimited``."""
        return "unlimited" if self.unlimited else f"{self.tokens:,} tokens per {self.per}"


def generosity(budget: Budget) -> tuple[bool, float, int]:
    """Orders budgets from least to most generous: unlimited above all, then by tokens per second
    (2,000 an hour is more than 20,000 a day), then the longer window."""
    rate = 0.0 if budget.unlimited else budget.tokens / WINDOW_S[budget.per]
    return (budget.unlimited, rate, WINDOW_S[budget.per])


def in_force(
    budgets: Iterable[Budget], role_ids: Collection[int], scopes: Sequence[ScopeKey]
) -> list[Budget]:
    """The budget that holds for a member with ``role_ids`` in each of ``scopes`` (in that order;
    a scope without one is left out). Unlimited ones are kept, so a member can be told so."""
    held = []
    for key in scopes:
        here = [b for b in budgets if b.key == key]
        roles = [b for b in here if b.role_id and b.role_id in role_ids]
        plain = [b for b in here if not b.role_id]
        chosen = max(roles, key=generosity) if roles else next(iter(plain), None)
        if chosen is not None:
            held.append(chosen)
    return held


def window_start(per: Window, now: float) -> int:
    """Where the current window began: the UTC hour's or day's start (Unix time counts from UTC
    midnight), so every process on the database agrees on it without talking to the others."""
    return int(now // WINDOW_S[per]) * WINDOW_S[per]


@dataclass(frozen=True)
class Standing:
    """A budget in force and what the member used of it in the current window."""

    budget: Budget
    used: int
    refills_at: float  # Unix time: the window's end

    @property
    def left(self) -> int:
        return max(0, self.budget.tokens - self.used)

    @property
    def used_up(self) -> bool:
        return not self.budget.unlimited and self.used >= self.budget.tokens


def standing(budget: Budget, used: int, now: float) -> Standing:
    return Standing(budget, used, window_start(budget.per, now) + WINDOW_S[budget.per])


def strictest(standings: Iterable[Standing]) -> Standing | None:
    """The budget that holds the member back most: of those used up, the one that refills last
    (the member waits for it); else the one with the fewest tokens left. None: no limit at all."""
    limited = [s for s in standings if not s.budget.unlimited]
    if spent := [s for s in limited if s.used_up]:
        return max(spent, key=lambda s: s.refills_at)
    return min(limited, key=lambda s: (s.left, -s.refills_at), default=None)


def wait_text(seconds: float) -> str:
    """A wait as a member reads it, rounded up to the minute: ``23 min``, ``5 h 10 min``."""
    hours, minutes = divmod(max(1, math.ceil(seconds / 60)), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def this_window(per: Window) -> str:
    return "this hour" if per == "hour" else "today (UTC)"
