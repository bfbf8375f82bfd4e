"""The handle a test gets back for each interaction it sends: what the bot did with it, awaitable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from loopback.records import EPHEMERAL, CallRecord, Change, ChangeBus, MessageRecord, Version

CALLBACK_NAMES = {
    4: "message",
    5: "deferred message",
    6: "deferred update",
    7: "update message",
    8: "autocomplete result",
    9: "modal",
}


class InteractionRecord:
    """One interaction sent to the bot and everything the bot did about it, in order.

    ``original`` is the message behind ``@original`` (created by a type 4 reply or a type 5 defer);
    ``followups`` are messages made with ``POST /webhooks/{app}/{token}``. As on Discord, the first
    follow-up after a defer fills the "thinking…" message instead of making a new one, so it is the
    same record as ``original`` (and its ephemerality comes from the defer, not its own flags).

    A component interaction (a click, ``type`` 3) has a ``target``: the message clicked. Answered
    with type 6 (deferred update) or 7 (update message), ``original`` *is* that message, so edits
    of ``@original`` edit it; answered with 4 or 5, ``original`` is a new message replying to it.
    ``command`` reads ``component:<custom_id>`` for a click.
    """

    def __init__(
        self,
        *,
        id: int,
        token: str,
        type: int,
        payload: dict[str, Any],
        command: str,
        bus: ChangeBus,
        target: MessageRecord | None = None,
    ) -> None:
        self.id = id
        self.token = token
        self.type = type
        self.payload = payload
        self.command = command
        self.sent_at = time.monotonic()
        self.callback_type: int | None = None
        self.callback_data: dict[str, Any] | None = None
        self.callback_at: float | None = None
        self.original: MessageRecord | None = None
        self.followups: list[MessageRecord] = []
        self.choices: list[dict[str, Any]] | None = None
        self.calls: list[CallRecord] = []
        self.rejected: list[CallRecord] = []
        self.payloads: list[dict[str, Any]] = []  # every message body the bot sent for this interaction
        self.target = target
        # The index in original.versions of the state the initial response left (the reply, the
        # defer, the update; for a deferred update the message as it was clicked): later ones are edits.
        self.response_version = 0
        self._bus = bus

    def __repr__(self) -> str:
        return f"<InteractionRecord {self.label} id={self.id} {self.summary()}>"

    @property
    def label(self) -> str:
        """``/command sub`` for a command, ``component:<custom_id>`` for a click."""
        return self.command if self.type == 3 else f"/{self.command}"

    @property
    def is_component(self) -> bool:
        return self.type == 3

    # -- what happened ---------------------------------------------------------------------------

    @property
    def responded(self) -> bool:
        return self.callback_type is not None

    @property
    def deferred(self) -> bool:
        return self.callback_type in (5, 6)

    @property
    def ephemeral(self) -> bool:
        if self.original is not None:
            return self.original.ephemeral
        flags = (self.callback_data or {}).get("flags") or 0
        return bool(int(flags) & EPHEMERAL)

    @property
    def is_thinking(self) -> bool:
        """Deferred with a "thinking…" message that nothing ever replaced."""
        return self.original is not None and self.original.loading and not self.original.deleted

    @property
    def edits(self) -> list[Version]:
        """Each state of ``@original`` after the initial response, in order (that response is the
        reply, the defer or, for a click, the update; after a deferred update, every change since
        the click)."""
        return self.original.versions[self.response_version + 1 :] if self.original else []

    @property
    def content(self) -> str | None:
        """The latest text of the original response; None while there is none or it is thinking."""
        if self.original is None or self.original.deleted or self.original.loading:
            return None
        return self.original.content

    @property
    def embeds(self) -> tuple[dict[str, Any], ...]:
        return self.original.embeds if self.original and not self.original.deleted else ()

    @property
    def messages(self) -> list[MessageRecord]:
        """The original and the distinct follow-ups, as a user would see them top to bottom."""
        out = [self.original] if self.original else []
        return out + [m for m in self.followups if m is not self.original]

    @property
    def allowed_mentions(self) -> list[dict[str, Any] | None]:
        """``allowed_mentions`` of every message body the bot sent, None where it sent none."""
        return [p.get("allowed_mentions") for p in self.payloads]

    @property
    def expired(self) -> bool:
        """The bot answered after the 3 s deadline, and the server refused as Discord would."""
        return any((c.error or {}).get("code") == 10062 for c in self.rejected)

    def summary(self) -> str:
        if not self.responded:
            state = "no response yet"
        else:
            state = CALLBACK_NAMES.get(self.callback_type or 0, f"callback {self.callback_type}")
        parts = [state]
        if self.is_thinking:
            parts.append("still thinking")
        if self.original is not None:
            parts.append(f"content={self.content!r}")
            parts.append(f"{len(self.edits)} edit(s)")
        if self.followups:
            parts.append(f"followups={[m.content for m in self.followups]!r}")
        if self.choices is not None:
            parts.append(f"choices={self.choices!r}")
        if self.rejected:
            parts.append(f"rejected={[(c.method, c.path, c.error) for c in self.rejected]!r}")
        return ", ".join(parts)

    # -- waiting ---------------------------------------------------------------------------------

    async def wait_for(
        self, predicate: Callable[[InteractionRecord], bool], timeout: float = 10.0
    ) -> InteractionRecord:
        """Wait until ``predicate(self)`` holds; the TimeoutError says what the bot did so far."""
        await self._bus.wait_until(
            lambda: predicate(self), timeout, lambda: f"{self.label}: {self.summary()}"
        )
        return self

    async def wait_response(self, timeout: float = 10.0) -> InteractionRecord:
        return await self.wait_for(lambda h: h.responded, timeout)

    async def wait_content(
        self, expected: str | Callable[[str], bool], timeout: float = 10.0
    ) -> InteractionRecord:
        """Wait until the original's text contains ``expected`` (or satisfies it, when callable)."""
        check = expected if callable(expected) else (lambda text: expected in text)
        return await self.wait_for(lambda h: h.content is not None and check(h.content), timeout)

    async def wait_followups(self, count: int = 1, timeout: float = 10.0) -> InteractionRecord:
        return await self.wait_for(lambda h: len(h.followups) >= count, timeout)

    async def wait_final(self, timeout: float = 10.0, quiet: float = 0.3) -> InteractionRecord:
        """Wait until the bot answered, is no longer thinking, and changed nothing for ``quiet`` s.

        An autocomplete counts as answered once its choices arrive.
        """
        await self.wait_for(lambda h: h.responded and not h.is_thinking, timeout)
        deadline = time.monotonic() + timeout
        while True:
            last = max([self.sent_at, self.callback_at or 0] + [c.at for c in self.calls])
            idle = time.monotonic() - last
            if idle >= quiet:
                return self
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.label} never settled: {self.summary()}")
            self._bus.check_watched()
            await asyncio.sleep(quiet - idle)

    async def changes(self) -> AsyncIterator[Change]:
        """Every change about this interaction as it happens (for rendering edits live)."""
        async for change in self._bus.stream(lambda c: c.interaction is self):
            yield change
