"""Shared limits in Postgres: cooldowns and expiring leases, decided under per-scope advisory locks.

Each ``take`` locks the scopes it checks (in id order, so two takes never wait on each other in a
circle) for the length of its transaction: two processes can never both take a channel's last
free slot.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from storage.postgres.database import Repository, affected
from storage.sqlite.limits import inflight_scope, lock_scope, new_ticket
from storage.types import CoolingDown, Quota, ScopeBusy

# The first key of the two-key advisory locks taken per scope while its limits are decided.
_LIMITS_LOCK = 0x4C494D  # "LIM"


class PostgresLimits(Repository):
    async def take(self, quotas: Sequence[Quota], user_id: int, *, now: float, lease_s: float) -> int:
        async with self._transaction() as db:
            for scope in sorted({inflight_scope(q.scope_id) for q in quotas}):
                await _lock(db, scope)
            await db.execute("DELETE FROM leases WHERE expires_at <= $1", now)
            for quota in quotas:
                if quota.cooldown_s > 0:
                    used = await db.fetchval(
                        "SELECT used_at FROM cooldowns WHERE scope_id = $1 AND user_id = $2",
                        quota.scope_id,
                        user_id,
                    )
                    if used is not None and (wait := used + quota.cooldown_s - now) > 0:
                        raise CoolingDown(quota.scope_id, quota.cooldown_s, wait)
            for quota in quotas:
                if quota.max_inflight > 0:
                    running = await db.fetchval(
                        "SELECT COUNT(*) FROM leases WHERE scope = $1", inflight_scope(quota.scope_id)
                    )
                    if running >= quota.max_inflight:
                        raise ScopeBusy(quota.scope_id, quota.max_inflight)
            ticket = new_ticket()
            for quota in quotas:
                if quota.cooldown_s > 0:
                    await db.execute(
                        "INSERT INTO cooldowns (scope_id, user_id, used_at) VALUES ($1, $2, $3)"
                        " ON CONFLICT (scope_id, user_id) DO UPDATE SET used_at = excluded.used_at",
                        quota.scope_id,
                        user_id,
                        now,
                    )
                await db.execute(
                    "INSERT INTO leases (ticket, scope, expires_at) VALUES ($1, $2, $3)",
                    ticket,
                    inflight_scope(quota.scope_id),
                    now + lease_s,
                )
            return ticket

    async def give_back(self, ticket: int) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM leases WHERE ticket = $1", ticket)

    async def renew(self, ticket: int, *, now: float, lease_s: float) -> bool:
        async with self._transaction() as db:
            status = await db.execute(
                "UPDATE leases SET expires_at = $1 WHERE ticket = $2 AND expires_at > $3",
                now + lease_s,
                ticket,
                now,
            )
        return affected(status) > 0

    async def inflight(self, scope_id: int, *, now: float) -> int:
        count = await self._pool.fetchval(
            "SELECT COUNT(*) FROM leases WHERE scope = $1 AND expires_at > $2", inflight_scope(scope_id), now
        )
        return int(count or 0)

    async def reset_cooldowns(self, scope_id: int) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM cooldowns WHERE scope_id = $1", scope_id)

    async def hold(self, name: str, *, now: float, lease_s: float) -> int | None:
        scope = lock_scope(name)
        async with self._transaction() as db:
            await _lock(db, scope)
            await db.execute("DELETE FROM leases WHERE scope = $1 AND expires_at <= $2", scope, now)
            if await db.fetchval("SELECT 1 FROM leases WHERE scope = $1", scope) is not None:
                return None
            ticket = new_ticket()
            await db.execute(
                "INSERT INTO leases (ticket, scope, expires_at) VALUES ($1, $2, $3)",
                ticket,
                scope,
                now + lease_s,
            )
            return ticket


async def _lock(db: asyncpg.Connection, scope: str) -> None:
    await db.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LIMITS_LOCK, scope)
