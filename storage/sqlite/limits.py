"""Shared limits in SQLite: cooldowns and expiring leases, decided inside one write transaction.

``BEGIN IMMEDIATE`` serialises every process writing the file, so two requests can never both
take a channel's last free slot, whichever process each arrived at.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import aiosqlite

from storage.sqlite.database import Repository
from storage.types import CoolingDown, Quota, ScopeBusy


def inflight_scope(scope_id: int) -> str:
    return f"inflight:{scope_id}"


def lock_scope(name: str) -> str:
    return f"lock:{name}"


def new_ticket() -> int:
    return secrets.randbits(62)  # fits a signed 64-bit column on every backend


class SQLiteLimits(Repository):
    async def take(self, quotas: Sequence[Quota], user_id: int, *, now: float, lease_s: float) -> int:
        async with self._transaction() as db:
            await _expire(db, now)
            for quota in quotas:
                if quota.cooldown_s > 0:
                    cursor = await db.execute(
                        "SELECT used_at FROM cooldowns WHERE scope_id = ? AND user_id = ?",
                        (quota.scope_id, user_id),
                    )
                    row = await cursor.fetchone()
                    if row is not None and (wait := row[0] + quota.cooldown_s - now) > 0:
                        raise CoolingDown(quota.scope_id, quota.cooldown_s, wait)
            for quota in quotas:
                if quota.max_inflight > 0:
                    cursor = await db.execute(
                        "SELECT COUNT(*) FROM leases WHERE scope = ?", (inflight_scope(quota.scope_id),)
                    )
                    (running,) = await cursor.fetchone() or (0,)
                    if running >= quota.max_inflight:
                        raise ScopeBusy(quota.scope_id, quota.max_inflight)
            ticket = new_ticket()
            for quota in quotas:
                if quota.cooldown_s > 0:
                    await db.execute(
                        "INSERT INTO cooldowns (scope_id, user_id, used_at) VALUES (?, ?, ?)"
                        " ON CONFLICT (scope_id, user_id) DO UPDATE SET used_at = excluded.used_at",
                        (quota.scope_id, user_id, now),
                    )
                await db.execute(
                    "INSERT INTO leases (ticket, scope, expires_at) VALUES (?, ?, ?)",
                    (ticket, inflight_scope(quota.scope_id), now + lease_s),
                )
            return ticket

    async def give_back(self, ticket: int) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM leases WHERE ticket = ?", (ticket,))

    async def renew(self, ticket: int, *, now: float, lease_s: float) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE leases SET expires_at = ? WHERE ticket = ? AND expires_at > ?",
                (now + lease_s, ticket, now),
            )
            return cursor.rowcount > 0

    async def inflight(self, scope_id: int, *, now: float) -> int:
        async with self._lock:
            cursor = await self._db.execute(
                "SELECT COUNT(*) FROM leases WHERE scope = ? AND expires_at > ?",
                (inflight_scope(scope_id), now),
            )
            (count,) = await cursor.fetchone() or (0,)
        return int(count)

    async def reset_cooldowns(self, scope_id: int) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM cooldowns WHERE scope_id = ?", (scope_id,))

    async def hold(self, name: str, *, now: float, lease_s: float) -> int | None:
        async with self._transaction() as db:
            await _expire(db, now)
            cursor = await db.execute("SELECT 1 FROM leases WHERE scope = ?", (lock_scope(name),))
            if await cursor.fetchone() is not None:
                return None
            ticket = new_ticket()
            await db.execute(
                "INSERT INTO leases (ticket, scope, expires_at) VALUES (?, ?, ?)",
                (ticket, lock_scope(name), now + lease_s),
            )
            return ticket


async def _expire(db: aiosqlite.Connection, now: float) -> None:
    await db.execute("DELETE FROM leases WHERE expires_at <= ?", (now,))
