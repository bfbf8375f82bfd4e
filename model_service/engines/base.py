"""The engine interface: what the engine core asks of a model runner, whatever runs the model.

Every method is blocking and runs on the service's executor, one call per scheduler turn. A
generation is a row: it joins a model's running batch (prefill), then every step gives each
row one token, until the row finishes (its length, end of text, a stop sequence, or its caller
stopping it); ``release`` lets the batch go. A fill-mask batch advances one forward at a time,
so generation steps go on between its forwards; its forwards are the engine's scoring
(``fill_mask.Scorer``: log-probabilities of given tokens), so another engine fills by
implementing those three calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from model_service.fill_mask import FillTask
from model_service.types import FillMethod, FinishReason, GenerationRequest


class EngineRow(Protocol):
    """One generation as the engine core reads it between steps.

    A row may also carry ``failure`` (a ``ServiceError``, or None): a done row with one fails
    alone with that error, where an error raised from ``step`` fails every row of the model
    (the remote engine's rows: a 429 for one request leaves the others streaming).
    """

    finish_reason: FinishReason | None  # None while it runs
    generated: int  # tokens so far
    text_parts: list[str]  # every piece of text emitted
    first_text_at: float | None  # time.monotonic() of its first text

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def prompt_truncated(self) -> bool: ...

    @property
    def history_dropped(self) -> int: ...

    def take_text(self) -> str:
        """The text emitted since the last call."""
        ...


class FillWork(Protocol):
    """A batch of fill-mask tasks, worked on one forward at a time."""

    done: bool

    @property
    def method(self) -> FillMethod: ...

    def advance(self) -> None:
        """One forward; afterwards each task is done (predictions or error) or waits for more."""
        ...


RowT = TypeVar("RowT", bound=EngineRow)


class Engine(Protocol[RowT]):
    """One model's runner, of its own kind of row (``Engine`` alone: of any)."""

    def join(self, request: GenerationRequest, should_stop: Callable[[], FinishReason | None]) -> RowT:
        """Prepare a row for the request (its prompt in tokens, cut to fit); it joins at the next step."""
        ...

    def step(self, joining: Sequence[RowT]) -> list[RowT]:
        """Prefill the joining rows into the batch, then advance every row; returns those done.

        The transformers engine gives each row one token a step; the llama.cpp engine returns
        as soon as some row has news (its server decodes on its own), so a row may gain any
        number of tokens, or none, in one step.
        """
        ...

    def release(self) -> None:
        """Let the running batch go (after a failure): its rows are over."""
        ...

    def close(self) -> None:
        """At shutdown, after the last step: let go of whatever the engine holds besides the model."""
        ...

    def fill(self, tasks: Sequence[FillTask]) -> FillWork:
        """A fill batch for these tasks (the model's fill-mask head, or its causal fallback).

        Its forward passes are the engine's scoring (``fill_mask.Scorer``): log-probabilities of
        given tokens after a shared prefix, and of the next token after a prompt.
        """
        ...


class TextInbox:
    """Text a row's reader thread streams in and ``step`` takes out, under the row's ``lock``.

    For rows whose server decodes on its own (llama.cpp in-process, a remote server): the
    dataclass row declares these fields; this holds what it does with them.
    """

    lock: threading.Condition
    pending_text: list[str]
    text_parts: list[str]
    first_text_at: float | None

    def take_text(self) -> str:
        with self.lock:
            text, self.pending_text = "".join(self.pending_text), []
        return text

    def emit(self, text: str) -> None:
        if text:
            if self.first_text_at is None:
                self.first_text_at = time.monotonic()
            self.pending_text.append(text)
            self.text_parts.append(text)


class _Streamed(Protocol):
    ended: bool
    halt: FinishReason | None

    def should_stop(self) -> FinishReason | None: ...


S = TypeVar("S", bound=_Streamed)


def gather_news(
    news: threading.Condition, rows: list[S], halt: Callable[[S, FinishReason], None], wait_s: float
) -> tuple[list[S], list[S]]:
    """For engines whose rows are streamed by readers of their own: wait up to ``wait_s`` for
    news (a reader ``notify``s ``news``), halting each row that should stop (a deadline, its caller
    gone); returns the rows that ended and those still running."""
    deadline = time.monotonic() + wait_s
    with news:
        while True:
            for row in rows:
                if not row.ended and row.halt is None and (reason := row.should_stop()) is not None:
                    halt(row, reason)
            if all(row.ended for row in rows):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            news.wait(remaining)
        return [row for row in rows if row.ended], [row for row in rows if not row.ended]
