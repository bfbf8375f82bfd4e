"""What both settings stores do the same way, whatever the database: the layers that apply
(guild, parent channel, channel or thread) merged over the defaults, and stored values
(JSON text) checked again when read. A backend supplies ``_fetch`` (the rows of some scopes)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from domain.settings import SETTING_KEYS, ChannelSettings, validate_setting
from model_service.errors import ValidationError
from model_service.types import MAX_NEW_TOKENS_LIMIT
from storage.types import Scope, Source

log = logging.getLogger("storage")

_INVALID = object()
_KEY_ORDER = {key: i for i, key in enumerate(SETTING_KEYS)}

Row = Sequence[Any]  # scope, scope_id, key, value (JSON text): a driver's row


class SettingsLayers:
    defaults: ChannelSettings

    async def _fetch(self, scopes: list[tuple[Scope, int]]) -> Iterable[Row]:
        raise NotImplementedError

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
        _check_scope(scope)
        return (await self._rows([(scope, scope_id)])).get((scope, scope_id), {})

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
        out: dict[tuple[str, int], dict[str, object]] = {}
        for scope, scope_id, key, raw in sorted(
            await self._fetch(scopes), key=lambda row: _KEY_ORDER.get(row[2], 0)
        ):
            value = _decode(scope, scope_id, key, raw)
            if value is not _INVALID:
                out.setdefault((scope, scope_id), {})[key] = value
        return out


def _brief(value: object, limit: int = 60) -> str:
    text = "default" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_scope(scope: str) -> None:
    if scope not in ("guild", "channel"):
        raise ValueError(f"scope must be 'guild' or 'channel', got {scope!r}")


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
