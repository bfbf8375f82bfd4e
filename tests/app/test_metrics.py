"""Metrics and health on METRICS_PORT (app/metrics.py): the settings, what the service wrapper and
the probes record, and the real App over the loopback Discord server with the tiny test model."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

import app as bot_module
from app.environment import ConfigError, load_config
from app.metrics import Metrics, engines_up, outcome_of
from core.config import BotConfig
from domain.errors import UserFacingError
from loopback import LoopbackDiscord
from model_service import GenerationRequest, OverloadedError
from model_service.config import ServiceConfig
from model_service.errors import RequestTimeoutError, ValidationError
from model_service.types import ModelInfo
from storage.types import StoreUnavailable
from tests.cogs.fakes import FakeService
from tests.e2e.harness import base_env, has_footer, run

TOKEN = "metrics.S3cret-Token.do-not-log"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- settings ----------------------------------------------------------------------------------


def test_metrics_are_off_unless_a_port_is_set_and_listen_on_the_loopback() -> None:
    assert load_config({}).metrics_port is None
    config = load_config({"METRICS_PORT": "9464"})
    assert (config.metrics_port, config.metrics_host) == (9464, "127.0.0.1")
    assert load_config({"METRICS_PORT": "9464", "METRICS_HOST": "0.0.0.0"}).metrics_host == "0.0.0.0"
    assert load_config({"METRICS_PORT": " ", "METRICS_HOST": ""}) == load_config({})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http", "METRICS_PORT must be a whole number, got 'http'"),
        ("0", "METRICS_PORT must be in [1, 65535], got 0"),
        ("70000", "METRICS_PORT must be in [1, 65535], got 70000"),
    ],
)
def test_a_bad_metrics_port_names_the_key(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config({"METRICS_PORT": value})


# -- the service wrapper, the outcomes, the engines ----------------------------------------------


def fake_metrics(models: tuple[str, ...] = ("fake", "other")) -> tuple[Metrics, FakeService]:
    config = BotConfig(
        service=ServiceConfig(models=dict.fromkeys(models, "x"), default_model=models[0]), metrics_port=1
    )
    metrics, service = Metrics(config), FakeService(models)
    return metrics, service


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_stream_is_recorded_once_when_it_ends() -> None:
    metrics, service = fake_metrics()
    service.script.deltas = ["a", "b", "c"]
    observed = metrics.observe(service)
    stream = observed.stream(GenerationRequest("hi"))
    assert [delta async for delta in stream] == ["a", "b", "c"]
    await stream.aclose()  # closing after the end counts nothing twice
    assert stream.result is not None and stream.result.generated_tokens == 3
    assert sample(metrics, "transcord_generated_tokens_total", model="fake") == 3
    assert sample(metrics, "transcord_generations_total", model="fake", outcome="length") == 1
    assert sample(metrics, "transcord_generation_duration_seconds_count", model="fake") == 1
    assert service.open_streams == 0

    result = await observed.generate(GenerationRequest("again", model="other"))
    assert sample(metrics, "transcord_generated_tokens_total", model="other") == result.generated_tokens


async def test_refusals_and_errors_are_counted_by_kind() -> None:
    metrics, service = fake_metrics()
    observed = metrics.observe(service)
    service.refuse = OverloadedError("busy", retry_after=3)
    with pytest.raises(OverloadedError):
        observed.stream(GenerationRequest("hi"))
    service.refuse = None
    service.script.error, service.script.error_after = RequestTimeoutError("late"), 1
    stream = observed.stream(GenerationRequest("hi", model="other"))
    with pytest.raises(RequestTimeoutError):
        async for _ in stream:
            pass
    await stream.aclose()
    assert sample(metrics, "transcord_generations_total", model="fake", outcome="overloaded") == 1
    assert sample(metrics, "transcord_generations_total", model="other", outcome="timeout") == 1
    assert sample(metrics, "transcord_generated_tokens_total", model="other") == 0


async def test_a_rewrite_stream_keeps_its_model_and_method() -> None:
    from model_service.types import RewriteRequest

    metrics, service = fake_metrics()
    stream = await metrics.observe(service).rewrite(RewriteRequest("summarize", "A long text to shorten."))
    assert (stream.model, stream.method) == ("fake", "seq2seq")
    async for _ in stream:
        pass
    assert sample(metrics, "transcord_generated_tokens_total", model="fake") > 0


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (UserFacingError("locked"), "refused"),
        (ValidationError("`top_p` must be in (0, 1]"), "invalid"),
        (OverloadedError("busy"), "overloaded"),
        (StoreUnavailable("down"), "database_unavailable"),
        (RuntimeError("boom"), "error"),
    ],
)
def test_a_failed_commands_outcome_is_one_of_a_few_words(error: Exception, outcome: str) -> None:
    from discord import app_commands

    wrapped = app_commands.CommandInvokeError.__new__(app_commands.CommandInvokeError)
    wrapped.original = error
    assert outcome_of(wrapped) == outcome == outcome_of(error)


def test_a_remote_model_is_up_only_while_its_server_answers() -> None:
    metrics, service = fake_metrics(("fake", "remote", "cold"))
    answering = ModelInfo("fake", "x", "generate", "cpu", "float32", 1)
    down = ModelInfo("remote", "x", "unreachable (connection refused, 3 s ago): …", "http://h/v1", "m", 0)
    status = dataclasses.replace(service.status(), models=(answering, down))
    service.status = lambda: status  # type: ignore[method-assign]
    assert engines_up(service, metrics.config) == {"fake": True, "remote": False, "cold": False}


async def test_a_port_in_use_is_a_setting_to_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = dataclasses.replace(fake_metrics()[0].config, metrics_port=port)
        metrics = Metrics(config)
        with pytest.raises(bot_module.StartFailure) as failure:
            await metrics.start()
    assert failure.value.exit_code == 2
    assert f"127.0.0.1:{port}" in failure.value.message and "METRICS_PORT" in failure.value.message


# -- the real bot --------------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[LoopbackDiscord]:
    async with LoopbackDiscord(token=TOKEN) as running:
        yield running
        assert not running.contract_violations, [v.describe() for v in running.contract_violations]


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        return response.status, await response.text()


def value(text: str, name: str, **labels: str) -> float:
    """A sample's value in the Prometheus text, 0 when absent (a counter not yet touched)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    series = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(180)
async def test_the_real_bot_serves_health_readiness_and_metrics(
    server: LoopbackDiscord, tmp_path: Path, tiny_gpt2_dir: Path
) -> None:
    port = free_port()
    env = base_env(server, tmp_path / "transcord.sqlite3", {"tiny": tiny_gpt2_dir})
    config = load_config({**env, "METRICS_PORT": str(port)})
    service = await bot_module.build_service(config)
    app = bot_module.App(config, service=service, guild_ready_timeout=0.05)
    try:
        await app.open()
        # Up, but not connected yet: alive, not ready, and it says why.
        assert (await get(port, "/healthz"))[0] == 200
        status, body = await get(port, "/readyz")
        assert status == 503 and "not connected to Discord yet" in body

        task = await app.connect(ready_timeout=15.0)
        server.watch(task)

        async def ready() -> bool:
            return (await get(port, "/readyz"))[0] == 200

        await eventually(ready)
        assert (await get(port, "/healthz"))[0] == 200
        before = (await get(port, "/metrics"))[1]

        reply = await run(
            server, "generate", {"prompt": "Once upon a time", "max_new_tokens": 4}, until=has_footer
        )
        match = re.search(r"\n-# (\d+) tokens · ", "".join(m.content for m in reply.messages))
        assert match, reply.summary()
        tokens = int(match.group(1))
        assert 1 <= tokens <= 4

        async def counted() -> bool:
            after = (await get(port, "/metrics"))[1]
            return value(after, "transcord_requests_total", command="generate", outcome="ok") == 1

        await eventually(counted)
        status, after = await get(port, "/metrics")
        assert status == 200
        moved = value(after, "transcord_generated_tokens_total", model="tiny") - value(
            before, "transcord_generated_tokens_total", model="tiny"
        )
        assert moved == tokens
        assert value(before, "transcord_requests_total", command="generate", outcome="ok") == 0
        for series in (
            "transcord_queue_depth",
            "transcord_queue_waiting",
            "transcord_queue_oldest_wait_seconds",
            "transcord_slots_in_use",
            "transcord_time_to_first_token_seconds_bucket",
            "transcord_generation_duration_seconds_bucket",
            "transcord_request_duration_seconds_bucket",
        ):
            assert re.search(rf"^{series}[{{ ]", after, re.MULTILINE), series
        assert value(after, "transcord_generation_duration_seconds_count", model="tiny") == 1
        assert value(after, "transcord_request_duration_seconds_count", command="generate") == 1
        assert value(after, "transcord_engine_up", model="tiny") == 1
        assert value(after, "transcord_database_up") == 1
        assert value(after, "transcord_shard_connected", shard="0") == 1
        assert value(after, "transcord_ready") == 1
        assert TOKEN not in after

        await app.shutdown()
        status, body = await get(port, "/readyz")
        assert status == 503 and "shutting down" in body
    finally:
        if app.task is not None:
            server.unwatch(app.task)
        await app.aclose()
        await bot_module.close_service(service)
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(port, "/healthz")  # closed with the app


@pytest.mark.timeout(60)
async def test_each_shard_of_a_sharded_bot_is_watched(tmp_path: Path) -> None:
    """Two shards in one process (a stand-in service: no model needed): one series each, and
    ready once both are connected."""
    port = free_port()
    async with LoopbackDiscord(token=TOKEN, shard_count=2, max_concurrency=2) as server:
        env = base_env(server, tmp_path / "transcord.sqlite3", {"fake": "x"})
        config = load_config({**env, "SHARD_COUNT": "2", "METRICS_PORT": str(port)})
        app = bot_module.App(config, service=FakeService(("fake",)), guild_ready_timeout=0.05)
        try:
            await app.open()
            text = (await get(port, "/metrics"))[1]
            assert value(text, "transcord_shard_connected", shard="1") == 0
            server.watch(await app.connect(ready_timeout=15.0))

            async def ready() -> bool:
                return (await get(port, "/readyz"))[0] == 200

            await eventually(ready)
            text = (await get(port, "/metrics"))[1]
            assert [value(text, "transcord_shard_connected", shard=s) for s in ("0", "1")] == [1, 1]
        finally:
            if app.task is not None:
                server.unwatch(app.task)
            await app.aclose()
        assert not server.contract_violations
