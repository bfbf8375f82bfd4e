"""Guild sharding as Discord's gateway does it: which session gets which guild, and who may IDENTIFY when.

A guild belongs to shard ``(guild_id >> 22) % num_shards``; events without a guild (DMs among them)
go to shard 0. ``GET /gateway/bot`` tells the bot how many shards to run and its session start limit.
An IDENTIFY's ``shard`` is checked (close 4010 Invalid shard, 4011 Sharding required), and IDENTIFYs
are limited per rate-limit bucket ``shard_id % max_concurrency``: one per bucket per
``identify_window`` seconds (5 s on Discord); one that comes too soon is answered with Invalid
Session (opcode 9), as Discord documents. Every IDENTIFY is logged, for tests to check the buckets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

IDENTIFY_WINDOW = 5.0  # seconds: Discord allows max_concurrency IDENTIFYs (one per bucket) per 5 s
SESSION_START_WINDOW_MS = 24 * 60 * 60 * 1000  # the session start limit resets daily
# An IDENTIFY read this much earlier than the window still passes: the client's 5 s sleep starts
# after it sent the previous IDENTIFY, so only scheduling noise can make the gap look shorter.
IDENTIFY_SLACK = 0.01
INVALID_SHARD, SHARDING_REQUIRED = 4010, 4011  # Discord's gateway close codes
GUILD_OBJECT_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})  # `d.id` is the guild


class IdentifyOutcome(StrEnum):
    READY = "ready"
    TOO_SOON = "too soon"  # answered with Invalid Session (opcode 9, not resumable)
    INVALID_SHARD = "invalid shard"  # closed with 4010
    SHARDING_REQUIRED = "sharding required"  # closed with 4011


CLOSE_CODES = {
    IdentifyOutcome.INVALID_SHARD: INVALID_SHARD,
    IdentifyOutcome.SHARDING_REQUIRED: SHARDING_REQUIRED,
}


@dataclass(frozen=True)
class IdentifyRecord:
    """One authenticated IDENTIFY: when the server read it, the shard it asked for, and what it got."""

    at: float  # time.monotonic()
    shard: tuple[int, int] | None  # [shard_id, num_shards] as sent; None: no shard field
    bucket: int | None  # shard_id % max_concurrency; None where the shard itself was refused
    outcome: IdentifyOutcome
    session_id: str | None = None  # set when it got READY

    @property
    def shard_id(self) -> int:
        return self.shard[0] if self.shard else 0

    @property
    def close_code(self) -> int | None:
        return CLOSE_CODES.get(self.outcome)


def guild_of(event: str, data: Any) -> int | None:
    """The guild a DISPATCH is about (what routes it to a shard), or None for a guildless event."""
    if not isinstance(data, dict):
        return None
    raw = data.get("id") if event in GUILD_OBJECT_EVENTS else data.get("guild_id")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def shard_for(guild_id: int | None, shard_count: int) -> int:
    """Discord's sharding formula; guildless events go to shard 0."""
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


def parse_shard(raw: Any) -> tuple[int, int] | None:
    """An IDENTIFY's ``shard`` as ``(shard_id, num_shards)`` if it is a well-formed, valid pair."""
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        return None
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        return None
    shard_id, count = raw
    return (shard_id, count) if count >= 1 and 0 <= shard_id < count else None


class Sharding:
    """The server's sharding plan, session start limit and IDENTIFY log.

    ``enforce_identify_limit``: refuse IDENTIFYs that come too soon in their bucket; None (the
    default) enforces it only while ``shard_count > 1``, so an unsharded bot may re-IDENTIFY at once
    (tests with ``before_identify_hook`` overrides rely on that). The log is kept either way.
    """

    def __init__(
        self,
        shard_count: int = 1,
        max_concurrency: int = 1,
        *,
        identify_window: float = IDENTIFY_WINDOW,
        enforce_identify_limit: bool | None = None,
        session_start_total: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shard_count = shard_count
        self.max_concurrency = max_concurrency
        self.identify_window = identify_window
        self.enforce_identify_limit = enforce_identify_limit
        self.session_start_total = session_start_total
        self.session_start_remaining = session_start_total
        self.clock = clock
        self._limit_reset_at = clock() + SESSION_START_WINDOW_MS / 1000
        self._bucket_last: dict[int, float] = {}  # bucket -> when its latest IDENTIFY got READY
        self.log: list[IdentifyRecord] = []

    @property
    def shard_count(self) -> int:
        return self._shard_count

    @shard_count.setter
    def shard_count(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"shard_count must be at least 1, got {value}")
        self._shard_count = value

    @property
    def max_concurrency(self) -> int:
        return self._max_concurrency

    @max_concurrency.setter
    def max_concurrency(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {value}")
        self._max_concurrency = value

    @property
    def enforced(self) -> bool:
        if self.enforce_identify_limit is None:
            return self.shard_count > 1
        return self.enforce_identify_limit

    def shard_of(self, guild_id: int | None) -> int:
        return shard_for(guild_id, self.shard_count)

    def bucket_of(self, shard_id: int) -> int:
        return shard_id % self.max_concurrency

    def session_start_limit(self) -> dict[str, int]:
        """The ``session_start_limit`` object of ``GET /gateway/bot``."""
        self._maybe_reset_limit()
        reset_after = max(0, round((self._limit_reset_at - self.clock()) * 1000))
        return {
            "total": self.session_start_total,
            "remaining": self.session_start_remaining,
            "reset_after": reset_after,
            "max_concurrency": self.max_concurrency,
        }

    def identify(self, raw_shard: Any, session_id: str) -> IdentifyRecord:
        """Judge an authenticated IDENTIFY (it counts against the session start limit) and log it."""
        now = self.clock()
        self._maybe_reset_limit()
        self.session_start_remaining = max(0, self.session_start_remaining - 1)
        shard = parse_shard(raw_shard)
        sent = _as_pair(raw_shard)
        if raw_shard is None and self.shard_count > 1:
            return self._log(IdentifyRecord(now, None, None, IdentifyOutcome.SHARDING_REQUIRED))
        if raw_shard is not None and (
            shard is None or (self.shard_count > 1 and shard[1] != self.shard_count)
        ):
            return self._log(IdentifyRecord(now, sent, None, IdentifyOutcome.INVALID_SHARD))
        bucket = self.bucket_of(shard[0] if shard else 0)
        last = self._bucket_last.get(bucket)
        if self.enforced and last is not None and now - last < self.identify_window - IDENTIFY_SLACK:
            return self._log(IdentifyRecord(now, shard, bucket, IdentifyOutcome.TOO_SOON))
        self._bucket_last[bucket] = now
        return self._log(IdentifyRecord(now, shard, bucket, IdentifyOutcome.READY, session_id))

    def _log(self, record: IdentifyRecord) -> IdentifyRecord:
        self.log.append(record)
        return record

    def _maybe_reset_limit(self) -> None:
        if self.clock() >= self._limit_reset_at:
            self.session_start_remaining = self.session_start_total
            self._limit_reset_at = self.clock() + SESSION_START_WINDOW_MS / 1000


def _as_pair(raw: Any) -> tuple[int, int] | None:
    """What the client sent as ``shard``, for the log, where it is at least a pair of numbers."""
    try:
        shard_id, count = raw
        return int(shard_id), int(count)
    except (TypeError, ValueError):
        return None
