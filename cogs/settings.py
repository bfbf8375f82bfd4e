"""/settings show: what this channel's model commands use; /config: moderators change it.

Two groups because Discord hides (``default_permissions``) whole top-level commands only: members
see ``/settings``, moderators also see ``/config``. Every ``/config`` use is checked here too.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core import checks, render, replies
from core.options import choice_options, matching_choices, name_options, param_options
from domain.settings import CHANNEL_PARAMS, CHOICE_SETTINGS, SETTING_KEYS, TASK_MODEL_SETTINGS, ResetChoice
from model_service.types import MAX_SYSTEM_PROMPT_CHARS
from storage import Scope as StoreScope

if TYPE_CHECKING:
    from core.transcord import Transcord


class Scope(enum.Enum):
    """Where a change applies (an Enum: discord.py refuses any other value on arrival)."""

    channel = "channel"
    server = "server"


SOURCE_LABELS = {
    "thread": "this thread",
    "channel": "channel",
    "guild": "server default",
    "default": "bot default",
}


def _scope(interaction: discord.Interaction, choice: Scope) -> tuple[StoreScope, int]:
    guild_id = checks.require_server(interaction)
    if choice is Scope.server:
        return "guild", guild_id
    return "channel", interaction.channel_id or 0


NO_CONTENT_INTENT = (
    "`listen: all` needs Discord's Message Content intent, and this bot runs without it. Its operator "
    "turns it on in the developer portal (Bot → Privileged Gateway Intents) and sets "
    "`MESSAGE_CONTENT_INTENT=true`. Meanwhile `listen: mentions` answers every message that @mentions me."
)


def _format_value(key: str, value: object) -> str:
    if key == "persona":
        text = str(value or "")
        return f"“{render.escape(text[:200])}{'…' if len(text) > 200 else ''}”" if text else "*(none)*"
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
        explained = await self.bot.store.settings.explain(
            interaction.guild_id, interaction.channel_id or 0, parent_id
        )
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

    async def _require_moderator(self, interaction: discord.Interaction, scope: StoreScope) -> None:
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
        persona="The system prompt /chat answers with (empty text clears it)",
    )
    @name_options(TASK_MODEL_SETTINGS)
    @choice_options(*CHOICE_SETTINGS)
    @param_options(*CHANNEL_PARAMS)
    async def set_(
        self,
        interaction: discord.Interaction,
        scope: Scope = Scope.channel,
        model: str | None = None,
        persona: app_commands.Range[str, 0, MAX_SYSTEM_PROMPT_CHARS] | None = None,
        **options: object,
    ) -> None:
        target, target_id = _scope(interaction, scope)
        await self._require_moderator(interaction, target)
        given = {"model": model, **options, "persona": persona}
        values = {k: v for k, v in given.items() if v is not None}
        if not values:
            raise replies.UserFacingError("Give at least one setting to change, e.g. `temperature: 0.3`.")
        if values.get("listen") == "all" and not self.bot.intents.message_content:
            raise replies.UserFacingError(NO_CONTENT_INTENT)
        saved = await self.bot.store.settings.set_values(
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
        return matching_choices(self.bot.models.model_names(), current)

    for _key in TASK_MODEL_SETTINGS:  # each task's model completes from the catalog too
        set_.autocomplete(_key)(_model_names)
    del _key

    @app_commands.command(name="reset", description="Go back to the inherited value of a setting (or all)")
    @app_commands.describe(
        setting="Which setting to reset", scope="This channel/thread, or the server's default"
    )
    async def reset(
        self,
        interaction: discord.Interaction,
        setting: ResetChoice = ResetChoice["all"],
        scope: Scope = Scope.channel,
    ) -> None:
        target, target_id = _scope(interaction, scope)
        await self._require_moderator(interaction, target)
        keys = None if setting is ResetChoice["all"] else [setting.value]
        removed = await self.bot.store.settings.reset(target, target_id, keys, actor_id=interaction.user.id)
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
        await self.bot.store.meta.set_meta(f"moderator_role:{guild_id}", str(role.id) if role else "")
        text = (
            f"🛡️ Members of {role.mention} may now change settings." if role else "🛡️ Moderator role cleared."
        )
        await replies.send_long(interaction, text)


async def setup(bot: Transcord) -> None:
    await bot.add_cog(Settings(bot))
    await bot.add_cog(Config(bot))
