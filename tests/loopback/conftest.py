from __future__ import annotations

from collections.abc import AsyncIterator

import discord
import pytest

from loopback import LoopbackDiscord
from tests.fixtures.loopback_bot import run_bot
from tests.loopback.demo_bot import DemoBot


@pytest.fixture
async def server() -> AsyncIterator[LoopbackDiscord]:
    async with LoopbackDiscord() as running:
        yield running


@pytest.fixture
async def bot(server: LoopbackDiscord) -> AsyncIterator[DemoBot]:
    assert server.guild is not None
    demo = DemoBot(guild_id=server.guild.id)
    async with run_bot(demo, server):
        yield demo


@pytest.fixture(autouse=True)
def discord_addresses_restored() -> object:
    """Every test must leave discord.py pointed where it found it."""
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    yield
    assert (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == before
