"""Moderation rules and the gate every model command passes: lock, blocklist, cooldown, limit.

No Discord I/O: the moderation layer reads each channel's ``ChannelRules`` from the store and asks
the ``Gate`` to admit a request; the gate keeps cooldowns and requests in flight in the store's
``LimitStore``, shared by every bot process on the database.
A thread is moderated by its own rules and its parent channel's together: a request must pass
both, and counts against both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from discord import app_commands

from cogs.utils.replies import UserFacingError
from cogs.utils.storage.types import CoolingDown, Quota, ScopeBusy

if TYPE_CHECKING:
    from cogs.utils.storage.protocols import LimitStore

MAX_PHRASE_CHARS = 100
MAX_PHRASES = 200
MAX_COOLDOWN_S = 3600
MAX_INFLIGHT = 100
LOCKED_MESSAGE = "This channel is locked by a moderator."
log = logging.getLogger(__name__)
REDACTION_CHAR = "█"
# A request's slot (and a story's turn lock) is a lease that its holder renews while it works: a
# process that dies mid-request frees its slots within LEASE_S.
LEASE_S = 60.0
RENEW_EVERY_S = LEASE_S / 3


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

    ticket: int  # its leases in the limit store
    redact: Blocklist
    released: bool = False


class Gate:
    """Admits or refuses model commands. Cooldowns and requests in flight live in the limit store,
    so every process on the database keeps the same count (a limit holds across shards).

    The store decides a request in one transaction: two requests, whichever processes they reach,
    can never both take a channel's last free slot.
    """

    def __init__(
        self, limits: LimitStore, clock: Callable[[], float] = time.time, lease_s: float = LEASE_S
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._lease_s = lease_s

    async def inflight(self, scope_id: int) -> int:
        return await self._limits.inflight(scope_id, now=self._clock())

    async def admit(
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
        quotas = [Quota(scope_id, rules.cooldown_s, rules.max_inflight) for scope_id, rules in scopes]
        try:
            ticket = await self._limits.take(quotas, user_id, now=self._clock(), lease_s=self._lease_s)
        except CoolingDown as cooling:
            # Rounded up: "0 s" would invite a retry that is still too early.
            cooldown = app_commands.Cooldown(1, cooling.per)
            raise app_commands.CommandOnCooldown(cooldown, float(math.ceil(cooling.retry_after))) from None
        except ScopeBusy as busy:
            raise UserFacingError(
                f"This channel is busy: {busy.limit} of its requests are already running "
                "(a moderator set this limit). Try again when one finishes.",
                icon="⏳",
            ) from None
        return Admission(ticket, blocklist)

    def renewing(self, ticket: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Keep a request's slots alive while it runs (however long a reply takes)."""
        return renewing(self._limits, ticket, clock=self._clock, lease_s=self._lease_s)

    async def release(self, admission: Admission) -> None:
        if admission.released:
            return
        admission.released = True
        # Shielded: a command cancelled at shutdown must still give its slot back.
        await asyncio.shield(self._limits.give_back(admission.ticket))

    async def reset_cooldowns(self, scope_id: int) -> None:
        """Forget the channel's cooldowns (its period changed: the new one starts fresh)."""
        await self._limits.reset_cooldowns(scope_id)


@contextlib.asynccontextmanager
async def renewing(
    limits: LimitStore, ticket: int, *, clock: Callable[[], float] = time.time, lease_s: float = LEASE_S
) -> AsyncIterator[None]:
    """Renew a ticket's leases every ``RENEW_EVERY_S`` while the body runs: held while its holder
    lives, gone within ``lease_s`` once it dies."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            try:
                await limits.renew(ticket, now=clock(), lease_s=lease_s)
            except Exception:  # a database that is briefly away: the next renewal may reach it
                log.warning("could not renew a lease; trying again", exc_info=True)

    task = asyncio.create_task(renew(), name="transcord-lease")
    try:
        yield
    finally:
        task.cancel()
