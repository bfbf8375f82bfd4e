"""The limit store's contract: cooldowns per member and channel, requests in flight per channel
with leases that expire, locks; all decided atomically, also between two processes."""

from __future__ import annotations

import asyncio

import pytest

from domain.settings import ChannelSettings
from storage import Storage
from storage.types import CoolingDown, Quota, ScopeBusy
from tests.storage.conftest import Opener

T0 = 1_800_000_000.0
ADA, BOB = 1, 2
CHANNEL, THREAD = 1_300_000_000_000_000_100, 1_300_000_000_000_000_200


async def test_a_channel_limit_admits_that_many_then_frees_a_slot(store: Storage) -> None:
    limits = store.limits
    quota = [Quota(CHANNEL, max_inflight=2)]
    first = await limits.take(quota, ADA, now=T0, lease_s=60)
    await limits.take(quota, BOB, now=T0, lease_s=60)
    with pytest.raises(ScopeBusy) as busy:
        await limits.take(quota, ADA, now=T0, lease_s=60)
    assert busy.value.limit == 2
    assert await limits.inflight(CHANNEL, now=T0) == 2
    await limits.give_back(first)
    await limits.give_back(first)  # twice is harmless
    assert await limits.inflight(CHANNEL, now=T0) == 1
    await limits.take(quota, ADA, now=T0, lease_s=60)


async def test_a_cooldown_holds_per_member_and_channel_and_a_busy_refusal_costs_none(store: Storage) -> None:
    limits = store.limits
    quota = [Quota(CHANNEL, cooldown_s=10, max_inflight=1)]
    ticket = await limits.take(quota, ADA, now=T0, lease_s=60)
    with pytest.raises(CoolingDown) as cooling:
        await limits.take(quota, ADA, now=T0 + 4, lease_s=60)
    assert cooling.value.retry_after == pytest.approx(6) and cooling.value.per == 10
    with pytest.raises(ScopeBusy):
        await limits.take(quota, BOB, now=T0 + 4, lease_s=60)  # busy: Bob's cooldown not started
    await limits.give_back(ticket)
    await limits.give_back(await limits.take(quota, BOB, now=T0 + 5, lease_s=60))
    await limits.take([Quota(THREAD, cooldown_s=10)], ADA, now=T0 + 5, lease_s=60)  # another channel
    await limits.take(quota, ADA, now=T0 + 10.5, lease_s=60)  # the period has passed


async def test_a_request_takes_every_scope_or_none(store: Storage) -> None:
    limits = store.limits
    await limits.take([Quota(THREAD, max_inflight=1)], BOB, now=T0, lease_s=60)
    both = [Quota(CHANNEL, max_inflight=5), Quota(THREAD, max_inflight=1)]
    with pytest.raises(ScopeBusy) as busy:
        await limits.take(both, ADA, now=T0, lease_s=60)
    assert busy.value.scope_id == THREAD
    assert await limits.inflight(CHANNEL, now=T0) == 0  # nothing half-taken in the parent


async def test_a_lease_of_a_process_that_died_runs_out(store: Storage) -> None:
    limits = store.limits
    quota = [Quota(CHANNEL, max_inflight=1)]
    await limits.take(quota, ADA, now=T0, lease_s=30)  # never given back
    with pytest.raises(ScopeBusy):
        await limits.take(quota, BOB, now=T0 + 29, lease_s=30)
    assert await limits.inflight(CHANNEL, now=T0 + 31) == 0
    await limits.take(quota, BOB, now=T0 + 31, lease_s=30)


async def test_reset_cooldowns_starts_the_channel_fresh(store: Storage) -> None:
    limits = store.limits
    quota = [Quota(CHANNEL, cooldown_s=60)]
    await limits.take(quota, ADA, now=T0, lease_s=60)
    await limits.reset_cooldowns(CHANNEL)
    await limits.take(quota, ADA, now=T0 + 1, lease_s=60)


async def test_a_lock_has_one_holder_until_given_back_or_run_out(store: Storage) -> None:
    limits = store.limits
    held = await limits.hold("story:7", now=T0, lease_s=30)
    assert held is not None
    assert await limits.hold("story:7", now=T0 + 1, lease_s=30) is None
    assert await limits.hold("story:8", now=T0 + 1, lease_s=30) is not None
    await limits.give_back(held)
    again = await limits.hold("story:7", now=T0 + 2, lease_s=30)
    assert again is not None
    assert await limits.hold("story:7", now=T0 + 33, lease_s=30) is not None  # ran out


async def test_two_processes_never_pass_a_limit_together(store: Storage, open_storage: Opener) -> None:
    async with await open_storage(ChannelSettings()) as other:
        quota = [Quota(CHANNEL, max_inflight=3)]

        async def one(limits: object, user: int) -> bool:
            try:
                await limits.take(quota, user, now=T0, lease_s=60)  # type: ignore[attr-defined]
            except ScopeBusy:
                return False
            return True

        results = await asyncio.gather(*(one((store, other)[i % 2].limits, i) for i in range(20)))
        assert sum(results) == 3
        assert await other.limits.inflight(CHANNEL, now=T0) == 3


async def test_a_renewed_lease_outlives_its_first_term_and_a_lapsed_one_stays_gone(store: Storage) -> None:
    limits = store.limits
    quota = [Quota(CHANNEL, max_inflight=1)]
    ticket = await limits.take(quota, ADA, now=T0, lease_s=60)
    assert await limits.renew(ticket, now=T0 + 50, lease_s=60)  # its holder is alive
    with pytest.raises(ScopeBusy):
        await limits.take(quota, BOB, now=T0 + 100, lease_s=60)  # past the first term, still held
    assert await limits.inflight(CHANNEL, now=T0 + 111) == 0  # not renewed again: it lapsed
    assert not await limits.renew(ticket, now=T0 + 111, lease_s=60)  # too late to bring back
    await limits.take(quota, BOB, now=T0 + 111, lease_s=60)
    lock = await limits.hold("story:9", now=T0, lease_s=60)
    assert lock is not None and await limits.renew(lock, now=T0 + 30, lease_s=60)
    assert await limits.hold("story:9", now=T0 + 80, lease_s=60) is None
