"""Moderation in SQLite: channel rules, blocked phrases, the audit log."""

from __future__ import annotations

import time
from collections.abc import Sequence

import aiosqlite

from domain.rules import MAX_PHRASES, Blocklist, ChannelRules, normalize_phrase, rule_changes
from storage.layers import _check_scope
from storage.sqlite.database import Repository, _audit
from storage.types import AuditEntry, LimitReached, Scope

_UPSERT_RULES = """
    INSERT INTO channel_moderation (channel_id, locked, cooldown_s, max_inflight, updated_by, updated_at)
    VALUES (:channel_id, COALESCE(:locked, 0), COALESCE(:cooldown_s, 0), COALESCE(:max_inflight, 0),
            :actor_id, :now)
    ON CONFLICT (channel_id) DO UPDATE SET
        locked = COALESCE(:locked, locked),
        cooldown_s = COALESCE(:cooldown_s, cooldown_s),
        max_inflight = COALESCE(:max_inflight, max_inflight),
        updated_by = excluded.updated_by, updated_at = excluded.updated_at
"""


class SQLiteModeration(Repository):
    async def channel_rules(self, channel_id: int) -> ChannelRules:
        """What moderators set for this channel or thread (not its parent's)."""
        async with self._lock:
            return await _read_rules(self._db, channel_id)

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
        async with self._transaction() as db:
            await db.execute(
                _UPSERT_RULES,
                {
                    "channel_id": channel_id,
                    "locked": None if locked is None else int(locked),
                    "cooldown_s": cooldown_s,
                    "max_inflight": max_inflight,
                    "actor_id": actor_id,
                    "now": now,
                },
            )
            for action, detail in changes:
                await _audit(db, "channel", channel_id, actor_id, action, detail, now)
            return await _read_rules(db, channel_id)

    async def add_blocked_phrase(self, channel_id: int, phrase: str, *, actor_id: int) -> bool:
        """Block a phrase here; False if it already was. Refuses past ``MAX_PHRASES``."""
        phrase = normalize_phrase(phrase)
        now = time.time()
        async with self._transaction() as db:
            async with db.execute(
                "SELECT COUNT(*), SUM(phrase = ?) FROM blocked_phrases WHERE channel_id = ?",
                (phrase, channel_id),
            ) as cursor:
                count, present = await cursor.fetchone() or (0, 0)
            if present:
                return False
            if count >= MAX_PHRASES:
                raise LimitReached("blocked phrases", MAX_PHRASES)
            await db.execute(
                "INSERT INTO blocked_phrases (channel_id, phrase, added_by, added_at) VALUES (?, ?, ?, ?)",
                (channel_id, phrase, actor_id, now),
            )
            await _audit(db, "channel", channel_id, actor_id, "blocklist add", phrase, now)
        return True

    async def remove_blocked_phrase(self, channel_id: int, phrase: str, *, actor_id: int) -> bool:
        """Unblock a phrase here; False if it was not blocked."""
        phrase = normalize_phrase(phrase)
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM blocked_phrases WHERE channel_id = ? AND phrase = ?", (channel_id, phrase)
            )
            removed = cursor.rowcount > 0
            if removed:
                await _audit(db, "channel", channel_id, actor_id, "blocklist remove", phrase, time.time())
        return removed

    async def record_action(
        self, scope: Scope, scope_id: int, *, actor_id: int, action: str, detail: str = ""
    ) -> None:
        """Add an entry to the audit log (moderator actions that change no stored rule)."""
        _check_scope(scope)
        async with self._transaction() as db:
            await _audit(db, scope, scope_id, actor_id, action, detail, time.time())

    async def audit_log(
        self, guild_id: int | None, channel_ids: Sequence[int], *, limit: int = 20
    ) -> list[AuditEntry]:
        """The newest entries about these channels and (with ``guild_id``) the server's defaults."""
        scopes: list[tuple[str, int]] = [("channel", c) for c in channel_ids]
        if guild_id is not None:
            scopes.append(("guild", guild_id))
        if not scopes:
            return []
        where = " OR ".join(["(scope = ? AND scope_id = ?)"] * len(scopes))
        sql = (
            "SELECT id, scope, scope_id, actor_id, action, detail, at FROM audit_log "
            f"WHERE {where} ORDER BY id DESC LIMIT ?"
        )
        params = [part for pair in scopes for part in pair] + [limit]
        async with self._lock, self._db.execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        return [AuditEntry(*row) for row in rows]


async def _read_rules(db: aiosqlite.Connection, channel_id: int) -> ChannelRules:
    async with db.execute(
        "SELECT locked, cooldown_s, max_inflight FROM channel_moderation WHERE channel_id = ?", (channel_id,)
    ) as cursor:
        row = await cursor.fetchone()
    async with db.execute(
        "SELECT phrase FROM blocked_phrases WHERE channel_id = ? ORDER BY phrase", (channel_id,)
    ) as cursor:
        phrases = tuple(r[0] for r in await cursor.fetchall())
    locked, cooldown_s, max_inflight = row if row is not None else (0, 0, 0)
    return ChannelRules(bool(locked), int(cooldown_s), int(max_inflight), Blocklist(phrases))
