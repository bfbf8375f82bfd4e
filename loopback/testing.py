"""Running a real discord.py bot against :class:`LoopbackDiscord` in a test, without hiding its crashes.

A payload the client cannot parse raises inside ``connect()`` and ends ``bot.start()``; a test that
only waits for ``on_ready`` or a reply would then sit out its whole timeout. :func:`run_bot` watches
the start task while waiting, and registers it with the server so every ``wait_*`` fails fast too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import discord

from loopback.client import point_discord_at
from loopback.records import BotStopped
from loopback.server import LoopbackDiscord

log = logging.getLogger("loopback.testing")


async def wait_watching(awaitable: Any, task: asyncio.Task[Any], timeout: float, what: str) -> Any:
    """Await ``awaitable``, but raise at once (with its exception) if ``task`` ends first."""
    waiter = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({waiter, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            return waiter.result()
        if task in done:
            exc = None if task.cancelled() else task.exception()
            raise BotStopped(f"the bot stopped while waiting for {what}: {exc!r}") from exc
        raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
    finally:
        if not waiter.done():
            waiter.cancel()


@contextlib.asynccontextmanager
async def run_bot(
    bot: discord.Client,
    server: LoopbackDiscord,
    token: str | None = None,
    *,
    ready_timeout: float = 15.0,
    guild_ready_timeout: float | None = 0.05,
) -> AsyncIterator[asyncio.Task[None]]:
    """Point discord.py at ``server``, start ``bot``, wait until it is ready, yield its start task.

    ``guild_ready_timeout`` shortens discord.py's wait after the last GUILD_CREATE before
    ``on_ready`` (2 s by default; the server sends every GUILD_CREATE right after READY), None
    leaves the bot's own. On exit the bot is closed and discord.py's addresses are restored.
    """
    restore = point_discord_at(server.api_base, server.gateway_url)
    if guild_ready_timeout is not None:
        bot._connection.guild_ready_timeout = guild_ready_timeout
    task = asyncio.create_task(bot.start(token or server.token), name=f"bot.start({bot.__class__.__name__})")
    server.watch(task)
    try:
        await wait_watching(bot.wait_until_ready(), task, ready_timeout, "the bot to be ready")
        yield task
        if task.done():
            server.unwatch(task)
            await task  # surface a crash that happened after the test's last wait
    finally:
        server.unwatch(task)
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=5)
        restore()
