"""The Postgres implementation of the storage protocols: ``await open_postgres(url, defaults)``.

It mirrors ``storage.sqlite`` module for module, applies the same numbered
migrations (translated by :mod:`.dialect`), and passes the same contract tests. What does not
depend on the database (rechecking stored settings, rule bounds, a row's columns) is imported
from the SQLite twin rather than copied, so the two cannot drift apart.
"""

from __future__ import annotations

from domain.settings import ChannelSettings
from storage.postgres.conversations import PostgresConversations
from storage.postgres.database import Database, DatabaseUnavailable, migrations
from storage.postgres.limits import PostgresLimits
from storage.postgres.meta import PostgresMeta
from storage.postgres.moderation import PostgresModeration
from storage.postgres.replies import PostgresReplies
from storage.postgres.settings import PostgresSettings
from storage.postgres.stories import PostgresStories
from storage.postgres.url import redact
from storage.protocols import Storage


async def open_postgres(url: str, defaults: ChannelSettings) -> Storage:
    """Connect to (and migrate) the database at ``url``; close the result when done.

    Raises :class:`DatabaseUnavailable` (the message without the password) if it cannot, and
    :class:`~storage.SchemaError` if a newer Transcord migrated it.
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
