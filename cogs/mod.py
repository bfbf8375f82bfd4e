"""/mod: moderators keep order in a channel: lock, cooldown, limit, blocklist, and a log of it all.

The rules are enforced by the moderation layer every model command passes
(:class:`core.facade.Moderator`, inside ``bot.models``): it refuses a request (locked,
blocked phrase, cooling down, busy) before the model is asked, and redacts blocked phrases from
everything the model writes, streamed edits included. This cog changes and shows the rules of
that same layer. Rules are per channel (a thread also answers to its parent's), kept in the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core import checks, render, replies
from core.facade import Moderator, channel_chain
from domain.rules import MAX_COOLDOWN_S, MAX_INFLIGHT, MAX_PHRASE_CHARS, REDACTION_CHAR, ChannelRules
from storage import AuditEntry

if TYPE_CHECKING:
    from core.transcord import Transcord


def _here(interaction: discord.Interaction) -> str:
    return "this thread" if len(channel_chain(interaction)) > 1 else "this channel"


def _quote(phrase: str) -> str:
    return f"“{render.escape(phrase)}”"


# Shown to members with Manage Channels (an admin may grant /mod to the moderator role in
# Server Settings -> Integrations); every use is checked here all the same.
@app_commands.guild_only()
@app_commands.default_permissions(manage_channels=True)
class Moderation(
    commands.GroupCog,
    group_name="mod",
    group_description="Moderator tools for this channel: lock, cooldown, limit, blocklist, log",
):
    blocklist = app_commands.Group(
        name="blocklist", description="Words or phrases refused in prompts and hidden in replies here"
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
