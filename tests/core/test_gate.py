"""The gate without Discord: lock, blocklist, cooldown, limit, and the leases of requests in flight."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.gate import LOCKED_MESSAGE, Gate
from core.replies import error_message
from domain.errors import UserFacingError
from domain.rules import Blocklist, ChannelRules
from domain.settings import ChannelSettings
from storage.connect import open_sqlite
from storage.protocols import LimitStore

CHANNEL, THREAD, OTHER = 20, 30, 40
ALICE, BOB = 1, 2


@pytest.fixture
async def limits(tmp_path: Path) -> AsyncIterator[LimitStore]:
    """The gate's counts live in the limit store: a real one, on a fresh SQLite file."""
    async with await open_sqlite(tmp_path / "limits.db", ChannelSettings()) as store:
        yield store.limits


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# --- the gate ---------------------------------------------------------------------------


async def test_no_rules_let_everything_through(limits: LimitStore) -> None:
    gate = Gate(limits)
    admission = await gate.admit([(CHANNEL, ChannelRules())], ALICE, ["hello dragon"])
    assert admission.redact.redact("dragon") == "dragon"
    await gate.release(admission)
    assert await gate.inflight(CHANNEL) == 0


async def test_a_locked_channel_refuses_with_the_lock_message(limits: LimitStore) -> None:
    with pytest.raises(UserFacingError) as info:
        await Gate(limits).admit([(CHANNEL, ChannelRules(locked=True))], ALICE, ["hi"])
    assert error_message(info.value) == f"🔒 {LOCKED_MESSAGE}"


async def test_a_thread_is_locked_when_its_parent_is(limits: LimitStore) -> None:
    scopes = [(CHANNEL, ChannelRules(locked=True)), (THREAD, ChannelRules())]
    with pytest.raises(UserFacingError, match="locked"):
        await Gate(limits).admit(scopes, ALICE, ["hi"])


async def test_a_blocked_phrase_in_any_text_is_refused_naming_it(limits: LimitStore) -> None:
    rules = ChannelRules(blocklist=Blocklist.of(["dark lord"]))
    with pytest.raises(UserFacingError) as info:
        await Gate(limits).admit([(CHANNEL, rules)], ALICE, ["fine", "Hail the Dark Lord!"])
    assert "“dark lord”" in error_message(info.value)


async def test_a_thread_uses_its_own_and_its_parents_blocklist(limits: LimitStore) -> None:
    scopes = [
        (CHANNEL, ChannelRules(blocklist=Blocklist.of(["orc"]))),
        (THREAD, ChannelRules(blocklist=Blocklist.of(["elf"]))),
    ]
    gate = Gate(limits)
    for word in ("orc", "elf"):
        with pytest.raises(UserFacingError, match=word):
            await gate.admit(scopes, ALICE, [f"an {word}"])
    admission = await gate.admit(scopes, ALICE, ["a dwarf"])
    assert admission.redact.redact("orc and elf and dwarf") == "███ and ███ and dwarf"


async def test_cooldown_is_per_user_and_says_how_long_to_wait(limits: LimitStore) -> None:
    clock = Clock()
    gate = Gate(limits, clock)
    rules = [(CHANNEL, ChannelRules(cooldown_s=30))]
    await gate.release(await gate.admit(rules, ALICE, ["one"]))
    clock.now += 10.2
    with pytest.raises(UserFacingError) as info:
        await gate.admit(rules, ALICE, ["two"])
    assert info.value.retry_after == 20  # 19.8 s, rounded up
    assert error_message(info.value) == "⏳ Slow down: you can use this again in 20 s."
    await gate.release(await gate.admit(rules, BOB, ["bob is not cooling down"]))
    await gate.release(await gate.admit([(OTHER, ChannelRules(cooldown_s=30))], ALICE, ["another channel"]))
    clock.now += 20
    await gate.release(await gate.admit(rules, ALICE, ["three"]))


async def test_a_refused_request_does_not_start_the_cooldown(limits: LimitStore) -> None:
    clock = Clock()
    gate = Gate(limits, clock)
    rules = ChannelRules(cooldown_s=30, blocklist=Blocklist.of(["nope"]))
    with pytest.raises(UserFacingError):
        await gate.admit([(CHANNEL, rules)], ALICE, ["nope"])
    await gate.admit([(CHANNEL, rules)], ALICE, ["fine"])  # not cooling down


async def test_changing_the_cooldown_starts_afresh(limits: LimitStore) -> None:
    clock = Clock()
    gate = Gate(limits, clock)
    await gate.admit([(CHANNEL, ChannelRules(cooldown_s=60))], ALICE, ["one"])
    clock.now += 6
    await gate.admit([(CHANNEL, ChannelRules(cooldown_s=5))], ALICE, ["new period"])
    with pytest.raises(UserFacingError):
        await gate.admit([(CHANNEL, ChannelRules(cooldown_s=5))], ALICE, ["too soon"])
    await gate.reset_cooldowns(CHANNEL)
    await gate.admit([(CHANNEL, ChannelRules(cooldown_s=5))], ALICE, ["after a reset"])


async def test_limit_refuses_past_n_in_flight_and_frees_a_slot_on_release(limits: LimitStore) -> None:
    gate = Gate(limits)
    rules = [(CHANNEL, ChannelRules(max_inflight=2))]
    first = await gate.admit(rules, ALICE, ["1"])
    await gate.admit(rules, BOB, ["2"])
    with pytest.raises(UserFacingError) as info:
        await gate.admit(rules, ALICE, ["3"])
    assert error_message(info.value).startswith("⏳ This channel is busy: 2 of its requests")
    await gate.release(first)
    await gate.release(first)  # twice is harmless
    assert await gate.inflight(CHANNEL) == 1
    await gate.admit(rules, ALICE, ["4"])


async def test_a_busy_refusal_does_not_start_the_cooldown(limits: LimitStore) -> None:
    gate = Gate(limits, Clock())
    rules = [(CHANNEL, ChannelRules(max_inflight=1, cooldown_s=60))]
    running = await gate.admit(rules, ALICE, ["1"])
    with pytest.raises(UserFacingError, match="busy"):
        await gate.admit(rules, BOB, ["2"])
    await gate.release(running)
    await gate.admit(rules, BOB, ["3"])  # Bob was refused, so he is not cooling down


async def test_requests_in_a_thread_count_against_the_parents_limit(limits: LimitStore) -> None:
    gate = Gate(limits)
    parent = (CHANNEL, ChannelRules(max_inflight=1))
    await gate.admit([parent, (THREAD, ChannelRules())], ALICE, ["in the thread"])
    with pytest.raises(UserFacingError, match="busy"):
        await gate.admit([parent], BOB, ["in the channel"])


def test_a_database_out_of_reach_reads_as_try_again_not_as_a_crash() -> None:
    from core.replies import is_unexpected
    from storage.types import StoreUnavailable

    error = StoreUnavailable("the database postgresql://bot@db:5432/transcord is unreachable")
    assert error_message(error).startswith("🗄️ The bot's database can't be reached right now")
    assert "postgresql" not in error_message(error) and not is_unexpected(error)


async def test_a_slot_is_kept_while_its_request_runs_and_lapses_once_nothing_renews_it(
    limits: LimitStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import time

    from core import gate as moderation
    from storage.types import Quota

    monkeypatch.setattr(moderation, "RENEW_EVERY_S", 0.05)
    ticket = await limits.take([Quota(CHANNEL, max_inflight=1)], ALICE, now=time.time(), lease_s=0.2)
    async with moderation.renewing(limits, ticket, lease_s=0.2):
        await asyncio.sleep(0.5)  # longer than the lease: renewed meanwhile
        assert await limits.inflight(CHANNEL, now=time.time()) == 1
    await asyncio.sleep(0.3)  # its holder stopped renewing (as a dead process would)
    assert await limits.inflight(CHANNEL, now=time.time()) == 0


async def test_a_lease_renewal_the_database_refuses_is_one_warning_line_and_renewing_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from core import gate as moderation
    from storage.types import StoreUnavailable

    tries: list[int] = []

    class Away:
        async def renew(self, ticket: int, *, now: float, lease_s: float) -> None:
            tries.append(ticket)
            raise StoreUnavailable("the database postgresql://bot@db:5432/transcord is unreachable")

    monkeypatch.setattr(moderation, "RENEW_EVERY_S", 0.02)
    async with moderation.renewing(Away(), 7):  # type: ignore[arg-type]
        await asyncio.sleep(0.15)
    assert len(tries) >= 2  # it kept trying
    warnings = [r for r in caplog.records if "renew a lease" in r.getMessage()]
    assert warnings and all(r.levelname == "WARNING" and not r.exc_info for r in warnings)


def test_a_database_out_of_reach_under_a_shown_answer_says_the_answer_was_not_saved() -> None:
    from storage.types import StoreUnavailable

    error = StoreUnavailable("the database is unreachable")
    assert "not saved" in error_message(error, after_answer=True)
    assert "not saved" not in error_message(error)
    assert error_message(ValueError("x"), after_answer=True) == error_message(ValueError("x"))


def test_discord_busy_past_its_retries_is_a_try_again_not_a_crash() -> None:
    from unittest.mock import Mock

    import discord

    from core.replies import GENERIC_ERROR, is_unexpected

    def refused(status: int) -> discord.HTTPException:
        return discord.HTTPException(Mock(status=status, reason="x"), "You are being rate limited.")

    for status in (429, 500, 502):
        assert error_message(refused(status)).startswith("⏳ Discord was too busy") and not is_unexpected(
            refused(status)
        )
    assert error_message(refused(404)) == GENERIC_ERROR and is_unexpected(refused(404))
