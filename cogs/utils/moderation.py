"""Moderation rules and the gate every model command passes: lock, blocklist, cooldown, limit.

Pure logic, no Discord I/O and no database: the moderation cog loads each channel's
``ChannelRules`` (cached, written through to SQLite) and asks the ``Gate`` to admit a request.
A thread is moderated by its own rules and its parent channel's together: a request must pass
both, and counts against both.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from discord import app_commands

from cogs.utils.replies import UserFacingError

MAX_PHRASE_CHARS = 100
MAX_PHRASES = 200
MAX_COOLDOWN_S = 3600
MAX_INFLIGHT = 100
LOCKED_MESSAGE = "This channel is locked by a moderator."
REDACTION_CHAR = "█"
_PRUNE_AT = 1000  # cooldown buckets kept before expired ones are dropped


def normalize_phrase(phrase: str) -> str:
    """The stored form of a blocked phrase: lower-case, single spaces; refused if unusable."""
    clean = " ".join(phrase.split()).lower()
    if not clean:
        raise UserFacingError("A blocked phrase needs at least one visible character.")
    if len(clean) > MAX_PHRASE_CHARS:
        raise UserFacingError(
            f"A blocked phrase may have at most {MAX_PHRASE_CHARS} characters, got {len(clean)}."
        )
    return clean


def _phrase_pattern(phrase: str) -> str:
    # Any run of whitespace between the words; no word character right before or after, so a
    # phrase that starts or ends with punctuation ("c++") still matches as a whole word.
    words = (re.escape(word) for word in phrase.split())
    return r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)"


@dataclass(frozen=True)
class Blocklist:
    """Blocked phrases, matched case-insensitively on whole words."""

    phrases: tuple[str, ...] = ()

    @classmethod
    def of(cls, phrases: Iterable[str]) -> Blocklist:
        return cls(tuple(sorted({normalize_phrase(p) for p in phrases})))

    @cached_property
    def _regex(self) -> re.Pattern[str] | None:
        if not self.phrases:
            return None
        # Longest first, so "bad word" wins over "bad" where both match.
        ordered = sorted(self.phrases, key=len, reverse=True)
        return re.compile("|".join(f"(?:{_phrase_pattern(p)})" for p in ordered), re.IGNORECASE)

    def find(self, text: str) -> str | None:
        """The first blocked phrase in ``text`` (as stored), or None."""
        if self._regex is None or (match := self._regex.search(text)) is None:
            return None
        found = " ".join(match.group().split()).lower()
        return next((p for p in self.phrases if p == found), found)

    def redact(self, text: str) -> str:
        """``text`` with each blocked phrase blacked out, keeping its length."""
        if self._regex is None:
            return text
        return self._regex.sub(lambda m: REDACTION_CHAR * len(m.group()), text)

    def __or__(self, other: Blocklist) -> Blocklist:
        if not other.phrases or other.phrases == self.phrases:
            return self  # keeps the compiled pattern
        if not self.phrases:
            return other
        return Blocklist(tuple(sorted(set(self.phrases) | set(other.phrases))))


@dataclass(frozen=True)
class ChannelRules:
    """What moderators set for one channel (or thread); the defaults mean "no moderation"."""

    locked: bool = False
    cooldown_s: int = 0  # per user, between model commands; 0 = off
    max_inflight: int = 0  # model commands running at once in the channel; 0 = no limit
    blocklist: Blocklist = field(default_factory=Blocklist)


@dataclass
class Admission:
    """A request let through the gate: release it when the command ends."""

    scope_ids: tuple[int, ...]
    redact: Blocklist
    released: bool = False


class Gate:
    """Admits or refuses model commands; keeps per-user cooldowns and in-flight counts in memory.

    Everything in ``admit`` runs without awaiting, so on one event loop two requests can never
    both take the last free slot.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._buckets: dict[tuple[int, int], app_commands.Cooldown] = {}
        self._inflight: dict[int, int] = {}

    def inflight(self, scope_id: int) -> int:
        return self._inflight.get(scope_id, 0)

    def admit(
        self, scopes: Sequence[tuple[int, ChannelRules]], user_id: int, texts: Iterable[str]
    ) -> Admission:
        """Check every scope's rules (parent channel first); raise the refusal a user should read.

        Order matters for fairness: refusals that cost nothing (lock, blocklist, busy) come before
        the cooldown is spent, so a refused request never starts a user's cooldown.
        """
        if any(rules.locked for _, rules in scopes):
            raise UserFacingError(LOCKED_MESSAGE, icon="🔒")
        blocklist = Blocklist()
        for _, rules in scopes:
            blocklist |= rules.blocklist
        for text in texts:
            if (phrase := blocklist.find(text)) is not None:
                raise UserFacingError(
                    f"Your text contains “{phrase}”, which a moderator blocked in this channel.",
                    icon="🚫",
                )
        now = self._now()
        waits = [
            (self._bucket(scope_id, user_id, rules.cooldown_s), scope_id)
            for scope_id, rules in scopes
            if rules.cooldown_s > 0
        ]
        worst = max(waits, key=lambda w: w[0].get_retry_after(now), default=None)
        if worst is not None and (retry := worst[0].get_retry_after(now)) > 0:
            # Rounded up: "0 s" would invite a retry that is still too early.
            raise app_commands.CommandOnCooldown(worst[0], float(math.ceil(retry)))
        for scope_id, rules in scopes:
            if rules.max_inflight and self.inflight(scope_id) >= rules.max_inflight:
                raise UserFacingError(
                    f"This channel is busy: {rules.max_inflight} of its requests are already running "
                    "(a moderator set this limit). Try again when one finishes.",
                    icon="⏳",
                )
        for bucket, _ in waits:
            bucket.update_rate_limit(now)
        ids = tuple(scope_id for scope_id, _ in scopes)
        for scope_id in ids:
            self._inflight[scope_id] = self.inflight(scope_id) + 1
        return Admission(ids, blocklist)

    def release(self, admission: Admission) -> None:
        if admission.released:
            return
        admission.released = True
        for scope_id in admission.scope_ids:
            left = self.inflight(scope_id) - 1
            if left > 0:
                self._inflight[scope_id] = left
            else:
                self._inflight.pop(scope_id, None)

    def reset_cooldowns(self, scope_id: int) -> None:
        """Forget the channel's cooldowns (its period changed: the new one starts fresh)."""
        for key in [k for k in self._buckets if k[0] == scope_id]:
            del self._buckets[key]

    def _bucket(self, scope_id: int, user_id: int, per: int) -> app_commands.Cooldown:
        key = (scope_id, user_id)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.per != per:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune()
            bucket = self._buckets[key] = app_commands.Cooldown(1, per)
        return bucket

    def _prune(self) -> None:
        now = self._now()
        for key in [k for k, b in self._buckets.items() if b.get_retry_after(now) <= 0]:
            del self._buckets[key]

    def _now(self) -> float:
        return self._clock()
