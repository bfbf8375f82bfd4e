"""The Postgres implementation of the storage protocols: ``await open_postgres(url, defaults)``.

It mirrors ``cogs.utils.storage.sqlite`` module for module, applies the same numbered
migrations (translated by :mod:`.dialect`), and passes the same contract tests. What does not
depend on the database (rechecking stored settings, rule bounds, a row's columns) is imported
from the SQLite twin rather than copied, so the two cannot drift apart.
"""

from __future__ import annotations

from cogs.utils.settings import ChannelSettings
from cogs.utils.storage.postgres.conversations import PostgresConversations
from cogs.utils.storage.postgres.database import Database, DatabaseUnavailable, migrations
from cogs.utils.storage.postgres.limits import PostgresLimits
from cogs.utils.storage.postgres.meta import PostgresMeta
from cogs.utils.storage.postgres.moderation import PostgresModeration
from cogs.utils.storage.postgres.replies import PostgresReplies
from cogs.utils.storage.postgres.settings import PostgresSettings
from cogs.utils.storage.postgres.stories import PostgresStories
from cogs.utils.storage.postgres.url import redact
from cogs.utils.storage.protocols import Storage


async def open_postgres(url: str, defaults: ChannelSettings) -> Storage:
    """Connect to (and migrate) the database at ``url``; close the result when done.

    Raises :class:`DatabaseUnavailable` (the message without the password) if it cannot, and
    :class:`~cogs.utils.storage.SchemaError` if a newer Transcord migrated it.
    """
    database = await Database.open(url)
    return Storage(
        settings=PostgresSettings(database, defaults),
        meta=PostgresMeta(database),
        moderation=PostgresModeration(database),
        stories=PostgresStories(database),
        conversations=PostgresConversations(database),
        replies=PostgresReplies(database),
        limits=PostgresLimits(database),
        close=database.close,
    )


__all__ = ["Database", "DatabaseUnavailable", "migrations", "open_postgres", "redact"]
