"""The SQLite implementation of the storage protocols: ``await open_sqlite(path, defaults)``."""

from __future__ import annotations

import os

from domain.settings import ChannelSettings
from storage.protocols import Storage
from storage.sqlite.conversations import SQLiteConversations
from storage.sqlite.database import BUSY_TIMEOUT_MS, Database, migrations
from storage.sqlite.limits import SQLiteLimits
from storage.sqlite.meta import SQLiteMeta
from storage.sqlite.moderation import SQLiteModeration
from storage.sqlite.replies import SQLiteReplies
from storage.sqlite.settings import SQLiteSettings
from storage.sqlite.stories import SQLiteStories


async def open_sqlite(path: str | os.PathLike[str], defaults: ChannelSettings) -> Storage:
    """Open (creating and migrating) the SQLite file at ``path``; close the result when done."""
    database = await Database.open(path)
    return Storage(
        settings=SQLiteSettings(database, defaults),
        meta=SQLiteMeta(database),
        moderation=SQLiteModeration(database),
        stories=SQLiteStories(database),
        conversations=SQLiteConversations(database),
        replies=SQLiteReplies(database),
        limits=SQLiteLimits(database),
        close=database.close,
    )


__all__ = ["BUSY_TIMEOUT_MS", "Database", "migrations", "open_sqlite"]
