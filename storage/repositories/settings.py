"""Channel settings: one row per key per scope, so changes to different keys never overwrite
each other and the same key is last-writer-wins.

What applies in a channel is the layers that apply there (guild, parent channel, channel or
thread) merged over the defaults; stored values (JSON text) are checked again when read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Iterable, Mapping

from domain.settings import SETTING_KEYS, ChannelSettings, check_scope, check_setting_key, validate_setting
from model_service.errors import ValidationError
from model_service.types import MAX_NEW_TOKENS_LIMIT
from storage.driver import Driver
from storage.repositories.base import Repository, audit, marks, pairs
from storage.types import Scope, Source

log = logging.getLogger("storage")

_INVALID = object()
_KEY_ORDER = {key: i for i, key in enumerate(SETTING_KEYS)}

_UPSERT_SETTING = """
    INSERT INTO settings (scope, scope_id, key, value, updated_by, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (scope, scope_id, key) DO UPDATE SET
        value = excluded.value, updated_by = excluded.updated_by, updated_at = excluded.updated_at
"""


class Settings(Repository):
    def __init__(self, driver: Driver, defaults: ChannelSettings) -> None:
        super().__init__(driver)
        self.defaults = defaults

    # -- reading: the layers --------------------------------------------------------------------

    async def effective(
        self, guild_id: int | None, channel_id: int, parent_id: int | None = None
    ) -> ChannelSettings:
        """What applies in a channel or thread: per key, the most specific scope wins."""
        merged: dict[str, object] = {}
        for _, values in await self._layers(guild_id, channel_id, parent_id):
            merged.update(values)
        return self.defaults.merged(merged)

    async def explain(
        self, guild_id: int | None, channel_id: int, parent_id: int | None = None
    ) -> dict[str, tuple[object, Source]]:
        """Each effective value with the scope it comes from, for ``/settings show``."""
        out: dict[str, tuple[object, Source]] = {
            key: (getattr(self.defaults, key), "default") for key in SETTING_KEYS
        }
        for source, values in await self._layers(guild_id, channel_id, parent_id):
            out.update({key: (value, source) for key, value in values.items()})
        return out

    async def scope_values(self, scope: Scope, scope_id: int) -> dict[str, object]:
        """What this scope sets explicitly (not inherited), in declared key order."""
        check_scope(scope)
        return (await self._rows([(scope, scope_id)])).get((scope, scope_id), {})

    # -- writing --------------------------------------------------------------------------------

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
        check_scope(scope)
        clean = {
            key: validate_setting(key, value, max_new_tokens_cap=max_new_tokens_cap, model_names=model_names)
            for key, value in values.items()
        }
        if not clean:
            return {}
        now = time.time()
        # In key order: two processes changing the same keys lock their rows in the same order,
        # so neither waits on the other forever.
        rows = [(scope, scope_id, key, _encode(clean[key]), actor_id, now) for key in sorted(clean)]
        detail = ", ".join(f"{key}={_brief(value)}" for key, value in clean.items())
        async with self._db.transaction() as tx:
            await tx.executemany(_UPSERT_SETTING, rows)
            await audit(tx, scope, scope_id, actor_id, "config set", detail, now)
        log.info("%s %s: %s set %s", scope, scope_id, actor_id, ", ".join(clean))
        return clean

    async def reset(
        self, scope: Scope, scope_id: int, keys: Iterable[str] | None = None, *, actor_id: int
    ) -> list[str]:
        """Drop explicit values so the scope falls back again; returns the keys removed."""
        check_scope(scope)
        wanted = [keys] if isinstance(keys, str) else list(SETTING_KEYS if keys is None else keys)
        for key in wanted:
            check_setting_key(key)
        async with self._db.transaction() as tx:
            rows = await tx.fetch(
                "DELETE FROM settings WHERE scope = $1 AND scope_id = $2"
                f" AND key IN ({marks(len(wanted), first=3)}) RETURNING key",
                scope,
                scope_id,
                *wanted,
            )
            removed = {row[0] for row in rows}
            if removed:
                keys_removed = ", ".join(key for key in SETTING_KEYS if key in removed)
                await audit(tx, scope, scope_id, actor_id, "config reset", keys_removed, time.time())
        if removed:
            log.info("%s %s: %s reset %s", scope, scope_id, actor_id, ", ".join(sorted(removed)))
        return [key for key in SETTING_KEYS if key in removed]

    # -- the rows under the layers -------------------------------------------------------------

    async def _layers(
        self, guild_id: int | None, channel_id: int, parent_id: int | None
    ) -> list[tuple[Source, dict[str, object]]]:
        """The scopes that apply, least specific first."""
        chain: list[tuple[Source, Scope, int]] = []
        if guild_id is not None:
            chain.append(("guild", "guild", guild_id))
        if parent_id is not None and parent_id != channel_id:
            chain += [("channel", "channel", parent_id), ("thread", "channel", channel_id)]
        else:
            chain.append(("channel", "channel", channel_id))
        rows = await self._rows([(scope, scope_id) for _, scope, scope_id in chain])
        return [(source, rows.get((scope, scope_id), {})) for source, scope, scope_id in chain]

    async def _rows(self, scopes: list[tuple[Scope, int]]) -> dict[tuple[str, int], dict[str, object]]:
        async with self._db.reading() as db:
            fetched = await db.fetch(
                f"SELECT scope, scope_id, key, value FROM settings WHERE {pairs(list(scopes))}",
                *[part for pair in scopes for part in pair],
            )
        out: dict[tuple[str, int], dict[str, object]] = {}
        for scope, scope_id, key, raw in sorted(fetched, key=lambda row: _KEY_ORDER.get(row[2], 0)):
            value = _decode(scope, scope_id, key, raw)
            if value is not _INVALID:
                out.setdefault((scope, scope_id), {})[key] = value
        return out


def _brief(value: object, limit: int = 60) -> str:
    text = "default" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _encode(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _decode(scope: str, scope_id: int, key: str, raw: str) -> object:
    """A stored value, rechecked; a bad row is skipped (the scope falls back) and logged."""
    try:
        value = json.loads(raw)
        return validate_setting(key, value, max_new_tokens_cap=MAX_NEW_TOKENS_LIMIT, model_names=None)
    except (ValueError, ValidationError) as exc:
        log.warning("ignoring stored setting %s %s %s=%r: %s", scope, scope_id, key, raw, exc)
        return _INVALID
