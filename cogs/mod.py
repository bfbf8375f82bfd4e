"""/mod: moderators keep order in a channel: lock, cooldown, limit, blocklist, token quotas, and a
log of it all.

The rules are enforced by the moderation layer every model command passes
(:class:`core.facade.Moderator`, inside ``bot.models``): it refuses a request (locked,
blocked phrase, cooling down, busy) before the model is asked, and redacts blocked phrases from
everything the model writes, streamed edits included. This cog changes and shows the rules of
that same layer. Rules are per channel (a thread also answers to its parent's), kept in the database.
Token budgets (``/mod quota``) are per channel or per server, for everyone or for a role; which of
them hold for a member is decided in ``domain.quotas``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core import checks, render, replies
from core.facade import Moderator, channel_chain
from domain.errors import UserFacingError
from domain.quotas import MAX_BUDGET_TOKENS, UNLIMITED, Budget, QuotaScope
from domain.rules import MAX_COOLDOWN_S, MAX_INFLIGHT, MAX_PHRASE_CHARS, REDACTION_CHAR, ChannelRules
from storage import AuditEntry

if TYPE_CHECKING:
    from core.transcord import Transcord


def _here(interaction: discord.Interaction) -> str:
    return "this thread" if len(channel_chain(interaction)) > 1 else "this channel"


def _quote(phrase: str) -> str:
    return f"“{render.escape(phrase)}”"


class Per(enum.Enum):
    """A budget's window, a fixed UTC hour or day (an Enum: discord.py refuses other values)."""

    hour = "hour"
    day = "day"


class Where(enum.Enum):
    """Where a budget applies: this channel (or thread), or the whole server."""

    channel = "channel"
    server = "server"


SERVER_QUOTA_NEEDS = (
    "A server-wide token budget needs the Manage Server permission or this server's moderator role."
)


def _role_id(role: discord.Role | None) -> int:
    # @everyone is every member: its budget is the plain one.
    return 0 if role is None or role.is_default() else role.id


def _whom(role_id: int) -> str:
    return f" with <@&{role_id}>" if role_id else ""


# Shown to members with Manage Channels (an admin may grant /mod to the moderator role in
# Server Settings -> Integrations); every use is checked here all the same.
@app_commands.guild_only()
@app_commands.default_permissions(manage_channels=True)
class Moderation(
    commands.GroupCog,
    group_name="mod",
    group_description="Moderator tools for this channel: lock, cooldown, limit, blocklist, token quotas, log",
):
    blocklist = app_commands.Group(
        name="blocklist", description="Words or phrases refused in prompts and hidden in replies here"
    )
    quota = app_commands.Group(
        name="quota",
        description="Token budgets: how much each member's model commands may write per hour or day",
    )

    def __init__(self, bot: Transcord, moderator: Moderator) -> None:
        self.bot = bot
        self.moderator = moderator
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """Every /mod command: decided here, on the server, whatever the client shows."""
        await checks.require_moderator(interaction)
        return True

    async def rules(self, channel_id: int) -> ChannelRules:
        return await self.moderator.rules(channel_id)

    async def _set_rules(self, interaction: discord.Interaction, **changes: int | bool) -> ChannelRules:
        return await self.moderator.set_rules(interaction.channel_id or 0, interaction.user.id, **changes)

    # -- lock, cooldown, limit -----------------------------------------------------------------

    @app_commands.command(name="lock", description="Pause model commands here (a channel's threads too)")
    async def lock(self, interaction: discord.Interaction) -> None:
        await self._set_lock(interaction, True)

    @app_commands.command(name="unlock", description="Let model commands run here again")
    async def unlock(self, interaction: discord.Interaction) -> None:
        await self._set_lock(interaction, False)

    async def _set_lock(self, interaction: discord.Interaction, locked: bool) -> None:
        icon, here = ("🔒" if locked else "🔓"), _here(interaction)
        if (await self.rules(interaction.channel_id or 0)).locked == locked:
            state = "already locked" if locked else "not locked"
            await replies.send_long(interaction, f"{icon} {here.capitalize()} is {state}.", ephemeral=True)
            return
        await self._set_rules(interaction, locked=locked)
        done = (
            f"locked {here}: model commands are paused until a moderator uses `/mod unlock`."
            if locked
            else f"unlocked {here}: model commands work again."
        )
        await replies.send_long(interaction, f"{icon} {interaction.user.mention} {done}")

    @app_commands.command(name="cooldown", description="Make each user wait between model commands here")
    @app_commands.describe(seconds="Seconds each user waits between model commands (0 turns it off)")
    async def cooldown(
        self, interaction: discord.Interaction, seconds: app_commands.Range[int, 0, MAX_COOLDOWN_S]
    ) -> None:
        await self._set_rules(interaction, cooldown_s=seconds)
        await self.moderator.gate.reset_cooldowns(interaction.channel_id or 0)  # the new period starts fresh
        text = (
            f"⏱️ {interaction.user.mention} set a cooldown of **{seconds} s** per user for model commands in {_here(interaction)}."
            if seconds
            else f"⏱️ {interaction.user.mention} turned the cooldown off in {_here(interaction)}."
        )
        await replies.send_long(interaction, text)

    @app_commands.command(name="limit", description="Allow at most n model commands running at once here")
    @app_commands.describe(n="How many model commands may run at once here (0 turns the limit off)")
    async def limit(
        self, interaction: discord.Interaction, n: app_commands.Range[int, 0, MAX_INFLIGHT]
    ) -> None:
        await self._set_rules(interaction, max_inflight=n)
        text = (
            f"🚦 {interaction.user.mention} limited {_here(interaction)} to **{n}** model command{'s' if n != 1 else ''} at once."
            if n
            else f"🚦 {interaction.user.mention} turned the limit off in {_here(interaction)}."
        )
        await replies.send_long(interaction, text)

    # -- blocklist (ephemeral: no need to show everyone the words) -----------------------------

    @blocklist.command(name="add", description="Block a word or phrase here (whole words, any case)")
    @app_commands.describe(phrase="The word or phrase to block")
    async def blocklist_add(
        self, interaction: discord.Interaction, phrase: app_commands.Range[str, 1, MAX_PHRASE_CHARS]
    ) -> None:
        channel_id = interaction.channel_id or 0
        added = await self.bot.store.rules.add_blocked_phrase(
            channel_id, phrase, actor_id=interaction.user.id
        )
        rules = await self.moderator.rules(channel_id)
        shown = _quote(" ".join(phrase.split()).lower())
        if not added:
            await replies.send_long(
                interaction, f"{shown} is already blocked in {_here(interaction)}.", ephemeral=True
            )
            return
        await replies.send_long(
            interaction,
            f"🚫 Blocked {shown} in {_here(interaction)}: prompts with it are refused, and model replies "
            f"show it as {REDACTION_CHAR * 5}. {len(rules.blocklist.phrases)} blocked here now.",
            ephemeral=True,
        )

    @blocklist.command(name="remove", description="Unblock a word or phrase here")
    @app_commands.describe(phrase="The blocked word or phrase")
    async def blocklist_remove(
        self, interaction: discord.Interaction, phrase: app_commands.Range[str, 1, MAX_PHRASE_CHARS]
    ) -> None:
        channel_id = interaction.channel_id or 0
        removed = await self.bot.store.rules.remove_blocked_phrase(
            channel_id, phrase, actor_id=interaction.user.id
        )
        await self.moderator.rules(channel_id)  # replies being written here stop redacting it
        shown = _quote(" ".join(phrase.split()).lower())
        text = (
            f"✅ Unblocked {shown} in {_here(interaction)}."
            if removed
            else f"{shown} is not blocked in {_here(interaction)}."
        )
        await replies.send_long(interaction, text, ephemeral=True)

    @blocklist.command(name="list", description="The words and phrases blocked here")
    async def blocklist_list(self, interaction: discord.Interaction) -> None:
        lines = [f"**Blocked in {_here(interaction)}** (whole words, any case)"]
        for channel_id in channel_chain(interaction):
            phrases = (await self.rules(channel_id)).blocklist.phrases
            inherited = channel_id != (interaction.channel_id or 0)
            label = " · *from the parent channel*" if inherited else ""
            lines += [f"• {_quote(p)}{label}" for p in phrases]
        if len(lines) == 1:
            lines.append("*(nothing)*")
        await replies.send_long(interaction, "\n".join(lines), ephemeral=True)

    # -- token quotas --------------------------------------------------------------------------

    async def _budget_scope(
        self, interaction: discord.Interaction, where: Where
    ) -> tuple[QuotaScope, int, str]:
        """The scope a quota command changes, and how to name it; the server's needs more rights
        (Manage Channels may be granted in one channel only)."""
        if where is Where.channel:
            return "channel", interaction.channel_id or 0, _here(interaction)
        if not (interaction.permissions.manage_guild or await self.bot.has_moderator_role(interaction)):
            raise app_commands.CheckFailure(SERVER_QUOTA_NEEDS)
        return "guild", interaction.guild_id or 0, "this server"

    @quota.command(
        name="set", description="Set how many tokens each member's model commands may write per hour or day"
    )
    @app_commands.describe(
        tokens="Tokens each member may have generated in each window",
        per="The window: a UTC hour or a UTC day",
        scope="This channel/thread (default), or the whole server",
        role="Only for members with this role (each gets the most generous of their role budgets)",
    )
    async def quota_set(
        self,
        interaction: discord.Interaction,
        tokens: app_commands.Range[int, 1, MAX_BUDGET_TOKENS],
        per: Per,
        scope: Where = Where.channel,
        role: discord.Role | None = None,
    ) -> None:
        target, target_id, where = await self._budget_scope(interaction, scope)
        budget = Budget(target, target_id, tokens, per.value, _role_id(role))
        await self.bot.store.rules.set_token_budget(budget, actor_id=interaction.user.id)
        await replies.send_long(
            interaction,
            f"⌛ {interaction.user.mention} set a token budget of **{budget.describe()}** for each member"
            f"{_whom(budget.role_id)} in {where}. `/quota` shows each member what is left.",
        )

    @quota.command(
        name="unlimited", description="Let members with a role use model commands without a token budget"
    )
    @app_commands.describe(
        role="The role whose members have no token limit",
        scope="This channel/thread (default), or the whole server",
    )
    async def quota_unlimited(
        self, interaction: discord.Interaction, role: discord.Role, scope: Where = Where.channel
    ) -> None:
        if not _role_id(role):
            raise UserFacingError(
                "Every member has @everyone: to lift the budget for everyone, use `/mod quota clear`."
            )
        target, target_id, where = await self._budget_scope(interaction, scope)
        budget = Budget(target, target_id, UNLIMITED, "hour", role.id)
        await self.bot.store.rules.set_token_budget(budget, actor_id=interaction.user.id)
        await replies.send_long(
            interaction,
            f"♾️ {interaction.user.mention} lifted the token budget for members{_whom(role.id)} in {where}.",
        )

    @quota.command(name="clear", description="Remove a token budget (the one for everyone, or a role's)")
    @app_commands.describe(
        scope="This channel/thread (default), or the whole server",
        role="The role whose budget to remove (none: the one for everyone)",
    )
    async def quota_clear(
        self, interaction: discord.Interaction, scope: Where = Where.channel, role: discord.Role | None = None
    ) -> None:
        target, target_id, where = await self._budget_scope(interaction, scope)
        role_id = _role_id(role)
        removed = await self.bot.store.rules.clear_token_budget(
            target, target_id, role_id=role_id, actor_id=interaction.user.id
        )
        if not removed:
            await replies.send_long(
                interaction,
                f"There is no token budget for members{_whom(role_id)} in {where}.",
                ephemeral=True,
            )
            return
        await replies.send_long(
            interaction,
            f"⌛ {interaction.user.mention} removed the token budget for members{_whom(role_id)} in {where}.",
        )

    @quota.command(name="show", description="The token budgets set here and for the whole server")
    async def quota_show(self, interaction: discord.Interaction) -> None:
        chain = channel_chain(interaction)
        budgets = await self.bot.store.rules.token_budgets(interaction.guild_id or 0, chain)
        places = [("guild", interaction.guild_id or 0, "Server-wide")]
        places += [
            ("channel", c, "Parent channel" if c != chain[-1] else _here(interaction).capitalize())
            for c in chain
        ]
        lines = [f"**Token budgets for {_here(interaction)}** (per member; UTC hours and days)"]
        for scope, scope_id, label in places:
            here = [b for b in budgets if b.key == (scope, scope_id)]
            if here:
                lines.append(f"*{label}:*")
                lines += [
                    f"• {'<@&' + str(b.role_id) + '>' if b.role_id else 'everyone'}: **{b.describe()}**"
                    for b in here
                ]
        if len(lines) == 1:
            lines.append("*(none: model commands are limited only by the rules of `/mod show`)*")
        lines.append(
            "-# Every budget here holds at once (server, channel, thread); in each, a member with role budgets "
            "gets the most generous of theirs instead of the one for everyone."
        )
        await replies.send_long(interaction, "\n".join(lines), ephemeral=True)

    # -- what is in force, and what happened ---------------------------------------------------

    @app_commands.command(name="show", description="The moderation rules in force here")
    async def show(self, interaction: discord.Interaction) -> None:
        lines = [f"**Moderation in {_here(interaction)}**"]
        for channel_id in channel_chain(interaction):
            rules = await self.rules(channel_id)
            if channel_id != (interaction.channel_id or 0):
                lines.append("*From the parent channel:*")
            lines.append(
                f"• lock: **{'on' if rules.locked else 'off'}** · cooldown: **{rules.cooldown_s or 'off'}"
                f"{' s' if rules.cooldown_s else ''}** · limit: **{rules.max_inflight or 'off'}**"
                f" · blocked phrases: **{len(rules.blocklist.phrases)}**"
            )
        running = await self.moderator.gate.inflight(interaction.channel_id or 0)
        lines.append(f"-# model commands running here now: {running}")
        await replies.send_long(interaction, "\n".join(lines), ephemeral=True)

    @app_commands.command(name="log", description="Recent moderator actions and settings changes here")
    @app_commands.describe(count="How many entries to show, newest first")
    async def log(self, interaction: discord.Interaction, count: app_commands.Range[int, 1, 50] = 15) -> None:
        entries = await self.bot.store.rules.audit_log(
            interaction.guild_id, channel_chain(interaction), limit=count
        )
        lines = [f"**Moderation log for {_here(interaction)}** (newest first)"]
        lines += [_log_line(e, interaction.channel_id or 0) for e in entries] or ["*(nothing yet)*"]
        await replies.send_long(interaction, "\n".join(lines), ephemeral=True)


def _log_line(entry: AuditEntry, channel_id: int) -> str:
    where = ""
    if entry.scope == "guild":
        where = " · *server-wide*"
    elif entry.scope_id != channel_id:
        where = " · *parent channel*"
    detail = f": {render.escape(entry.detail)}" if entry.detail else ""
    return f"<t:{int(entry.at)}:R> · <@{entry.actor_id}> · **{entry.action}**{detail}{where}"


async def setup(bot: Transcord) -> None:
    moderator = bot.models.moderator
    if moderator is None:
        raise RuntimeError(f"moderation could not be loaded ({bot.models.moderation_error})")
    await bot.add_cog(Moderation(bot, moderator))
