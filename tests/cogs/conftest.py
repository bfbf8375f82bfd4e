"""Shared fixtures for the command tests: the real bot on the loopback server with the fake model service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import discord
import pytest

from loopback import LoopbackDiscord
from model_service import ModelServiceAPI
from tests.cogs.fakes import FakeService
from tests.e2e.harness import BotRunner, base_env


@pytest.fixture
async def server() -> AsyncIterator[LoopbackDiscord]:
    async with LoopbackDiscord() as running:
        yield running
        # Every REST call the bot made is one Discord would accept (its published spec).
        assert not running.contract_violations, [v.describe() for v in running.contract_violations]


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
async def runner(server: LoopbackDiscord, fake: FakeService, tmp_path: Path) -> AsyncIterator[BotRunner]:
    env = base_env(server, tmp_path / "transcord.sqlite3", {"fake": "unused", "other": "unused"})

    async def factory(config: object) -> ModelServiceAPI:
        return fake

    running = BotRunner(server, env, service_factory=factory)
    try:
        yield running
    finally:
        await running.aclose()


@pytest.fixture(autouse=True)
def discord_addresses_restored() -> Iterator[None]:
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    yield
    assert (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == before
