"""The SQLite implementation of the storage protocols: ``await open_sqlite(path, defaults)``."""

from __future__ import annotations

import os

from cogs.utils.settings import ChannelSettings
from cogs.utils.storage.protocols import Storage
from cogs.utils.storage.sqlite.conversations import SQLiteConversations
from cogs.utils.storage.sqlite.database import BUSY_TIMEOUT_MS, Database, migrations
from cogs.utils.storage.sqlite.limits import SQLiteLimits
from cogs.utils.storage.sqlite.meta import SQLiteMeta
from cogs.utils.storage.sqlite.moderation import SQLiteModeration
from cogs.utils.storage.sqlite.replies import SQLiteReplies
from cogs.utils.storage.sqlite.settings import SQLiteSettings
from cogs.utils.storage.sqlite.stories import SQLiteStories


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
