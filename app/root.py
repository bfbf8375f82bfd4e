"""The composition root: config -> model service -> store -> bot -> signals -> shutdown.

Discord mode (:meth:`App.run`), the playground, the e2e tests and the benchmark all start the bot
through :class:`App` and through nothing else, so the path a user takes is the path they test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

from app.failures import FIX_SETTINGS, TRY_AGAIN, StartFailure, explain
from app.metrics import Metrics
from core.config import BotConfig
from core.transcord import EXTENSIONS, Transcord, build_bot
from domain.settings import ChannelSettings
from model_service import ModelServiceAPI, ServiceError
from storage import SchemaError, Storage
from storage.connect import DatabaseUnavailable, open_postgres, open_sqlite

log = logging.getLogger("transcord")

ServiceFactory = Callable[[BotConfig], Awaitable[ModelServiceAPI]]


async def build_service(config: BotConfig) -> ModelServiceAPI:
    from model_service.service import ModelService  # torch loads here, not at import time

    service = ModelService(config.service)
    await service.start()
    return service


async def open_store(config: BotConfig) -> Storage:
    """Postgres when DATABASE_URL is set, else the SQLite file at DATABASE_PATH."""
    defaults = ChannelSettings(max_new_tokens=config.default_max_new_tokens)
    if config.database_url is None:
        config.database_path.parent.mkdir(parents=True, exist_ok=True)
        return await open_sqlite(config.database_path, defaults)
    try:
        return await open_postgres(config.database_url, defaults)
    except DatabaseUnavailable as exc:  # its message names the server, never the password
        if exc.transient:
            raise StartFailure(
                f"{exc}; check DATABASE_URL and that the server is up and reachable from here",
                exit_code=TRY_AGAIN,
            ) from exc
        raise StartFailure(f"{exc}; check DATABASE_URL", exit_code=FIX_SETTINGS) from exc
    except SchemaError as exc:
        raise StartFailure(
            f"could not open the database ({exc}); check DATABASE_URL", exit_code=FIX_SETTINGS
        ) from exc


class App:
    """One running bot, from its config to its last close.

    ``service`` lends an already running model service (tests keep one across restarts); the app
    then leaves it open. Otherwise ``service_factory`` builds one and the app closes it.
    """

    def __init__(
        self,
        config: BotConfig,
        *,
        service: ModelServiceAPI | None = None,
        service_factory: ServiceFactory = build_service,
        extensions: Sequence[str] = EXTENSIONS,
        guild_ready_timeout: float | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self.service_factory = service_factory
        self.extensions = tuple(extensions)
        self.guild_ready_timeout = guild_ready_timeout
        self.bot: Transcord | None = None
        self.task: asyncio.Task[None] | None = None
        self.metrics: Metrics | None = None  # with METRICS_PORT: /metrics, /healthz, /readyz
        self._stack = contextlib.AsyncExitStack()

    # -- the parts, in order -----------------------------------------------------------------------

    async def open(self) -> Transcord:
        """Start the metrics server (when METRICS_PORT is set), build the service (unless lent),
        open the store, point discord.py, build the bot."""
        assert self.bot is None, "an App opens once"
        config, stack = self.config, self._stack
        try:
            if config.metrics_port is not None:
                # First, so /healthz answers (and /readyz says why not yet) while the models load;
                # closed last, so /readyz says "shutting down" to the end.
                self.metrics = Metrics(config)
                await self.metrics.start()
                stack.push_async_callback(self.metrics.stop)
            if self.service is None:
                self.service = await self.service_factory(config)
                stack.push_async_callback(close_service, self.service)
            # The bot gets the service through the metrics when they are on (its generations
            # counted as they end); the app keeps, and closes, the service itself.
            service = self.service if self.metrics is None else self.metrics.observe(self.service)
            try:
                store = await open_store(config)
            except (OSError, sqlite3.DatabaseError, SchemaError) as exc:
                raise StartFailure(
                    f"could not open the database {config.database_path} ({exc}); "
                    "check DATABASE_PATH and the folder's permissions",
                    exit_code=FIX_SETTINGS,
                ) from exc
            stack.push_async_callback(store.close)
            if config.elsewhere:
                from loopback.client import point_discord_at

                assert config.api_base is not None and config.gateway_url is not None
                stack.callback(point_discord_at(config.api_base, config.gateway_url))
            bot = build_bot(config, service, store, extensions=self.extensions)
            if self.metrics is not None:
                self.metrics.attach(bot)  # readiness and command counts read the bot from here
            if self.guild_ready_timeout is not None:
                bot._connection.guild_ready_timeout = self.guild_ready_timeout
            stack.push_async_callback(self._close_bot, bot)
        except BaseException:
            await stack.aclose()
            raise
        self.bot = bot
        return bot

    async def connect(self, *, ready_timeout: float | None = None) -> asyncio.Task[None]:
        """Log in and connect in a task; with ``ready_timeout``, return once the bot is ready.

        Raises :class:`StartFailure` (with the reason in a line) if the connection ends first.
        """
        bot = self.bot if self.bot is not None else await self.open()
        assert self.task is None, "an App connects once"
        self.task = task = asyncio.create_task(bot.start(self.config.token or ""), name="transcord")
        if ready_timeout is not None:
            ready = asyncio.ensure_future(bot.wait_until_ready())
            try:
                await asyncio.wait({ready, task}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
            if task.done():
                raise explain(_ended(task), self.config)
            if not bot.is_ready():
                raise StartFailure(f"the bot was not ready after {ready_timeout:g} s")
        return task

    async def shutdown(self) -> None:
        """Let in-flight replies finish within the grace period, then disconnect."""
        if self.bot is not None and not self.bot.is_closed():
            await self.bot.shutdown()

    async def aclose(self) -> None:
        """Close whatever was opened, in reverse order; safe to call twice."""
        await self._stack.aclose()

    async def __aenter__(self) -> App:
        await self.open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _close_bot(self, bot: Transcord) -> None:
        await bot.close()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.task, timeout=5)

    # -- Discord mode ------------------------------------------------------------------------------

    async def run(self) -> int:
        """Connect and serve until SIGINT/SIGTERM or a connection that cannot go on; the exit code.

        A start-up problem a server admin can fix (a refused token, Discord unreachable, Discord
        failing) is logged as one plain line, never a traceback.
        """
        where = (
            f"{self.config.api_base} (gateway {self.config.gateway_url})"
            if self.config.elsewhere
            else "Discord (discord.com, gateway.discord.gg)"
        )
        try:
            await self.open()
        except ServiceError as exc:
            log.error("%s", exc.message)
            log.error("the default model is set up with: .venv/bin/python -m model_service.fetch")
            return FIX_SETTINGS
        except StartFailure as exc:
            log.error("%s", exc.message)
            return exc.exit_code
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            log.info("connecting to %s", where)
            task = await self.connect()
            stopper = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
            if task.done():
                failure = explain(_ended(task), self.config)
                log.error("%s", failure.message)
                return failure.exit_code
            log.info("shutting down")
            await self.shutdown()
            return 0
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.aclose()


def _ended(task: asyncio.Task[None]) -> BaseException | None:
    if task.cancelled():
        return asyncio.CancelledError()
    return task.exception()


async def close_service(service: ModelServiceAPI) -> None:
    """Close a model service (a fake one may have nothing to close)."""
    close = getattr(service, "close", None)
    if close is not None:
        await close()
