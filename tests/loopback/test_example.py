"""The usage example from the loopback package's hand-over note, kept runnable."""

from __future__ import annotations

import discord
from discord.ext import commands

from loopback import LoopbackDiscord
from tests.fixtures.loopback_bot import run_bot


async def test_usage_example() -> None:
    bot = commands.Bot(command_prefix=commands.when_mentioned, intents=discord.Intents.default())

    @bot.tree.command(description="Says hello")
    async def greet(interaction: discord.Interaction, name: str, times: int = 1) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.edit_original_response(content=" ".join([f"hi {name}"] * times))

    async with LoopbackDiscord() as server:
        assert server.moderator_role is not None and server.thread is not None
        mia = server.add_member("mia", [server.moderator_role])
        async with run_bot(bot, server):  # starts, waits for ready, watches the task, restores discord.py
            await bot.tree.sync()
            handle = await server.invoke(
                "greet", {"name": "Ada", "times": 2}, user=mia, channel=server.thread
            )
            await handle.wait_final(timeout=5)
        assert handle.deferred and handle.ephemeral and not handle.is_thinking
        assert [v.content for v in handle.edits] == ["hi Ada hi Ada"]
        assert handle.content == "hi Ada hi Ada"
        assert handle.payload["channel"]["parent_id"] == str(server.thread.parent_id)
