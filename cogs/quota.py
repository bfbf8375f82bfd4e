"""/quota: a member's token budget here, what they used of it, and when it refills.

Moderators set budgets with ``/mod quota``; the moderation layer (``bot.models.moderator``) decides
which hold for the member and refuses a model command once one is used up. This shows the same
decision, read the same way, so what a member is told matches what the gate does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core import replies
from core.facade import Moderator
from domain.quotas import Budget, Standing, strictest, this_window, wait_text

if TYPE_CHECKING:
    from core.transcord import Transcord


def _place(budget: Budget, channel_id: int | None) -> str:
    if budget.scope == "guild":
        return "in this server"
    return "here" if budget.scope_id == channel_id else "in the parent channel"


def _whose(budget: Budget) -> str:
    return f"your role <@&{budget.role_id}>'s budget" if budget.role_id else "the budget for everyone"


def describe(standings: list[Standing], channel_id: int | None, now: float) -> str:
    """What a member reads: the budget that holds them back most, then any other in force."""
    held = strictest(standings)
    if held is None:
        lifted = [s.budget for s in standings if s.budget.unlimited]
        why = f" (your role <@&{lifted[0].role_id}> has no limit)" if lifted else ""
        return f"♾️ No token budget applies to you here{why}."
    budget, refill = held.budget, held.refills_at
    when = f"it refills in {wait_text(refill - now)} (<t:{int(refill)}:t>)"
    if held.used_up:
        head = f"⌛ You've used your {budget.tokens:,} tokens for {this_window(budget.per)} {_place(budget, channel_id)}; {when}."
    else:
        head = (
            f"⌛ **{held.left:,}** of your {budget.tokens:,} tokens for {this_window(budget.per)} are left "
            f"{_place(budget, channel_id)} ({held.used:,} used); {when}."
        )
    lines = [head, f"-# {_whose(budget).capitalize()} {_place(budget, channel_id)}: {budget.describe()}."]
    for other in standings:
        if other is not held:
            b = other.budget
            used = "" if b.unlimited else f" ({other.used:,} used)"
            lines.append(f"-# Also in force: {_whose(b)} {_place(b, channel_id)}, {b.describe()}{used}.")
    lines.append(
        "-# A reply that starts while tokens are left may finish past the budget; the next one waits."
    )
    return "\n".join(lines)


class Quota(commands.Cog):
    def __init__(self, moderator: Moderator) -> None:
        self.moderator = moderator

    @app_commands.command(
        name="quota", description="Your token budget here: what is left, and when it refills"
    )
    async def quota(self, interaction: discord.Interaction) -> None:
        standings = await self.moderator.standings(interaction)
        text = describe(standings, interaction.channel_id, time.time())
        await replies.send_long(interaction, text, ephemeral=True)


async def setup(bot: Transcord) -> None:
    moderator = bot.models.moderator
    if moderator is None:
        raise RuntimeError(f"moderation could not be loaded ({bot.models.moderation_error})")
    await bot.add_cog(Quota(moderator))
