"""/settings show: what this channel's model commands use; /config: moderators change it.

Two groups because Discord hides (``default_permissions``) whole top-level commands only: members
see ``/settings``, moderators also see ``/config``. Every ``/config`` use is checked here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils import checks, replies
from cogs.utils.settings import SETTING_KEYS
from cogs.utils.store import Scope

if TYPE_CHECKING:
    from cogs.utils.bot import Transcord

ScopeChoice = Literal["channel", "server"]
SOURCE_LABELS = {
    "thread": "this thread",
    "channel": "channel",
    "guild": "server default",
    "default": "bot default",
}


def _scope(interaction: discord.Interaction, choice: ScopeChoice) -> tuple[Scope, int]:
    guild_id = checks.require_server(interaction)
    replies.check_choice("scope", choice, get_args(ScopeChoice))
    if choice == "server":
        return "guild", guild_id
    return "channel", interaction.channel_id or 0


def _format_value(key: str, value: object) -> str:
    if key == "persona":
        text = str(value or "")
        return (
            f"“{discord.utils.escape_markdown(text[:200])}{'…' if len(text) > 200 else ''}”"
            if text
            else "*(none)*"
        )
    if key == "model" and value is None:
        return "*(the bot's default)*"
    return f"`{value}`"


class Settings(commands.GroupCog, group_name="settings", group_description="This channel's model settings"):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(
        name="show", description="Show the settings model commands use here, and where each comes from"
    )
    async def show(self, interaction: discord.Interaction) -> None:
        parent_id = getattr(interaction.channel, "parent_id", None)
        explained = await self.bot.store.explain(interaction.guild_id, interaction.channel_id or 0, parent_id)
        lines = ["**Settings here**"]
        for key in SETTING_KEYS:
            value, source = explained[key]
            lines.append(f"• **{key}**: {_format_value(key, value)} · *{SOURCE_LABELS[source]}*")
        lines.append(f"-# models available: {', '.join(self.bot.models.model_names())}")
        await replies.send_long(interaction, "\n".join(lines), ephemeral=True)


# Shown to members with Manage Channels (an admin may grant /config to the moderator role in
# Server Settings -> Integrations); each change is checked on the server by its scope.
@app_commands.guild_only()
@app_commands.default_permissions(manage_channels=True)
class Config(
    commands.GroupCog, group_name="config", group_description="Change the model settings here (moderators)"
):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        checks.require_server(interaction)
        return True

    async def _require_moderator(self, interaction: discord.Interaction, scope: Scope) -> None:
        if scope == "guild":
            # Manage Channels may be granted in one channel only; it must not reach the server default.
            if interaction.permissions.manage_guild or await self.bot.has_moderator_role(interaction):
                return
        elif await self.bot.is_moderator(interaction):
            return
        needed = "Manage Server" if scope == "guild" else "Manage Channels"
        raise app_commands.CheckFailure(
            f"Changing settings needs the {needed} permission or this server's moderator role."
        )

    @app_commands.command(name="set", description="Change settings for this channel (or the whole server)")
    @app_commands.describe(
        scope="Where the change applies: this channel/thread, or the server's default",
        model="Which model answers here",
        max_new_tokens="How many tokens a reply may have",
        temperature="Randomness: 0 is always the likeliest word",
        top_p="Nucleus sampling: keep the likeliest words adding up to this share",
        top_k="Keep only the k likeliest words (0 = off)",
        repetition_penalty="Above 1 discourages repeating words",
        persona="The system prompt /chat answers with (empty text clears it)",
    )
    async def set_(
        self,
        interaction: discord.Interaction,
        scope: ScopeChoice = "channel",
        model: str | None = None,
        max_new_tokens: app_commands.Range[int, 1, 1024] | None = None,
        temperature: app_commands.Range[float, 0.0, 2.0] | None = None,
        top_p: app_commands.Range[float, 0.0, 1.0] | None = None,
        top_k: app_commands.Range[int, 0, 1000] | None = None,
        repetition_penalty: app_commands.Range[float, 1.0, 2.0] | None = None,
        persona: app_commands.Range[str, 0, 2000] | None = None,
    ) -> None:
        target, target_id = _scope(interaction, scope)
        await self._require_moderator(interaction, target)
        given = {
            "model": model,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "repetition_penalty": repetition_penalty,
            "persona": persona,
        }
        values = {k: v for k, v in given.items() if v is not None}
        if not values:
            raise replies.UserFacingError("Give at least one setting to change, e.g. `temperature: 0.3`.")
        saved = await self.bot.store.set_values(
            target,
            target_id,
            values,
            actor_id=interaction.user.id,
            max_new_tokens_cap=self.bot.config.service.max_new_tokens_cap,
            model_names=self.bot.models.model_names(),
        )
        where = "the server default" if target == "guild" else f"<#{target_id}>"
        changes = ", ".join(f"**{k}** → {_format_value(k, v)}" for k, v in saved.items())
        await replies.send_long(interaction, f"⚙️ {interaction.user.mention} set {changes} for {where}.")

    @set_.autocomplete("model")
    async def _model_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        names = self.bot.models.model_names()
        return [app_commands.Choice(name=n, value=n) for n in names if current.lower() in n.lower()][:25]

    @app_commands.command(name="reset", description="Go back to the inherited value of a setting (or all)")
    @app_commands.describe(
        setting="Which setting to reset", scope="This channel/thread, or the server's default"
    )
    async def reset(
        self,
        interaction: discord.Interaction,
        setting: Literal[
            "all", "model", "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "persona"
        ] = "all",
        scope: ScopeChoice = "channel",
    ) -> None:
        target, target_id = _scope(interaction, scope)
        await self._require_moderator(interaction, target)
        keys = None if setting == "all" else [setting]
        removed = await self.bot.store.reset(target, target_id, keys, actor_id=interaction.user.id)
        where = "the server default" if target == "guild" else f"<#{target_id}>"
        if not removed:
            await replies.send_long(
                interaction, f"Nothing to reset: {where} sets no such value.", ephemeral=True
            )
            return
        await replies.send_long(
            interaction,
            f"⚙️ {interaction.user.mention} reset {', '.join(removed)} for {where}; inherited values apply.",
        )

    @app_commands.command(name="moderator-role", description="Set the role whose members may change settings")
    @app_commands.describe(role="The moderator role; leave empty to clear it")
    async def moderator_role(
        self, interaction: discord.Interaction, role: discord.Role | None = None
    ) -> None:
        guild_id = checks.require_server(interaction)
        if not interaction.permissions.manage_guild:
            raise app_commands.CheckFailure("Setting the moderator role needs the Manage Server permission.")
        await self.bot.store.set_meta(f"moderator_role:{guild_id}", str(role.id) if role else "")
        text = (
            f"🛡️ Members of {role.mention} may now change settings." if role else "🛡️ Moderator role cleared."
        )
        await replies.send_long(interaction, text)


async def setup(bot: Transcord) -> None:
    await bot.add_cog(Settings(bot))
    await bot.add_cog(Config(bot))
