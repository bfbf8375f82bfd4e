"""Moderation in Postgres: channel rules, blocked phrases, the audit log."""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg

from domain.rules import MAX_PHRASES, Blocklist, ChannelRules, normalize_phrase, rule_changes
from storage.layers import _check_scope
from storage.postgres.database import Repository, _audit
from storage.types import AuditEntry, LimitReached, Scope

# The first key of the two-key advisory locks taken per channel while counting its phrases.
_PHRASES_LOCK = 1

_UPSERT_RULES = """
    INSERT INTO channel_moderation AS rules
        (channel_id, locked, cooldown_s, max_inflight, updated_by, updated_at)
    VALUES ($1, COALESCE($2::bigint, 0), COALESCE($3::bigint, 0), COALESCE($4::bigint, 0), $5, $6)
    ON CONFLICT (channel_id) DO UPDATE SET
        locked = COALESCE($2::bigint, rules.locked),
        cooldown_s = COALESCE($3::bigint, rules.cooldown_s),
        max_inflight = COALESCE($4::bigint, rules.max_inflight),
        updated_by = excluded.updated_by, updated_at = excluded.updated_at
"""


class PostgresModeration(Repository):
    async def channel_rules(self, channel_id: int) -> ChannelRules:
        async with self._pool.acquire() as conn:
            return await _read_rules(conn, channel_id)

    async def set_channel_rules(
        self,
        channel_id: int,
        *,
        actor_id: int,
        locked: bool | None = None,
        cooldown_s: int | None = None,
        max_inflight: int | None = None,
    ) -> ChannelRules:
        changes = rule_changes(locked, cooldown_s, max_inflight)
        now = time.time()
        async with self._transaction() as db:
            await db.execute(
                _UPSERT_RULES,
                channel_id,
                None if locked is None else int(locked),
                cooldown_s,
                max_inflight,
                actor_id,
                now,
            )
            for action, detail in changes:
                await _audit(db, "channel", channel_id, actor_id, action, detail, now)
            return await _read_rules(db, channel_id)

    async def add_blocked_phrase(self, channel_id: int, phrase: str, *, actor_id: int) -> bool:
        phrase = normalize_phrase(phrase)
        now = time.time()
        async with self._transaction() as db:
            # Count, then insert: another process must not count at the same time and pass the
            # limit with us. There is no row to lock for a channel without phrases, so lock its id.
            await db.execute("SELECT pg_advisory_xact_lock($1, hashint8($2))", _PHRASES_LOCK, channel_id)
            count, present = await db.fetchrow(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE phrase = $1)"
                " FROM blocked_phrases WHERE channel_id = $2",
                phrase,
                channel_id,
            )
            if present:
                return False
            if count >= MAX_PHRASES:
                raise LimitReached("blocked phrases", MAX_PHRASES)
            await db.execute(
                "INSERT INTO blocked_phrases (channel_id, phrase, added_by, added_at)"
                " VALUES ($1, $2, $3, $4)",
                channel_id,
                phrase,
                actor_id,
                now,
            )
            await _audit(db, "channel", channel_id, actor_id, "blocklist add", phrase, now)
        return True

    async def remove_blocked_phrase(self, channel_id: int, phrase: str, *, actor_id: int) -> bool:
        phrase = normalize_phrase(phrase)
        async with self._transaction() as db:
            removed = await db.fetchval(
                "DELETE FROM blocked_phrases WHERE channel_id = $1 AND phrase = $2 RETURNING true",
                channel_id,
                phrase,
            )
            if removed:
                await _audit(db, "channel", channel_id, actor_id, "blocklist remove", phrase, time.time())
        return bool(removed)

    async def record_action(
        self, scope: Scope, scope_id: int, *, actor_id: int, action: str, detail: str = ""
    ) -> None:
        _check_scope(scope)
        async with self._transaction() as db:
            await _audit(db, scope, scope_id, actor_id, action, detail, time.time())

    async def audit_log(
        self, guild_id: int | None, channel_ids: Sequence[int], *, limit: int = 20
    ) -> list[AuditEntry]:
        scopes: list[tuple[str, int]] = [("channel", c) for c in channel_ids]
        if guild_id is not None:
            scopes.append(("guild", guild_id))
        if not scopes:
            return []
        where = " OR ".join(f"(scope = ${2 * i + 1} AND scope_id = ${2 * i + 2})" for i in range(len(scopes)))
        rows = await self._pool.fetch(
            "SELECT id, scope, scope_id, actor_id, action, detail, at FROM audit_log "
            f"WHERE {where} ORDER BY id DESC LIMIT ${2 * len(scopes) + 1}",
            *[part for pair in scopes for part in pair],
            limit,
        )
        return [AuditEntry(*row) for row in rows]


async def _read_rules(db: asyncpg.Connection, channel_id: int) -> ChannelRules:
    row = await db.fetchrow(
        "SELECT locked, cooldown_s, max_inflight FROM channel_moderation WHERE channel_id = $1", channel_id
    )
    phrases = await db.fetch(
        'SELECT phrase FROM blocked_phrases WHERE channel_id = $1 ORDER BY phrase COLLATE "C"', channel_id
    )
    locked, cooldown_s, max_inflight = tuple(row) if row is not None else (0, 0, 0)
    return ChannelRules(
        bool(locked), int(cooldown_s), int(max_inflight), Blocklist(tuple(r[0] for r in phrases))
    )
