"""Who may run what, decided on the server; cogs pair these with what Discord's client hides.

``app_commands.default_permissions`` and ``app_commands.guild_only`` on a command group only tell
Discord what to show; a client that ignores them (or a server admin who grants a command to
everyone in Server Settings -> Integrations) still reaches the bot. So each such group also
checks every use in its ``interaction_check`` with these. The UI hides, the server decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

if TYPE_CHECKING:
    from core.transcord import Transcord

IN_SERVERS_ONLY = "This command works in server channels only."
NOT_A_MODERATOR = "This command needs Manage Channels or the moderator role."


def require_server(interaction: discord.Interaction) -> int:
    """The guild id, or the refusal a member reads in a DM or a private channel."""
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage(IN_SERVERS_ONLY)
    return interaction.guild_id


async def require_moderator(interaction: discord.Interaction) -> None:
    require_server(interaction)
    bot: Transcord = interaction.client  # type: ignore[assignment]  # the client of this bot's interactions
    if not await bot.is_moderator(interaction):
        raise app_commands.CheckFailure(NOT_A_MODERATOR)
