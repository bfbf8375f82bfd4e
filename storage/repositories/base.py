"""What every repository shares: its driver, and the audit log that moderator actions write to."""

from __future__ import annotations

from storage.driver import Connection, Driver


class Repository:
    def __init__(self, driver: Driver) -> None:
        self._db = driver


async def audit(
    tx: Connection, scope: str, scope_id: int, actor_id: int, action: str, detail: str, at: float
) -> None:
    """One entry of the audit log, written in the transaction of the change it records."""
    await tx.execute(
        "INSERT INTO audit_log (scope, scope_id, actor_id, action, detail, at) VALUES ($1, $2, $3, $4, $5, $6)",
        scope,
        scope_id,
        actor_id,
        action,
        detail,
        at,
    )


def pairs(scopes: list[tuple[str, int]], first: int = 1) -> str:
    """``(scope = $1 AND scope_id = $2) OR (...)``: a WHERE clause for some (scope, id) pairs."""
    return " OR ".join(
        f"(scope = ${first + 2 * i} AND scope_id = ${first + 2 * i + 1})" for i in range(len(scopes))
    )


def marks(count: int, first: int = 1) -> str:
    """``$1, $2, ...``: placeholders for ``count`` values."""
    return ", ".join(f"${first + i}" for i in range(count))
