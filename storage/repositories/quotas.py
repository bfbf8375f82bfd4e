"""Token quotas: the budgets moderators set, and the tokens each member's generations wrote.

Two halves, each mixed into the repository whose protocol it extends: budgets are moderation rules
(:class:`Rules`, :class:`~storage.protocols.RulesStore`: written with their audit entry in one
transaction); counts are limits shared by every process (:class:`Limits`,
:class:`~storage.protocols.LimitStore`). Counts live in UTC hour buckets, so an hour's and a day's
use are both sums of rows, and rows stay bounded: each spend deletes the hours before today.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from domain.quotas import WINDOW_S, Budget, window_start
from domain.settings import check_scope
from storage.repositories.base import Repository, audit, pairs
from storage.types import Scope


def _whom(role_id: int) -> str:
    return f"for <@&{role_id}>" if role_id else "for everyone"


class TokenBudgets(Repository):
    """Budgets per server or channel, for everyone or a role (mixed into ``Rules``)."""

    async def token_budgets(self, guild_id: int, channel_ids: Sequence[int]) -> list[Budget]:
        """The budgets set for the server and for these channels, every role's included."""
        scopes: list[tuple[str, int]] = [("guild", guild_id), *(("channel", c) for c in channel_ids)]
        async with self._db.reading() as db:
            rows = await db.fetch(
                f"SELECT scope, scope_id, tokens, per, role_id FROM token_budgets WHERE {pairs(scopes)}"
                " ORDER BY scope, scope_id, role_id",
                *[part for pair in scopes for part in pair],
            )
        return [
            Budget(scope, int(scope_id), int(tokens), per, int(role_id))
            for scope, scope_id, tokens, per, role_id in rows
        ]

    async def set_token_budget(self, budget: Budget, *, actor_id: int) -> None:
        """Set (or replace) the budget of its scope and role, and log it, in one transaction."""
        now = time.time()
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO token_budgets (scope, scope_id, role_id, tokens, per, updated_by, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (scope, scope_id, role_id) DO UPDATE SET"
                " tokens = excluded.tokens, per = excluded.per,"
                " updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                budget.scope,
                budget.scope_id,
                budget.role_id,
                budget.tokens,
                budget.per,
                actor_id,
                now,
            )
            detail = f"{budget.describe()} {_whom(budget.role_id)}"
            await audit(tx, budget.scope, budget.scope_id, actor_id, "quota set", detail, now)

    async def clear_token_budget(
        self, scope: Scope, scope_id: int, *, role_id: int = 0, actor_id: int
    ) -> bool:
        """Remove the budget of this scope and role, and log it; False if there was none."""
        check_scope(scope)
        async with self._db.transaction() as tx:
            removed = await tx.execute(
                "DELETE FROM token_budgets WHERE scope = $1 AND scope_id = $2 AND role_id = $3",
                scope,
                scope_id,
                role_id,
            )
            if removed:
                await audit(tx, scope, scope_id, actor_id, "quota clear", _whom(role_id), time.time())
        return removed > 0


class TokenCounts(Repository):
    """Tokens each member's generations wrote, per scope and UTC hour (mixed into ``Limits``)."""

    async def spend_tokens(
        self, scopes: Sequence[tuple[Scope, int]], user_id: int, tokens: int, *, now: float
    ) -> None:
        """Add ``tokens`` to the member's count in each scope; forget the hours before today."""
        hour = window_start("hour", now)
        rows = [(scope, scope_id, user_id, hour, tokens) for scope, scope_id in sorted(set(scopes))]
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM token_usage WHERE hour < $1", window_start("day", now))
            # Added in the database, not read and written back: two spends at once both count.
            # In one order, so two spends over the same rows never wait on each other in a circle.
            await tx.executemany(
                "INSERT INTO token_usage (scope, scope_id, user_id, hour, tokens) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (scope, scope_id, user_id, hour) DO UPDATE SET"
                " tokens = token_usage.tokens + excluded.tokens",
                rows,
            )

    async def tokens_used(self, scope: Scope, scope_id: int, user_id: int, *, since: float) -> int:
        """Tokens the member's generations wrote in the scope from ``since`` (an hour's start) on."""
        async with self._db.reading() as db:
            used = await db.fetchval(
                "SELECT COALESCE(SUM(tokens), 0) FROM token_usage"
                " WHERE scope = $1 AND scope_id = $2 AND user_id = $3 AND hour >= $4",
                scope,
                scope_id,
                user_id,
                int(since // WINDOW_S["hour"]) * WINDOW_S["hour"],
            )
        return int(used or 0)
