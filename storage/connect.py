"""Opening a database: SQLite at a path (the default) or PostgreSQL at a URL (``DATABASE_URL``).

Either way the result is the same :class:`~storage.protocols.Storage`: the repositories of
:mod:`storage.repositories` over that database's driver, migrated to the current schema.
"""

from __future__ import annotations

import os

from domain.settings import ChannelSettings
from storage.drivers.postgres import DatabaseUnavailable, PostgresDriver
from storage.drivers.sqlite import SQLiteDriver
from storage.drivers.url import redact
from storage.protocols import Storage
from storage.repositories import build_storage


async def open_sqlite(path: str | os.PathLike[str], defaults: ChannelSettings) -> Storage:
    """Open (creating and migrating) the SQLite file at ``path``; close the result when done."""
    return build_storage(await SQLiteDriver.open(path), defaults)


async def open_postgres(url: str, defaults: ChannelSettings) -> Storage:
    """Connect to (and migrate) the database at ``url``; close the result when done.

    Raises :class:`DatabaseUnavailable` (the message without the password) if it cannot, and
    :class:`~storage.types.SchemaError` if a newer Transcord migrated it.
    """
    return build_storage(await PostgresDriver.open(url), defaults)


__all__ = ["DatabaseUnavailable", "open_postgres", "open_sqlite", "redact"]
