"""Channel rules: what moderators set for a channel or thread, and the bounds on each value.

Plain values, no Discord and no I/O: the gate (``core.gate``) enforces them, the stores keep them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from domain.errors import UserFacingError
from model_service.errors import ValidationError

MAX_PHRASE_CHARS = 100
MAX_PHRASES = 200
MAX_COOLDOWN_S = 3600
MAX_INFLIGHT = 100
REDACTION_CHAR = "█"


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


def rule_changes(
    locked: bool | None, cooldown_s: int | None, max_inflight: int | None
) -> list[tuple[str, str]]:
    """Check the new values; return the audit entries (action, detail) they make."""
    changes: list[tuple[str, str]] = []
    if locked is not None:
        changes.append(("lock", "model commands paused") if locked else ("unlock", "model commands allowed"))
    if cooldown_s is not None:
        if not 0 <= cooldown_s <= MAX_COOLDOWN_S:
            raise ValidationError(f"`seconds` must be in [0, {MAX_COOLDOWN_S}], got {cooldown_s}")
        changes.append(("cooldown", f"{cooldown_s} s per user" if cooldown_s else "off"))
    if max_inflight is not None:
        if not 0 <= max_inflight <= MAX_INFLIGHT:
            raise ValidationError(f"`n` must be in [0, {MAX_INFLIGHT}], got {max_inflight}")
        changes.append(("limit", f"{max_inflight} at once" if max_inflight else "off"))
    if not changes:
        raise ValueError("set_channel_rules needs at least one rule to change")
    return changes
