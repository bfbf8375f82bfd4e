"""Token quotas end to end: the real bot and tiny model over the loopback server, moderators setting
budgets with /mod quota, members reading theirs with /quota and being refused once it is used up."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from loopback import InteractionRecord, LoopbackDiscord
from tests.e2e.harness import BotRunner

pytestmark = pytest.mark.timeout(90)

FAST = {"DEFAULT_MAX_NEW_TOKENS": "8"}
FOOTER = re.compile(r"\n-# (\d+) tokens · ")
REFUSED = re.compile(
    r"⌛ You've used your (?P<budget>[\d,]+) tokens for (?P<window>this hour|today \(UTC\)) (?P<where>here|in this server); "
    r"it refills in (?:(?P<hours>\d+) h ?)?(?:(?P<minutes>\d+) min)?\."
)


def settled(record: InteractionRecord) -> bool:
    """Answered at once, or a deferred reply that is finished (footer) or was refused after all."""
    if not record.responded or record.is_thinking:
        return False
    if record.callback_type == 4:
        return True
    shown = "".join(m.content for m in record.messages if not m.deleted)
    return bool(FOOTER.search(shown)) or any(m.ephemeral for m in record.followups)


async def run(
    server: LoopbackDiscord, command: str, options: dict[str, object] | None = None, **kwargs: object
) -> InteractionRecord:
    record = await server.invoke(command, options, **kwargs)  # type: ignore[arg-type]
    return await record.wait_for(settled, timeout=20)


async def generate(runner: BotRunner, **kwargs: object) -> InteractionRecord:
    """A short greedy /generate, waited for until its command has ended: a reply shows its footer
    a moment before its tokens are counted (and a request that comes in between is let through)."""
    options = {"prompt": "Once upon a time", "max_new_tokens": 4, "temperature": 0}
    record = await run(runner.server, "generate", options, **kwargs)
    assert runner.bot is not None
    for _ in range(200):
        if not runner.bot.models.inflight:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError("the command did not end")


def tokens_written(record: InteractionRecord) -> int:
    """The tokens a public reply says it generated (its footer); fails on a refusal."""
    found = FOOTER.search(record.content or "")
    assert not record.ephemeral and found, record.summary()
    return int(found.group(1))


def refill_minutes(record: InteractionRecord) -> int:
    found = REFUSED.fullmatch(record.content or "")
    assert record.ephemeral and found, record.summary()
    return int(found.group("hours") or 0) * 60 + int(found.group("minutes") or 0)


async def clear_of_the_hour_turn() -> None:
    """Hourly budgets start afresh on the hour: don't straddle one (a few seconds, once an hour)."""
    if (left := 3600 - time.time() % 3600) < 20:
        await asyncio.sleep(left + 0.5)


async def test_a_request_may_pass_the_budget_then_the_next_is_refused_until_it_refills(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**FAST)
    await clear_of_the_hour_turn()
    set_it = await run(server, "mod quota set", {"tokens": 3, "per": "hour"}, user=server.moderator)
    assert not set_it.ephemeral
    assert "set a token budget of **3 tokens per hour** for each member in this channel" in (
        set_it.content or ""
    )

    assert tokens_written(await generate(runner)) >= 3  # started with tokens left: it finishes past them
    refused = await generate(runner)
    assert REFUSED.fullmatch(refused.content or "").group("window") == "this hour"  # type: ignore[union-attr]
    assert 1 <= refill_minutes(refused) <= 60
    assert refused.content.startswith("⌛ You've used your 3 tokens for this hour here; it refills in ")  # type: ignore[union-attr]
    # The channel's budget holds in its threads, and only for the member who used it.
    assert refill_minutes(await generate(runner, channel=server.thread)) <= 60
    assert tokens_written(await generate(runner, user=server.moderator)) > 0
    # Other model commands are refused too, before the model is asked.
    fill = await run(server, "fill", {"text": "The cat sat on the [MASK]."})
    assert fill.ephemeral and (fill.content or "").startswith("⌛ You've used your 3 tokens")

    await run(server, "mod quota clear", {}, user=server.moderator)
    assert tokens_written(await generate(runner)) > 0


async def test_quota_shows_what_is_left_and_when_it_refills(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**FAST)
    none = await run(server, "quota")
    assert none.ephemeral and none.content == "♾️ No token budget applies to you here."

    assert server.owner is not None  # a server-wide budget needs Manage Server
    await run(server, "mod quota set", {"tokens": 1000, "per": "day", "scope": "server"}, user=server.owner)
    used = tokens_written(await generate(runner))
    shown = await run(server, "quota")
    assert shown.ephemeral
    first = (shown.content or "").splitlines()[0]
    assert first.startswith(
        f"⌛ **{1000 - used:,}** of your 1,000 tokens for today (UTC) are left in this server ({used} used); it refills in "
    ), first
    assert "-# The budget for everyone in this server: 1,000 tokens per day." in (shown.content or "")

    # A tighter channel budget holds as well, and is now the one shown first; the channel counts
    # from the moment it has a budget, the server all along.
    await run(server, "mod quota set", {"tokens": 50, "per": "day"}, user=server.moderator)
    here = tokens_written(await generate(runner))
    tighter = (await run(server, "quota")).content or ""
    assert tighter.startswith(
        f"⌛ **{50 - here}** of your 50 tokens for today (UTC) are left here ({here} used); it refills in "
    ), tighter
    assert (
        f"-# Also in force: the budget for everyone in this server, 1,000 tokens per day ({used + here} used)."
        in tighter
    )


async def test_a_role_with_more_budget_and_an_unlimited_role(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    patrons, staff = server.add_role("Patrons"), server.add_role("Staff")
    patron, helper = server.add_member("patron", [patrons]), server.add_member("helper", [staff])
    await runner.start(**FAST)
    await clear_of_the_hour_turn()
    await run(server, "mod quota set", {"tokens": 3, "per": "hour"}, user=server.moderator)
    roomy = await run(
        server, "mod quota set", {"tokens": 1000, "per": "hour", "role": patrons}, user=server.moderator
    )
    assert f"**1,000 tokens per hour** for each member with <@&{patrons.id}>" in (roomy.content or "")
    lifted = await run(server, "mod quota unlimited", {"role": staff}, user=server.moderator)
    assert f"lifted the token budget for members with <@&{staff.id}> in this channel" in (
        lifted.content or ""
    )

    for _ in range(2):
        tokens_written(await generate(runner, user=patron))
        tokens_written(await generate(runner, user=helper))
    tokens_written(await generate(runner))
    assert refill_minutes(await generate(runner)) <= 60  # the plain budget: used up

    patron_quota = (await run(server, "quota", user=patron)).content or ""
    assert "of your 1,000 tokens for this hour are left here" in patron_quota
    assert f"-# Your role <@&{patrons.id}>'s budget here: 1,000 tokens per hour." in patron_quota
    helper_quota = (await run(server, "quota", user=helper)).content or ""
    assert helper_quota == f"♾️ No token budget applies to you here (your role <@&{staff.id}> has no limit)."

    shown = (await run(server, "mod quota show", user=server.moderator)).content or ""
    assert "• everyone: **3 tokens per hour**" in shown
    assert f"• <@&{patrons.id}>: **1,000 tokens per hour**" in shown
    assert f"• <@&{staff.id}>: **unlimited**" in shown


async def test_quota_changes_are_moderators_own_and_in_the_log(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(**FAST)
    server.grant_command("mod", server.guild)  # shown to everyone: the bot still decides
    refused = await run(server, "mod quota set", {"tokens": 5, "per": "hour"}, user=server.member)
    assert refused.ephemeral and "needs Manage Channels or the moderator role" in (refused.content or "")
    # Manage Channels is not enough for the whole server.
    server_wide = await run(
        server, "mod quota set", {"tokens": 5, "per": "day", "scope": "server"}, user=server.moderator
    )
    assert server_wide.ephemeral and "needs the Manage Server permission" in (server_wide.content or "")

    await run(server, "mod quota set", {"tokens": 500, "per": "hour"}, user=server.moderator)
    await run(server, "mod quota set", {"tokens": 9000, "per": "day", "scope": "server"}, user=server.owner)
    await run(server, "mod quota clear", {}, user=server.moderator)
    nothing = await run(server, "mod quota clear", {}, user=server.moderator)
    assert nothing.ephemeral and nothing.content == "There is no token budget for members in this channel."

    log = (await run(server, "mod log", user=server.moderator)).content or ""
    lines = [line for line in log.splitlines() if "quota" in line]
    assert len(lines) == 3, log
    assert "**quota clear**: for everyone" in lines[0] and f"<@{server.moderator.id}>" in lines[0]  # type: ignore[union-attr]
    assert "**quota set**: 9,000 tokens per day for everyone · *server-wide*" in lines[1]
    assert "**quota set**: 500 tokens per hour for everyone" in lines[2]


async def test_a_restart_keeps_what_members_used(server: LoopbackDiscord, runner: BotRunner) -> None:
    await runner.start(**FAST)
    await run(server, "mod quota set", {"tokens": 3, "per": "day"}, user=server.moderator)
    assert tokens_written(await generate(runner)) >= 3
    assert runner.app is not None
    await runner.app.shutdown()  # as on SIGTERM: the reply in flight finishes (and counts) first
    await runner.restart(**FAST)
    refused = await generate(runner)
    assert REFUSED.fullmatch(refused.content or "").group("window") == "today (UTC)"  # type: ignore[union-attr]
    assert refill_minutes(refused) <= 24 * 60
