"""The gate every model command passes: lock, blocklist, token budget, cooldown, limit.

No Discord here: the facade (``core.facade``) reads each channel's ``ChannelRules`` from the store
and asks the ``Gate`` to admit a request; the gate keeps cooldowns and requests in flight in the store's
``LimitStore``, shared by every bot process on the database.
A thread is moderated by its own rules and its parent channel's together: a request must pass
both, and counts against both. Token budgets (``domain.quotas``) hold the same way: the facade
says which hold for the member here, the gate refuses once one is used up and counts what the
command generated against them afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain import quotas
from domain.errors import UserFacingError
from domain.quotas import Budget, ScopeKey, Standing
from domain.rules import Blocklist, ChannelRules
from storage.types import CoolingDown, Quota, ScopeBusy, StoreUnavailable

if TYPE_CHECKING:
    from storage.protocols import LimitStore

LOCKED_MESSAGE = "This channel is locked by a moderator."
log = logging.getLogger(__name__)
# A request's slot (and a story's turn lock) is a lease that its holder renews while it works: a
# process that dies mid-request frees its slots within LEASE_S.
LEASE_S = 60.0
RENEW_EVERY_S = LEASE_S / 3


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
        self,
        scopes: Sequence[tuple[int, ChannelRules]],
        user_id: int,
        texts: Iterable[str],
        budgets: Sequence[Budget] = (),
    ) -> Admission:
        """Check every scope's rules (parent channel first) and the member's token ``budgets``
        here; raise the refusal a user should read.

        Order matters for fairness: refusals that cost nothing (lock, blocklist, budget, busy) come
        before the cooldown is spent, so a refused request never starts a user's cooldown.
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
        await self._check_budgets(budgets, user_id)
        limits = [Quota(scope_id, rules.cooldown_s, rules.max_inflight) for scope_id, rules in scopes]
        try:
            ticket = await self._limits.take(limits, user_id, now=self._clock(), lease_s=self._lease_s)
        except CoolingDown as cooling:
            # Rounded up: "0 s" would invite a retry that is still too early.
            wait = math.ceil(cooling.retry_after)
            raise UserFacingError(
                f"Slow down: you can use this again in {wait} s.", icon="⏳", retry_after=wait
            ) from None
        except ScopeBusy as busy:
            raise UserFacingError(
                f"This channel is busy: {busy.limit} of its requests are already running "
                "(a moderator set this limit). Try again when one finishes.",
                icon="⏳",
            ) from None
        return Admission(ticket, blocklist)

    async def _check_budgets(self, budgets: Sequence[Budget], user_id: int) -> None:
        """Refuse a member whose budget here is used up, saying when it refills.

        Only a used-up budget refuses: a request is let through while any token is left, and may
        write past the budget (its length is not known before it runs); the next one is refused.
        """
        if all(budget.unlimited for budget in budgets):
            return  # nothing to read: no budget here, or only unlimited ones
        spent = quotas.strictest(await self.standings(budgets, user_id))
        if spent is None or not spent.used_up:
            return
        wait = spent.refills_at - self._clock()
        where = "in this server" if spent.budget.scope == "guild" else "here"
        raise UserFacingError(
            f"You've used your {spent.budget.tokens:,} tokens for {quotas.this_window(spent.budget.per)} "
            f"{where}; it refills in {quotas.wait_text(wait)}.",
            icon="⌛",
            retry_after=math.ceil(wait),
        )

    async def standings(self, budgets: Sequence[Budget], user_id: int) -> list[Standing]:
        """What the member used of each budget in its current window (an unlimited one: nothing read)."""
        now, out = self._clock(), []
        for budget in budgets:
            since = quotas.window_start(budget.per, now)
            used = 0
            if not budget.unlimited:
                used = await self._limits.tokens_used(budget.scope, budget.scope_id, user_id, since=since)
            out.append(quotas.standing(budget, used, now))
        return out

    async def spend(self, scopes: Sequence[ScopeKey], user_id: int, tokens: int) -> None:
        """Count what a command generated in the scopes that keep budgets.

        Shielded, so a command cancelled at shutdown still counts; a database that is away loses
        this count (logged) rather than turning a reply already shown into an error.
        """
        if tokens <= 0 or not scopes:
            return
        try:
            await asyncio.shield(self._limits.spend_tokens(scopes, user_id, tokens, now=self._clock()))
        except Exception:
            log.warning("could not count %d tokens against the member's budgets", tokens, exc_info=True)

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
            except StoreUnavailable as exc:  # a database that is briefly away: the next renewal may reach it
                log.warning("could not renew a lease (%s); trying again", exc)
            except Exception:
                log.warning("could not renew a lease; trying again", exc_info=True)

    task = asyncio.create_task(renew(), name="transcord-lease")
    try:
        yield
    finally:
        task.cancel()
