"""Channel settings in SQLite: one row per key per scope, so changes to different keys never
overwrite each other and the same key is last-writer-wins."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Mapping

from domain.settings import SETTING_KEYS, ChannelSettings, check_setting_key, validate_setting
from storage.layers import Row, SettingsLayers, _brief, _check_scope, _encode
from storage.sqlite.database import Database, Repository, _audit
from storage.types import Scope

log = logging.getLogger("storage")

_UPSERT_SETTING = """
    INSERT INTO settings (scope, scope_id, key, value, updated_by, updated_at)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (scope, scope_id, key) DO UPDATE SET
        value = excluded.value, updated_by = excluded.updated_by, updated_at = excluded.updated_at
"""


class SQLiteSettings(SettingsLayers, Repository):
    def __init__(self, database: Database, defaults: ChannelSettings) -> None:
        super().__init__(database)
        self.defaults = defaults

    async def set_values(
        self,
        scope: Scope,
        scope_id: int,
        values: Mapping[str, object],
        *,
        actor_id: int,
        max_new_tokens_cap: int,
        model_names: Collection[str] | None,
    ) -> dict[str, object]:
        """Validate every value, then write them all in one transaction; returns what was stored."""
        _check_scope(scope)
        clean = {
            key: validate_setting(key, value, max_new_tokens_cap=max_new_tokens_cap, model_names=model_names)
            for key, value in values.items()
        }
        if not clean:
            return {}
        now = time.time()
        rows = [(scope, scope_id, key, _encode(v), actor_id, now) for key, v in clean.items()]
        detail = ", ".join(f"{key}={_brief(value)}" for key, value in clean.items())
        async with self._transaction() as db:
            await db.executemany(_UPSERT_SETTING, rows)
            await _audit(db, scope, scope_id, actor_id, "config set", detail, now)
        log.info("%s %s: %s set %s", scope, scope_id, actor_id, ", ".join(clean))
        return clean

    async def reset(
        self, scope: Scope, scope_id: int, keys: Iterable[str] | None = None, *, actor_id: int
    ) -> list[str]:
        """Drop explicit values so the scope falls back again; returns the keys removed."""
        _check_scope(scope)
        wanted = [keys] if isinstance(keys, str) else list(SETTING_KEYS if keys is None else keys)
        for key in wanted:
            check_setting_key(key)
        marks = ", ".join("?" * len(wanted))
        sql = f"DELETE FROM settings WHERE scope = ? AND scope_id = ? AND key IN ({marks}) RETURNING key"
        async with self._transaction() as db:
            async with db.execute(sql, (scope, scope_id, *wanted)) as cursor:
                removed = {row[0] for row in await cursor.fetchall()}
            if removed:
                keys_removed = ", ".join(key for key in SETTING_KEYS if key in removed)
                await _audit(db, scope, scope_id, actor_id, "config reset", keys_removed, time.time())
        if removed:
            log.info("%s %s: %s reset %s", scope, scope_id, actor_id, ", ".join(sorted(removed)))
        return [key for key in SETTING_KEYS if key in removed]

    async def _fetch(self, scopes: list[tuple[Scope, int]]) -> Iterable[Row]:
        where = " OR ".join(["(scope = ? AND scope_id = ?)"] * len(scopes))
        params = [part for pair in scopes for part in pair]
        sql = f"SELECT scope, scope_id, key, value FROM settings WHERE {where}"
        async with self._lock, self._db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())
