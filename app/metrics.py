"""Prometheus metrics and health checks on ``METRICS_PORT``: ``/metrics``, ``/healthz``, ``/readyz``.

A small aiohttp server on the bot's own event loop, started and stopped by :class:`app.root.App`
(only when ``METRICS_PORT`` is set). Nothing in ``core/`` or ``cogs/`` knows about it; it watches
from the outside, at three points the app owns:

- the model service the app hands the bot, wrapped (:class:`ObservedService`): every generation
  that ends is counted with its tokens, time to first token and duration, whichever command (or
  button, or mention) asked for it;
- discord.py's own events on the bot: a slash command that completed (``app_command_completion``)
  or failed (the command tree's ``on_error``, chained) is counted by command and outcome;
- at each scrape, the service's ``status()`` (queue, slots, loaded models), the gateway
  connections and a cheap read of the database, so gauges are never stale and cost nothing between
  scrapes.

Liveness (``/healthz``) is the event loop answering: the server runs on it, so a loop blocked by
a stuck call fails it. Readiness (``/readyz``) is connected to Discord with the default model up.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, cast

import discord
from aiohttp import web
from discord import app_commands
from discord.ext import commands
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from app.failures import FIX_SETTINGS, StartFailure
from core.config import BotConfig
from core.transcord import Transcord
from domain.errors import UserFacingError
from model_service import GenerationRequest, GenerationResult, ModelServiceAPI, ServiceError, TextStream
from model_service.api import TaskStream
from model_service.errors import ValidationError
from model_service.types import ModelInfo, RewriteRequest
from storage.types import StoreUnavailable

log = logging.getLogger("transcord.metrics")

# Seconds: a tiny model answers in tens of milliseconds, a long reply on a busy CPU takes minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
DATABASE_PROBE_TIMEOUT_S = 2.0  # a scrape must stay fast while the database is down
PROBE_KEY = "metrics:probe"  # a meta key nobody writes: reading it is one indexed lookup


class Metrics:
    """The metrics of one :class:`~app.root.App`, in a registry of its own (a process may run
    several apps one after another, as the tests do), and the server that shows them."""

    def __init__(self, config: BotConfig) -> None:
        self.config = config
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "transcord_requests",
            "Slash commands handled, by command and outcome (ok, refused, invalid, overloaded, "
            "timeout, model_unavailable, internal, database_unavailable, error)",
            ["command", "outcome"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "transcord_request_duration_seconds",
            "From a slash command's arrival at Discord to the end of its handling",
            ["command"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.generations = Counter(
            "transcord_generations",
            "Generations that ended, by model and how (length, eos, stop, timeout, cancelled) or "
            "why they failed (an error kind)",
            ["model", "outcome"],
            registry=registry,
        )
        self.tokens = Counter(
            "transcord_generated_tokens", "Tokens generated, by model", ["model"], registry=registry
        )
        self.first_token_seconds = Histogram(
            "transcord_time_to_first_token_seconds",
            "From a generation's admission (queue wait included) to its first text",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.generation_seconds = Histogram(
            "transcord_generation_duration_seconds",
            "From a generation's admission (queue wait included) to its end",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.database_up = 0  # set by the probe that runs before each scrape
        ProcessCollector(registry=registry)  # memory, CPU, open files of this process
        registry.register(_Live(self))
        self.service: ModelServiceAPI | None = None
        self.bot: Transcord | None = None
        self._runner: web.AppRunner | None = None

    # -- what the app hands over -----------------------------------------------------------------

    def observe(self, service: ModelServiceAPI) -> ModelServiceAPI:
        """The service to give the bot: the same one, with each generation recorded as it ends."""
        self.service = service
        return cast(ModelServiceAPI, ObservedService(service, self))

    def attach(self, bot: Transcord) -> None:
        """Count slash commands by outcome, from discord.py's events (the bot is not changed)."""
        self.bot = bot
        bot.add_listener(self._completed, "on_app_command_completion")
        handle = bot.tree.on_error

        async def on_error(
            interaction: discord.Interaction[Any], error: app_commands.AppCommandError
        ) -> None:
            self._count(interaction, outcome_of(error))
            await handle(interaction, error)

        bot.tree.error(on_error)

    async def _completed(self, interaction: discord.Interaction, command: object) -> None:
        self._count(interaction, "ok")

    def _count(self, interaction: discord.Interaction, outcome: str) -> None:
        command = interaction.command.qualified_name if interaction.command is not None else "unknown"
        self.requests.labels(command, outcome).inc()
        # The interaction's id says when Discord received it: the time a member waited.
        waited = (discord.utils.utcnow() - interaction.created_at).total_seconds()
        self.request_seconds.labels(command).observe(max(waited, 0.0))

    def record(self, result: GenerationResult) -> None:
        """One generation that ended (stopped ones included): its tokens and timings."""
        model = result.model
        self.generations.labels(model, result.finish_reason).inc()
        self.tokens.labels(model).inc(result.generated_tokens)
        self.generation_seconds.labels(model).observe(result.elapsed_s)
        if result.first_token_s is not None:
            self.first_token_seconds.labels(model).observe(result.first_token_s)

    def failed(self, model: str, error: BaseException) -> None:
        """A generation refused at admission or broken off by an error."""
        kind = error.kind.value if isinstance(error, ServiceError) else "error"
        self.generations.labels(model, kind).inc()

    # -- health ----------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        """(ready, why not): connected to Discord, every shard of this process up, the default
        model loaded (or answering, for a server's URL), and not shutting down."""
        bot, service = self.bot, self.service
        if service is None or bot is None:
            return False, "starting: loading the models and opening the database"
        if bot.models.closing or bot.is_closed():
            return False, "shutting down"
        if not bot.is_ready():
            return False, "not connected to Discord yet"
        down = [shard for shard, connected, _ in shard_states(bot, self.config) if not connected]
        if down:
            return False, f"shard {', '.join(down)} disconnected from Discord (reconnecting)"
        default = self.config.service.default_model
        if self.config.service.preload and not engines_up(service, self.config).get(default, False):
            return False, f"the default model `{default}` is not loaded or not answering"
        return True, "ready"

    async def probe_database(self) -> None:
        """A cheap read of the store (one meta key), bounded in time: 1 if it answered."""
        bot = self.bot
        if bot is None:
            self.database_up = 0
            return
        try:
            await asyncio.wait_for(bot.store.meta.get_meta(PROBE_KEY), DATABASE_PROBE_TIMEOUT_S)
        except Exception as exc:  # down, timed out, locked: all read "not up"
            if self.database_up:
                log.warning(
                    "the database did not answer the metrics probe: %s", str(exc) or type(exc).__name__
                )
            self.database_up = 0
        else:
            self.database_up = 1

    # -- the server ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on METRICS_HOST:METRICS_PORT; a port that is taken is a setting to change."""
        assert self.config.metrics_port is not None
        server = web.Application()
        server.router.add_get("/metrics", self._metrics)
        server.router.add_get("/healthz", self._healthz)
        server.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(server, access_log=None)
        await runner.setup()
        host, port = self.config.metrics_host, self.config.metrics_port
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise StartFailure(
                f"could not serve metrics on {host}:{port} ({exc.strerror or exc}); "
                "check METRICS_PORT and METRICS_HOST (another process may use that port)",
                exit_code=FIX_SETTINGS,
            ) from exc
        self._runner = runner
        log.info("metrics on http://%s:%d/metrics (health: /healthz, /readyz)", host, port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.probe_database()
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, reason = self.readiness()
        return web.json_response({"ready": ready, "reason": reason}, status=200 if ready else 503)


def outcome_of(error: BaseException) -> str:
    """A failed slash command's outcome label: a few fixed words, so the series stay few."""
    original = getattr(error, "original", None) or error  # CommandInvokeError wraps the raised one
    if isinstance(original, UserFacingError) or isinstance(error, app_commands.CheckFailure):
        return "refused"  # locked, cooling down, out of quota, no rights...
    if isinstance(original, ValidationError):
        return "invalid"
    if isinstance(original, ServiceError):
        return original.kind.value
    if isinstance(original, StoreUnavailable):
        return "database_unavailable"
    return "error"


def shard_states(bot: Transcord, config: BotConfig) -> list[tuple[str, bool, float]]:
    """(shard id, connected, gateway latency in s) for each shard this process runs; an unsharded
    bot is shard 0. Connected: its websocket is open (it is not while discord.py reconnects)."""
    closed = bot.is_closed()
    if isinstance(bot, commands.AutoShardedBot):
        states = []
        for shard_id in config.shard_ids:
            info = bot.get_shard(shard_id)
            connected = info is not None and not closed and not info.is_closed()
            states.append((str(shard_id), connected, info.latency if info is not None else math.nan))
        return states
    ws = bot.ws
    return [("0", ws is not None and ws.open and not closed, bot.latency)]


def engines_up(service: ModelServiceAPI, config: BotConfig) -> dict[str, bool]:
    """Each catalog model: loaded (local engines) or answering (a server's URL)."""
    loaded = {info.name: info for info in service.status().models}
    return {name: name in loaded and _answering(loaded[name]) for name in config.service.models}


def _answering(info: ModelInfo) -> bool:
    # A remote model is listed whether its server answers or not; its task line says which
    # (model_service/engines/remote_models.py). Local models are listed once loaded.
    return not info.task.startswith(("unreachable", "not reached"))


class _Live(Collector):
    """The gauges, read at each scrape from the service, the bot and the last database probe."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        metrics, config = self.metrics, self.metrics.config
        service, bot = metrics.service, metrics.bot
        status = service.status() if service is not None else None

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, value=value)

        yield gauge(
            "transcord_queue_depth", "Requests admitted and not yet finished", _of(status, "queue_depth")
        )
        yield gauge(
            "transcord_queue_limit",
            "Requests admitted at once at most (QUEUE_LIMIT)",
            config.service.queue_limit,
        )
        yield gauge("transcord_queue_waiting", "Generations waiting for a slot", _of(status, "waiting"))
        yield gauge(
            "transcord_queue_oldest_wait_seconds",
            "How long the generation waiting longest has waited",
            _of(status, "oldest_wait_s"),
        )
        yield gauge("transcord_slots_in_use", "Generations decoding now", _of(status, "running"))
        yield gauge(
            "transcord_slots",
            "Generations decoded together at most, per model (MAX_BATCH_SIZE)",
            config.service.max_batch_size,
        )
        yield gauge("transcord_fill_running", "Fill-mask requests being filled now", _of(status, "filling"))
        up = GaugeMetricFamily(
            "transcord_engine_up", "1: the model is loaded (or its server answers)", labels=["model"]
        )
        states = (
            engines_up(service, config)
            if service is not None
            else dict.fromkeys(config.service.models, False)
        )
        for name, answering in states.items():
            up.add_metric([name], float(answering))
        yield up
        yield gauge(
            "transcord_database_up", "1: the database answered the last scrape's read", metrics.database_up
        )
        connected = GaugeMetricFamily(
            "transcord_shard_connected", "1: the shard's gateway connection is open", labels=["shard"]
        )
        latency = GaugeMetricFamily(
            "transcord_shard_latency_seconds", "Gateway heartbeat latency", labels=["shard"]
        )
        for shard, is_connected, seconds in _shards(bot, config):
            connected.add_metric([shard], float(is_connected))
            if math.isfinite(seconds):
                latency.add_metric([shard], seconds)
        yield connected
        yield latency
        yield gauge("transcord_ready", "1: /readyz answers 200", float(metrics.readiness()[0]))


def _of(status: object, field: str) -> float:
    return float(getattr(status, field)) if status is not None else 0.0


def _shards(bot: Transcord | None, config: BotConfig) -> Iterator[tuple[str, bool, float]]:
    if bot is not None:
        yield from shard_states(bot, config)
        return
    for shard_id in config.shard_ids or (0,):  # not built yet: every shard down
        yield str(shard_id), False, math.nan


class ObservedService:
    """The model service as the bot sees it with metrics on: the service's own methods, with each
    generation recorded as it ends. Looked up at each call, so a test that swaps a method of the
    service itself still reaches it."""

    def __init__(self, service: ModelServiceAPI, metrics: Metrics) -> None:
        self._service = service
        self._metrics = metrics

    def stream(self, request: GenerationRequest, *, timeout: float | None = None) -> TextStream:
        model = request.model or self._metrics.config.service.default_model
        try:
            stream = self._service.stream(request, timeout=timeout)
        except ServiceError as exc:  # refused at admission: busy, unknown model...
            self._metrics.failed(model, exc)
            raise
        return ObservedStream(stream, model, self._metrics)

    async def generate(self, request: GenerationRequest, *, timeout: float | None = None) -> GenerationResult:
        try:
            result = await self._service.generate(request, timeout=timeout)
        except ServiceError as exc:
            self._metrics.failed(request.model or self._metrics.config.service.default_model, exc)
            raise
        self._metrics.record(result)
        return result

    async def rewrite(self, request: RewriteRequest) -> TaskStream:
        stream = await self._service.rewrite(request)
        return cast(TaskStream, ObservedStream(stream, stream.model, self._metrics))

    def __getattr__(self, name: str) -> Any:
        # The rest of ModelServiceAPI generates nothing: the service's own methods, unchanged.
        return getattr(self._service, name)


class ObservedStream:
    """A stream that records its result once, when it ends: iterated to the end, or closed (a Stop
    button closes it from another task; the reader then ends with ``cancelled``)."""

    def __init__(self, inner: TextStream, model: str, metrics: Metrics) -> None:
        self._inner = inner
        self._model = model
        self._metrics = metrics
        self._iterator: AsyncIterator[str] | None = None
        self._recorded = False

    @property
    def result(self) -> GenerationResult | None:
        return self._inner.result

    def __aiter__(self) -> AsyncIterator[str]:
        self._iterator = self._inner.__aiter__()
        return self

    async def __anext__(self) -> str:
        assert self._iterator is not None, "iterate the stream with `async for`"
        try:
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            self._ended()
            raise
        except ServiceError as exc:
            self._ended(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._ended()

    def queue_place(self) -> tuple[int, float] | None:
        return self._inner.queue_place()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # a task stream's model, method and target

    def _ended(self, error: ServiceError | None = None) -> None:
        if self._recorded:
            return
        if error is not None:
            self._recorded = True
            self._metrics.failed(self._model, error)
        elif self._inner.result is not None:
            self._recorded = True
            self._metrics.record(self._inner.result)
