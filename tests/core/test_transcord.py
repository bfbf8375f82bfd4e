"""bot.py: refuses a bad configuration before loading anything heavy; one broken feature spares the rest."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import discord
import pytest

from loopback import LoopbackDiscord
from model_service import ModelServiceAPI
from tests.cogs.fakes import FakeService
from tests.e2e.harness import BotRunner, base_env, has_footer, run

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "MTAxOTk.subprocess-secret.token"
CORE = ("cogs.generate", "cogs.chat", "cogs.fill_mask", "cogs.settings", "cogs.status")


def run_bot_py(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", str(tmp_path)), **env}
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), *args],
        cwd=tmp_path,  # no .env here
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_malformed_setting_exits_2_naming_the_key(tmp_path: Path) -> None:
    started = time.monotonic()
    done = run_bot_py(tmp_path, {"DISCORD_TOKEN": TOKEN, "QUEUE_LIMIT": "lots"})
    assert done.returncode == 2, done.stderr
    assert done.stderr == "configuration error: QUEUE_LIMIT must be a whole number, got 'lots'\n"
    assert TOKEN not in done.stdout + done.stderr
    assert time.monotonic() - started < 30  # it stops before torch or any model is loaded


def test_the_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("QUEUE_LIMIT=lots\nMODEL_DEVICE=tpu\n")
    from_file = run_bot_py(tmp_path, {}, "--env-file", str(env_file))
    assert from_file.returncode == 2
    assert from_file.stderr.startswith("configuration error: MODEL_DEVICE must be one of")
    overridden = run_bot_py(tmp_path, {"MODEL_DEVICE": "cpu"}, "--env-file", str(env_file))
    assert overridden.returncode == 2
    # QUEUE_LIMIT=lots from the file is still read; the environment fixed MODEL_DEVICE.
    assert overridden.stderr.startswith("configuration error: QUEUE_LIMIT"), overridden.stderr


def test_the_bot_and_its_cogs_import_without_torch(tmp_path: Path) -> None:
    code = (
        "import sys, bot, cogs.generate, cogs.chat, cogs.fill_mask, cogs.settings, cogs.status, core.replies; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


# -- a feature that fails to load ----------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[LoopbackDiscord]:
    async with LoopbackDiscord() as running:
        yield running
        # Every REST call the bot made is one Discord would accept (its published spec).
        assert not running.contract_violations, [v.describe() for v in running.contract_violations]


@pytest.fixture(autouse=True)
def discord_addresses_restored() -> Iterator[None]:
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    yield
    assert (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == before


@pytest.fixture
async def runner(server: LoopbackDiscord, tmp_path: Path) -> AsyncIterator[BotRunner]:
    fake = FakeService()

    async def factory(config: object) -> ModelServiceAPI:
        return fake

    running = BotRunner(
        server, base_env(server, tmp_path / "t.sqlite3", {"fake": "x"}), service_factory=factory
    )
    try:
        yield running
    finally:
        await running.aclose()


async def test_a_feature_that_fails_to_load_is_logged_and_the_rest_still_work(
    server: LoopbackDiscord,
    runner: BotRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "transcord_broken_feature.py").write_text(
        "async def setup(bot):\n    raise RuntimeError('this feature is broken')\n"
    )
    monkeypatch.syspath_prepend(str(plugins))
    transcord = await runner.start(extensions=(*CORE, "cogs.does_not_exist", "transcord_broken_feature"))

    assert set(transcord.failed_extensions) == {"cogs.does_not_exist", "transcord_broken_feature"}
    failures = {r.getMessage(): r for r in caplog.records if r.levelno >= logging.ERROR}
    for name in ("cogs.does_not_exist", "transcord_broken_feature"):
        record = failures[f"could not load {name}; the other commands still work"]
        assert record.exc_info is not None  # with its traceback
    assert "this feature is broken" in caplog.text

    assert {"generate", "chat", "fill", "settings", "status", "help"} <= {
        c["name"] for c in server.synced_commands()
    }
    status = await run(server, "status")
    assert (status.content or "").endswith(
        "⚠️ Features that failed to load: cogs.does_not_exist, transcord_broken_feature"
    )
    reply = await run(server, "generate", {"prompt": "Still here?"}, until=has_footer)
    assert (reply.content or "").startswith("**Still here?**Hello there.")


async def test_a_command_the_bot_no_longer_has_gets_an_explanation(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(extensions=CORE)
    reply = await run(server, "retired", strict=False)
    assert reply.ephemeral
    assert reply.content == "❓ This command no longer exists; your Discord client may show an outdated list."
