"""What the server saw: every REST call, every message and its versions, and a change bus to await on."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

POLL_INTERVAL = 0.05
EPHEMERAL = 1 << 6
LOADING = 1 << 7


@dataclass(frozen=True)
class FileRecord:
    """An uploaded attachment as the server stored it."""

    id: int
    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass(eq=False)
class CallRecord:
    """One HTTP request to the server, in arrival order (``path`` is relative to ``/api/v10``).

    ``status`` is 0 until the server has answered.
    """

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: tuple[FileRecord, ...]
    at: float
    status: int = 0
    route: str | None = None  # None: nothing answers this path (a 404 the bot did not expect)
    fault: str | None = None  # set when an injected fault answered instead of the route
    error: dict[str, Any] | None = None  # the JSON error body, when the server refused the call


@dataclass(frozen=True)
class Version:
    """One visible state of a message: what a user saw after a create or an edit."""

    content: str
    embeds: tuple[dict[str, Any], ...]
    attachments: tuple[FileRecord, ...]
    components: tuple[dict[str, Any], ...]
    flags: int
    allowed_mentions: dict[str, Any] | None  # as sent in the payload that produced this version
    at: float

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    @property
    def text(self) -> str:
        """Content plus embed titles/descriptions/fields, roughly what a reader sees."""
        parts = [self.content] if self.content else []
        for embed in self.embeds:
            parts += [str(embed[k]) for k in ("title", "description") if embed.get(k)]
            parts += [f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields", [])]
        return "\n".join(parts)


@dataclass(eq=False)
class MessageRecord:
    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    kind: str  # "original", "followup", "channel" (the bot's post) or "member" (a user's post)
    versions: list[Version] = field(default_factory=list)
    interaction_id: int | None = None  # the interaction whose response or follow-up this is
    deleted: bool = False
    edited_iso: str | None = None
    reference_id: int | None = None  # the message (same channel) this one replies to
    webhook_author: dict[str, Any] | None = None  # a channel webhook's message: who it shows
    application_id: int | None = None  # the application owning the webhook that sent it

    @property
    def is_reply(self) -> bool:
        return self.reference_id is not None

    @property
    def latest(self) -> Version:
        return self.versions[-1]

    @property
    def content(self) -> str:
        return self.latest.content

    @property
    def embeds(self) -> tuple[dict[str, Any], ...]:
        return self.latest.embeds

    @property
    def attachments(self) -> tuple[FileRecord, ...]:
        return self.latest.attachments

    @property
    def flags(self) -> int:
        return self.latest.flags

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return self.latest.loading

    @property
    def allowed_mentions(self) -> dict[str, Any] | None:
        return self.latest.allowed_mentions


@dataclass(frozen=True)
class Change:
    """Something a user of the fake Discord would notice (or a test would want to): see ``kind``.

    kinds: ``interaction`` (sent to the bot), ``callback``, ``edit`` (a message got a new version),
    ``followup``, ``message`` (a plain channel message, the bot's or a member's), ``delete``,
    ``typing``, ``thread`` (the bot started a thread from ``message``; ``detail``: its id and
    name), ``rejected`` (the server refused a call about an interaction), ``sync`` (commands
    stored), ``call`` (any REST call answered), ``gateway`` (connect/identify/resume/close...;
    ``detail`` says which).
    """

    kind: str
    # The InteractionRecord it is about, matched by identity (typed loosely: records sit below
    # interactions, which import them).
    interaction: object | None = None
    message: MessageRecord | None = None
    detail: str = ""
    at: float = field(default_factory=time.monotonic)


class BotStopped(RuntimeError):
    """A watched bot task ended while something was waiting on the server."""


class ChangeBus:
    """Fan-out of :class:`Change` to subscribers and to coroutines waiting for a condition.

    Waits also watch registered tasks (the bot's ``start()``): if one ends, the wait raises at once
    with its exception instead of running into its timeout.
    """

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Change], Any]] = []
        self._waiters: set[asyncio.Future[None]] = set()
        self._watched: set[asyncio.Task[Any]] = set()
        self._callback_tasks: set[asyncio.Task[Any]] = set()
        self.last_at = time.monotonic()  # when the latest change was published

    def subscribe(self, callback: Callable[[Change], Any]) -> Callable[[], None]:
        """Call ``callback(change)`` on every change (a coroutine result is run as a task).

        Returns a function that unsubscribes.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def publish(self, change: Change) -> None:
        self.last_at = change.at
        for callback in list(self._subscribers):
            result = callback(change)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._callback_tasks.add(task)
                task.add_done_callback(self._callback_tasks.discard)
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)

    async def stream(self, keep: Callable[[Change], bool] = lambda _: True) -> AsyncIterator[Change]:
        queue: asyncio.Queue[Change] = asyncio.Queue()
        unsubscribe = self.subscribe(lambda c: queue.put_nowait(c) if keep(c) else None)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()

    def watch(self, task: asyncio.Task[Any]) -> None:
        self._watched.add(task)

    def unwatch(self, task: asyncio.Task[Any]) -> None:
        self._watched.discard(task)

    def check_watched(self) -> None:
        for task in list(self._watched):
            if not task.done():
                continue
            self._watched.discard(task)
            if task.cancelled():
                raise BotStopped(f"{task.get_name()} was cancelled")
            exc = task.exception()
            if exc is not None:
                raise BotStopped(f"{task.get_name()} died: {exc!r}") from exc
            raise BotStopped(f"{task.get_name()} returned while waiting")

    async def wait_until(
        self, check: Callable[[], bool], timeout: float, describe: Callable[[], str]
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if check():
                return
            self.check_watched()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout:g}s waiting; {describe()}")
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            try:
                # Woken by a change, a watched task ending, or the poll tick: predicates may also
                # look at state outside the server (the bot's own attributes).
                wake = min(remaining, POLL_INTERVAL)
                await asyncio.wait([waiter, *self._watched], timeout=wake, return_when="FIRST_COMPLETED")
            finally:
                self._waiters.discard(waiter)
                waiter.cancel()
