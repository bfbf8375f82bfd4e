"""The remote engine's event loop: one asyncio loop on a daemon thread, and its HTTP session.

Why a loop of its own: the engine interface is blocking (its calls run on the service's executor),
and one loop carries every row's stream at once without a thread per row, as llama.cpp's
in-process binding needs. Cancelling a row's task closes its connection at once, which is how an
OpenAI-compatible server learns to stop: it frees the slot without waiting for another token. The
bot's event loop never sees this I/O; it waits on the engine core's executor future, as for the
other engines.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp

from model_service.errors import InternalError

T = TypeVar("T")


class RemoteLoop:
    """One event loop on a daemon thread, and the HTTP session that lives on it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise InternalError("the model service is stopping: no more requests to model servers")
            if self._loop is not None:
                return
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="remote-http", daemon=True)
            self._thread.start()
            self._loop = loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; its future's ``cancel()`` cancels the task (closing its stream)."""
        try:
            self.start()
        except InternalError:
            coro.close()  # never to run
            raise
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it (from a thread other than the loop's)."""
        return self.submit(coro).result()

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # A fresh connection a request: llama-server closes a connection after a streamed reply
            # without saying so, and a pooled one then fails on the next request's first write.
            # A handshake costs less than one token's time on a LAN.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self._session

    def close(self) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
            self._closed = True
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._session is not None:
                await self._session.close()
                self._session = None

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
