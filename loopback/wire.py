"""Small pieces shared by the REST and gateway sides: ids, timestamps and JSON responses."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

DISCORD_EPOCH_MS = 1420070400000


class Snowflakes:
    """Hands out Discord-shaped ids, so the client's ``created_at`` maths gives the real time."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def next(self) -> int:
        return self.next_on_shard(0, 1)

    def next_on_shard(self, shard_id: int, shard_count: int) -> int:
        """An id whose guild would sit on ``shard_id`` of ``shard_count``: ``(id >> 22) % count``.

        The timestamp part is moved forward to the next millisecond that maps there (less than
        ``shard_count`` ms into the future).
        """
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        ms += (shard_id - ms) % shard_count
        return (ms << 22) | (1 << 17) | (next(self._counter) % 4096)


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response with ``Content-Type: application/json`` exactly.

    aiohttp's ``json_response`` appends ``; charset=utf-8`` and discord.py's ``json_or_text`` compares
    the header for equality, so it would hand the caller a string instead of a dict.
    """
    response = web.Response(status=status, body=json.dumps(body).encode(), headers=headers)
    response.headers["Content-Type"] = "application/json"
    return response


def error_response(status: int, message: str, code: int = 0, **extra: Any) -> web.Response:
    return json_response({"message": message, "code": code, **extra}, status=status)


def not_found() -> web.Response:
    return error_response(404, "404: Not Found")


class FormError(Exception):
    """A payload Discord would refuse with 50035 "Invalid Form Body".

    ``field`` is a dotted path such as ``embeds.0.description``; Discord nests the error under it and
    discord.py flattens it back into ``In embeds.0.description: Must be 4096 or fewer in length.``
    """

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.code, self.message = field, code, message

    def response(self) -> web.Response:
        errors: dict[str, Any] = {"_errors": [{"code": self.code, "message": self.message}]}
        for part in reversed(self.field.split(".")):
            errors = {part: errors}
        return error_response(400, "Invalid Form Body", 50035, errors=errors)
