"""Storage behind protocols: settings, meta, channel rules, stories, conversations, replies, limits.

Cogs and the kernel depend on :mod:`storage.protocols` and :mod:`storage.types` (what this
package exports). Each repository is written once (:mod:`storage.repositories`) over a small
driver interface (:mod:`storage.driver`); :mod:`storage.drivers` holds SQLite and PostgreSQL.
:mod:`storage.connect` opens either. The schema is the numbered SQL files in ``migrations/``
(:mod:`storage.schema`), translated for PostgreSQL by :mod:`storage.drivers.dialect`.
"""

from __future__ import annotations

from storage.protocols import MetaStore, RulesStore, SettingsStore, Storage, StoryStore
from storage.types import (
    AuditEntry,
    JoinResult,
    LimitReached,
    NewTurn,
    SchemaError,
    Scope,
    Source,
    Story,
    StoryPlayer,
    StorySkip,
    StoryTurn,
    TurnKind,
    TurnMode,
)

__all__ = [
    "AuditEntry",
    "JoinResult",
    "LimitReached",
    "MetaStore",
    "NewTurn",
    "RulesStore",
    "SchemaError",
    "Scope",
    "SettingsStore",
    "Source",
    "Storage",
    "Story",
    "StoryPlayer",
    "StorySkip",
    "StoryStore",
    "StoryTurn",
    "TurnKind",
    "TurnMode",
]
