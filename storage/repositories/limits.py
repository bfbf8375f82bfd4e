"""Limits shared by every process on the database: cooldowns and expiring leases, each request
decided inside one write transaction (and the tokens members spent: ``storage.repositories.quotas``).

Each ``take`` locks the scopes it checks (in order, so two takes never wait on each other in a
circle) until its transaction ends: two requests can never both take a channel's last free slot,
whichever process each arrived at.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from storage.driver import Connection
from storage.repositories.quotas import TokenCounts
from storage.types import CoolingDown, Quota, ScopeBusy

# The namespace of the locks taken per scope while its limits are decided.
_LIMITS_LOCK = 0x4C494D  # "LIM"


def inflight_scope(scope_id: int) -> str:
    return f"inflight:{scope_id}"


def lock_scope(name: str) -> str:
    return f"lock:{name}"


def new_ticket() -> int:
    return secrets.randbits(62)  # fits a signed 64-bit column on every backend


class Limits(TokenCounts):
    async def take(self, quotas: Sequence[Quota], user_id: int, *, now: float, lease_s: float) -> int:
        async with self._db.transaction() as tx:
            for scope in sorted({inflight_scope(q.scope_id) for q in quotas}):
                await tx.lock(_LIMITS_LOCK, scope)
            await _expire(tx, now)
            for quota in quotas:
                if quota.cooldown_s > 0:
                    used = await tx.fetchval(
                        "SELECT used_at FROM cooldowns WHERE scope_id = $1 AND user_id = $2",
                        quota.scope_id,
                        user_id,
                    )
                    if used is not None and (wait := used + quota.cooldown_s - now) > 0:
                        raise CoolingDown(quota.scope_id, quota.cooldown_s, wait)
            for quota in quotas:
                if quota.max_inflight > 0:
                    running = await tx.fetchval(
                        "SELECT COUNT(*) FROM leases WHERE scope = $1", inflight_scope(quota.scope_id)
                    )
                    if running >= quota.max_inflight:
                        raise ScopeBusy(quota.scope_id, quota.max_inflight)
            ticket = new_ticket()
            for quota in quotas:
                if quota.cooldown_s > 0:
                    await tx.execute(
                        "INSERT INTO cooldowns (scope_id, user_id, used_at) VALUES ($1, $2, $3)"
                        " ON CONFLICT (scope_id, user_id) DO UPDATE SET used_at = excluded.used_at",
                        quota.scope_id,
                        user_id,
                        now,
                    )
                await _lease(tx, ticket, inflight_scope(quota.scope_id), now + lease_s)
            return ticket

    async def give_back(self, ticket: int) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM leases WHERE ticket = $1", ticket)

    async def renew(self, ticket: int, *, now: float, lease_s: float) -> bool:
        async with self._db.transaction() as tx:
            renewed = await tx.execute(
                "UPDATE leases SET expires_at = $1 WHERE ticket = $2 AND expires_at > $3",
                now + lease_s,
                ticket,
                now,
            )
        return renewed > 0

    async def inflight(self, scope_id: int, *, now: float) -> int:
        async with self._db.reading() as db:
            count = await db.fetchval(
                "SELECT COUNT(*) FROM leases WHERE scope = $1 AND expires_at > $2",
                inflight_scope(scope_id),
                now,
            )
        return int(count or 0)

    async def reset_cooldowns(self, scope_id: int) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM cooldowns WHERE scope_id = $1", scope_id)

    async def hold(self, name: str, *, now: float, lease_s: float) -> int | None:
        scope = lock_scope(name)
        async with self._db.transaction() as tx:
            await tx.lock(_LIMITS_LOCK, scope)
            await _expire(tx, now)
            if await tx.fetchval("SELECT 1 FROM leases WHERE scope = $1", scope) is not None:
                return None
            ticket = new_ticket()
            await _lease(tx, ticket, scope, now + lease_s)
            return ticket


async def _expire(tx: Connection, now: float) -> None:
    await tx.execute("DELETE FROM leases WHERE expires_at <= $1", now)


async def _lease(tx: Connection, ticket: int, scope: str, expires_at: float) -> None:
    await tx.execute(
        "INSERT INTO leases (ticket, scope, expires_at) VALUES ($1, $2, $3)", ticket, scope, expires_at
    )
