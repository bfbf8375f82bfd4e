"""Requests of one task on one model, worked through together: fill-mask's policy for the other heads.

While a batch of a (model, task) runs, new requests of that pair wait; when it ends, every one
waiting (up to ``max_batch_size``) forms the next batch. A batch advances one forward per call
through the service's executor boundary (``run``), so generation steps go on between its
forwards as they do between a fill's. A request whose caller left, or whose time ran out, is
skipped before it starts and dropped from the forwards still to come.

Event-loop code: no tensors here. The batches themselves (``TaskBatch``) live in the task modules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from model_service.errors import InternalError, RequestTimeoutError, ServiceError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class TaskItem:
    """One request inside a batch: its input, then its result or its error."""

    request: Any
    deadline: float
    submitted: float = field(default_factory=time.monotonic)
    result: Any = None
    error: ServiceError | None = None
    dropped: bool = False  # its caller left: the batch skips its remaining work
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    @property
    def live(self) -> bool:
        return not self.done and not self.dropped


class TaskBatch(Protocol):
    """Items of one task on one model, worked on one forward at a time (on the executor)."""

    done: bool

    def advance(self) -> None:
        """One forward; afterwards each item is done (result or error) or waits for more."""
        ...


MakeBatch = Callable[[Sequence[TaskItem]], TaskBatch]


class Batcher:
    def __init__(self, run: Callable[..., Awaitable[Any]], *, max_batch_size: int) -> None:
        self._run = run
        self._max = max_batch_size
        self._waiting: dict[tuple[str, str], list[TaskItem]] = {}
        self._makers: dict[tuple[str, str], MakeBatch] = {}
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.working = 0  # requests in a batch now

    async def submit(self, key: tuple[str, str], request: object, make: MakeBatch, *, timeout: float) -> Any:
        """Queue ``request`` under ``key`` (model, task) and wait for its result."""
        item = TaskItem(request, time.monotonic() + timeout)
        self._waiting.setdefault(key, []).append(item)
        self._makers[key] = make
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._work(key), name=f"batch {key[1]} on {key[0]}")
        try:
            return await asyncio.wait_for(asyncio.shield(item.future), timeout)
        except TimeoutError:
            raise RequestTimeoutError("the request timed out while the model worked on it") from None
        finally:
            item.dropped = not item.future.done()

    async def close(self) -> None:
        for worker in list(self._workers.values()):
            worker.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def _work(self, key: tuple[str, str]) -> None:
        try:
            while self._waiting.get(key):
                queue = self._waiting[key]
                taken = [item for item in queue[: self._max] if not item.dropped]
                del queue[: self._max]
                if taken:
                    await self._batch(self._makers[key], taken)
        finally:
            self._workers.pop(key, None)
            self._waiting.pop(key, None)

    async def _batch(self, make: MakeBatch, items: list[TaskItem]) -> None:
        self.working += len(items)
        try:
            batch: TaskBatch = await self._run(make, items)
            while not batch.done and any(item.live for item in items):
                now = time.monotonic()
                for item in items:
                    if item.live and now >= item.deadline:
                        item.dropped = True
                await self._run(batch.advance)
                self._settle(items)
        except ServiceError as exc:
            for item in items:
                if not item.done:
                    item.error = exc
        except asyncio.CancelledError:
            for item in items:
                if not item.future.done():
                    item.future.cancel()
            raise
        finally:
            self.working -= len(items)
            self._settle(items, last=True)

    @staticmethod
    def _settle(items: list[TaskItem], *, last: bool = False) -> None:
        for item in items:
            if item.future.done():
                continue
            if item.dropped and (item.error is not None or last):
                item.future.cancel()  # nobody waits for it
            elif item.error is not None:
                item.future.set_exception(item.error)
            elif item.result is not None:
                item.future.set_result(item.result)
            elif last:
                item.future.set_exception(InternalError("the batch ended without an answer for this request"))
