"""The schema: numbered SQL files in ``storage/migrations/``, written once in SQLite's SQL.

``001_…`` takes a database from version 0 to 1, and so on. Each driver applies the files it has
not applied yet, one transaction each; the PostgreSQL driver translates every statement first
(``storage.drivers.dialect``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def migrations() -> list[tuple[str, ...]]:
    """The statements of each numbered migration file, in order (001_… takes version 0 to 1)."""
    out = []
    for number, path in enumerate(sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql")), 1):
        if int(path.name[:3]) != number:
            raise RuntimeError(f"migration {path.name} is out of sequence (expected {number:03d}_…)")
        out.append(split_statements(path.read_text(encoding="utf-8")))
    return out


def split_statements(script: str) -> tuple[str, ...]:
    """A script's statements (SQLite decides where each ends, comments and strings included)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in current.splitlines()
    ):
        raise ValueError(f"an unfinished statement at the end of a migration: {current.strip()[:80]!r}")
    return tuple(statements)
