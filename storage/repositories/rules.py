"""Channel rules (lock, cooldown, limit), blocked phrases, token budgets, and the audit log."""

from __future__ import annotations

import time
from collections.abc import Sequence

from domain.rules import MAX_PHRASES, Blocklist, ChannelRules, normalize_phrase, rule_changes
from domain.settings import check_scope
from storage.driver import Connection
from storage.repositories.base import audit, pairs
from storage.repositories.quotas import TokenBudgets
from storage.types import AuditEntry, LimitReached, Scope

# The namespace of the lock taken per channel while its phrases are counted.
_PHRASES_LOCK = 1

# A value left out (None) keeps what is stored, or the default of a new row.
_UPSERT_RULES = """
    INSERT INTO channel_moderation (channel_id, locked, cooldown_s, max_inflight, updated_by, updated_at)
    VALUES ($1, COALESCE(CAST($2 AS BIGINT), 0), COALESCE(CAST($3 AS BIGINT), 0),
            COALESCE(CAST($4 AS BIGINT), 0), $5, $6)
    ON CONFLICT (channel_id) DO UPDATE SET
        locked = COALESCE(CAST($2 AS BIGINT), channel_moderation.locked),
        cooldown_s = COALESCE(CAST($3 AS BIGINT), channel_moderation.cooldown_s),
        max_inflight = COALESCE(CAST($4 AS BIGINT), channel_moderation.max_inflight),
        updated_by = excluded.updated_by, updated_at = excluded.updated_at
"""


class Rules(TokenBudgets):
    async def channel_rules(self, channel_id: int) -> ChannelRules:
        """What moderators set for this channel or thread (not its parent's)."""
        async with self._db.reading() as db:
            return await _read_rules(db, channel_id)

    async def set_channel_rules(
        self,
        channel_id: int,
        *,
        actor_id: int,
        locked: bool | None = None,
        cooldown_s: int | None = None,
        max_inflight: int | None = None,
    ) -> ChannelRules:
        """Change some of a channel's rules and log each change, in one transaction."""
        changes = rule_changes(locked, cooldown_s, max_inflight)
        now = time.time()
        async with self._db.transaction() as tx:
            await tx.execute(
                _UPSERT_RULES,
                channel_id,
                None if locked is None else int(locked),
                cooldown_s,
                max_inflight,
                actor_id,
                now,
            )
            for action, detail in changes:
                await audit(tx, "channel", channel_id, actor_id, action, detail, now)
            return await _read_rules(tx, channel_id)

    async def add_blocked_phrase(self, channel_id: int, phrase: str, *, actor_id: int) -> bool:
        """Block a phrase here; False if it already was. Refuses past ``MAX_PHRASES``."""
        phrase = normalize_phrase(phrase)
        now = time.time()
        async with self._db.transaction() as tx:
            # Count, then insert: another process must not count at the same time and pass the
            # limit with us. There is no row to lock for a channel without phrases: lock its id.
            await tx.lock(_PHRASES_LOCK, channel_id)
            count, present = await tx.fetchrow(
                "SELECT COUNT(*), COUNT(CASE WHEN phrase = $1 THEN 1 END)"
                " FROM blocked_phrases WHERE channel_id = $2",
                phrase,
                channel_id,
            ) or (0, 0)
            if present:
                return False
            if count >= MAX_PHRASES:
                raise LimitReached("blocked phrases", MAX_PHRASES)
            await tx.execute(
                "INSERT INTO blocked_phrases (channel_id, phrase, added_by, added_at) VALUES ($1, $2, $3, $4)",
                channel_id,
                phrase,
                actor_id,
                now,
            )
            await audit(tx, "channel", channel_id, actor_id, "blocklist add", phrase, now)
        return True

    async def remove_blocked_phrase(self, channel_id: int, phrase: str, *, actor_id: int) -> bool:
        """Unblock a phrase here; False if it was not blocked."""
        phrase = normalize_phrase(phrase)
        async with self._db.transaction() as tx:
            removed = await tx.execute(
                "DELETE FROM blocked_phrases WHERE channel_id = $1 AND phrase = $2", channel_id, phrase
            )
            if removed:
                await audit(tx, "channel", channel_id, actor_id, "blocklist remove", phrase, time.time())
        return removed > 0

    async def record_action(
        self, scope: Scope, scope_id: int, *, actor_id: int, action: str, detail: str = ""
    ) -> None:
        """Add an entry to the audit log (moderator actions that change no stored rule)."""
        check_scope(scope)
        async with self._db.transaction() as tx:
            await audit(tx, scope, scope_id, actor_id, action, detail, time.time())

    async def audit_log(
        self, guild_id: int | None, channel_ids: Sequence[int], *, limit: int = 20
    ) -> list[AuditEntry]:
        """The newest entries about these channels and (with ``guild_id``) the server's defaults."""
        scopes: list[tuple[str, int]] = [("channel", c) for c in channel_ids]
        if guild_id is not None:
            scopes.append(("guild", guild_id))
        if not scopes:
            return []
        async with self._db.reading() as db:
            rows = await db.fetch(
                "SELECT id, scope, scope_id, actor_id, action, detail, at FROM audit_log "
                f"WHERE {pairs(scopes)} ORDER BY id DESC LIMIT ${2 * len(scopes) + 1}",
                *[part for pair in scopes for part in pair],
                limit,
            )
        return [AuditEntry(*row) for row in rows]


async def _read_rules(db: Connection, channel_id: int) -> ChannelRules:
    row = await db.fetchrow(
        "SELECT locked, cooldown_s, max_inflight FROM channel_moderation WHERE channel_id = $1", channel_id
    )
    phrases = await db.fetch("SELECT phrase FROM blocked_phrases WHERE channel_id = $1", channel_id)
    locked, cooldown_s, max_inflight = tuple(row) if row is not None else (0, 0, 0)
    # Sorted here, by code point, the same on every database whatever its collation.
    return ChannelRules(
        bool(locked), int(cooldown_s), int(max_inflight), Blocklist(tuple(sorted(r[0] for r in phrases)))
    )
