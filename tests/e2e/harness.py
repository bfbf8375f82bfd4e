"""Starting the real bot the way ``bot.py`` does, against a :class:`LoopbackDiscord`.

The config comes from ``load_config`` over an env-like dict and the bot starts through
:class:`app.App`, the same composition root as Discord mode; the service is ``app.build_service``
(or any :class:`ModelServiceAPI`, e.g. a fake), kept across restarts. :class:`BotRunner` can stop
and start the bot again on the same database file (a restart).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import app as bot_module
from app.environment import load_config
from core.config import BotConfig
from loopback import InteractionRecord, LoopbackDiscord
from model_service import ModelServiceAPI

ServiceFactory = Callable[[BotConfig], Awaitable[ModelServiceAPI]]


def base_env(server: LoopbackDiscord, database: Path, models: Mapping[str, Path | str]) -> dict[str, str]:
    """Settings for a test bot: the loopback server's addresses and token, CPU, offline, fast edits."""
    return {
        "DISCORD_TOKEN": server.token,
        "DISCORD_API_BASE": server.api_base,
        "DISCORD_GATEWAY_URL": server.gateway_url,
        "MODELS": ",".join(f"{name}={source}" for name, source in models.items()),
        "DATABASE_PATH": str(database),
        "STREAM_EDIT_INTERVAL_S": "0.2",
        "MODEL_DEVICE": "cpu",
        "MODEL_DTYPE": "float32",
        "MODEL_OFFLINE": "true",
        "SHUTDOWN_GRACE_S": "1",
    }


class BotRunner:
    """One bot at a time on ``server``; ``restart`` keeps the database file (and the service)."""

    def __init__(
        self,
        server: LoopbackDiscord,
        env: Mapping[str, str],
        service_factory: ServiceFactory = bot_module.build_service,
    ) -> None:
        self.server = server
        self.env = dict(env)
        self.service_factory = service_factory
        self.service: ModelServiceAPI | None = None
        self.bot: bot_module.Transcord | None = None
        self.config: BotConfig | None = None
        self.starts = 0
        self.extensions: Sequence[str] | None = None
        self.app: bot_module.App | None = None

    async def start(
        self, *, extensions: Sequence[str] | None = None, **overrides: str
    ) -> bot_module.Transcord:
        """Start a bot with ``overrides`` on top of the runner's env (each start re-reads the config)."""
        assert self.bot is None, "stop the running bot first"
        config = load_config({**self.env, **overrides})
        if self.service is None:
            self.service = await self.service_factory(config)
        kwargs = {} if extensions is None else {"extensions": tuple(extensions)}
        app = bot_module.App(config, service=self.service, guild_ready_timeout=0.05, **kwargs)
        try:
            transcord = await app.open()
            self.server.watch(await app.connect(ready_timeout=15.0))
        except BaseException:
            await self._close(app)
            raise
        self.app, self.bot, self.config = app, transcord, config
        self.extensions = extensions
        self.starts += 1
        return transcord

    async def stop(self) -> None:
        app, self.app, self.bot = self.app, None, None
        if app is not None:
            await self._close(app)

    async def _close(self, app: bot_module.App) -> None:
        if app.task is not None:
            self.server.unwatch(app.task)
            if app.task.done() and not app.task.cancelled() and app.task.exception() is not None:
                await app.aclose()
                raise app.task.exception()  # type: ignore[misc]  # a crash after the test's last wait
        await app.aclose()

    async def restart(
        self, *, extensions: Sequence[str] | None = None, **overrides: str
    ) -> bot_module.Transcord:
        """Stop, then start on the same database; the extensions stay those of the last start."""
        await self.stop()
        return await self.start(extensions=self.extensions if extensions is None else extensions, **overrides)

    async def aclose(self) -> None:
        await self.stop()
        service, self.service = self.service, None
        if service is not None:
            await bot_module.close_service(service)


FOOTER_LINE = re.compile(r"\n-# \d+ tokens · ")


def has_footer(record: InteractionRecord) -> bool:
    """A generation's reply is complete: its footer (``-# N tokens · …``) is shown."""
    return any(FOOTER_LINE.search(m.content) for m in record.messages if not m.deleted)


async def run(
    server: LoopbackDiscord,
    command: str,
    options: dict[str, object] | None = None,
    *,
    until: Callable[[InteractionRecord], bool] | None = None,
    timeout: float = 30.0,
    **kwargs: Any,
) -> InteractionRecord:
    """Invoke a command; wait for ``until`` (if given), then until the reply has settled.

    Timeouts are generous: the machine's cores may be shared, and the tiny models then slow
    down many times over; a passing run does not wait for them.
    """
    record = await server.invoke(command, options, **kwargs)
    if until is not None:
        await record.wait_for(until, timeout)
    return await record.wait_final(timeout)


def all_text(record: InteractionRecord) -> str:
    """Everything the user sees for one interaction, top to bottom, joined."""
    return "".join(m.content for m in record.messages if not m.deleted)


def no_pings(record: InteractionRecord) -> bool:
    """Every message body the bot sent said: mention nobody."""
    return bool(record.payloads) and all(m == {"parse": []} for m in record.allowed_mentions)
