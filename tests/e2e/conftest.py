"""E2E fixtures: the loopback server, and the real bot with the tiny real models on a temp SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import discord
import pytest

import app as bot_module
from loopback import LoopbackDiscord
from tests.e2e.harness import BotRunner, base_env
from tests.fixtures import tiny_models

TOKEN = "e2e.S3cret-Token.do-not-log"


LONG_CONTEXT = 1024


@pytest.fixture(scope="session")
def long_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 recipe with a 1024-token context: room for long, multi-message replies.

    The shared tiny GPT-2 has 256 positions, too few for a continuation past Discord's
    2000 characters or a stream lasting several edit intervals.
    """
    return tiny_models.build_tiny_gpt2(tmp_path_factory.mktemp("long-gpt2"), context=LONG_CONTEXT)


@pytest.fixture
async def server() -> AsyncIterator[LoopbackDiscord]:
    async with LoopbackDiscord(token=TOKEN) as running:
        yield running
        # Every REST call the bot made is one Discord would accept (its published spec).
        assert not running.contract_violations, [v.describe() for v in running.contract_violations]


@pytest.fixture
def env(
    server: LoopbackDiscord, tmp_path: Path, tiny_gpt2_dir: Path, tiny_bert_dir: Path, long_gpt2_dir: Path
) -> dict[str, str]:
    """The bot's settings: ``tiny`` (GPT-2, the default), ``bert`` and ``long`` (GPT-2, 1024
    positions) in the catalog, no FILL_MODEL."""
    models = {"tiny": tiny_gpt2_dir, "bert": tiny_bert_dir, "long": long_gpt2_dir}
    return base_env(server, tmp_path / "data" / "transcord.sqlite3", models)


@pytest.fixture
async def runner(server: LoopbackDiscord, env: dict[str, str]) -> AsyncIterator[BotRunner]:
    """Not started: a test starts it with the settings it needs (``await runner.start(KEY=value)``)."""
    running = BotRunner(server, env)
    try:
        yield running
    finally:
        await running.aclose()


@pytest.fixture
async def transcord(runner: BotRunner) -> bot_module.Transcord:
    """The bot, started with the default test settings."""
    return await runner.start()


@pytest.fixture(autouse=True)
def discord_addresses_restored() -> Iterator[None]:
    """Every test must leave discord.py pointed where it found it."""
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    yield
    assert (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == before
