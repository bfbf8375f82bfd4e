"""Storage behind protocols: settings, meta, moderation, stories, conversations and replies.

Cogs depend on :mod:`storage.protocols`; :func:`storage.sqlite.open_sqlite`
builds the SQLite implementation and :func:`storage.postgres.open_postgres` the
PostgreSQL one. Migrations are numbered SQL files in ``migrations/``, written in SQLite's SQL and
translated for Postgres by :mod:`storage.postgres.dialect`.
"""

from __future__ import annotations

from storage.protocols import MetaStore, ModerationStore, SettingsStore, Storage, StoryStore
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
    "ModerationStore",
    "NewTurn",
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
