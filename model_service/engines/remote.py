"""The remote engine: a model served elsewhere, over the OpenAI-compatible API (vLLM, SGLang,
llama-server, TGI, any OpenAI-compatible server), behind the same engine interface.

It works as the llama.cpp engine does, a server decoding on its own: each row is one streamed
request (``/v1/completions`` or ``/v1/chat/completions`` with SSE), read on the remote loop
(``remote_loop``, ``remote_client``) and filed into the row; ``step`` gathers the news for ``STEP_WAIT_S`` and
hands it over, checking each row's stop (cancel, deadline) as it waits. A stop, a cancel or a
stop sequence cancels the row's task, which closes its connection: the server frees the slot at
once. A failure ends its own row only (``failure``): a 429 for one request leaves the others
streaming.

Fill-mask ranks candidate sentences by their likelihood, which needs the log-probabilities of
prompt tokens (``echo`` with ``logprobs``): vLLM and SGLang give them (``remote_fill``);
llama-server, TGI and OpenAI's API do not, and the model then fills on its local copy where
``REMOTE_TOKENIZERS`` names a folder with weights, or refuses saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from model_service.engines.base import FillWork, TextInbox, gather_news
from model_service.engines.remote_client import (
    ServerFacts,
    ServerSilent,
    StreamCut,
)
from model_service.engines.remote_fill import EchoFill
from model_service.engines.remote_models import RemoteModels
from model_service.engines.remote_requests import Prepared, prepare
from model_service.engines.transformers import TransformersEngine
from model_service.errors import InternalError, ModelUnavailableError, ServiceError
from model_service.fill_mask import FillTask
from model_service.output import StopFilter
from model_service.types import THINK_CLOSE, THINK_OPEN, FinishReason, GenerationRequest

log = logging.getLogger(__name__)

__all__ = ["RemoteEngine", "RemoteModels", "RemoteRow"]

# How long one ``step`` gathers news before handing it over (sooner when every row has ended):
# replies are edited into Discord once a second at most, and the executor the step holds is shared
# with every other model's steps.
STEP_WAIT_S = 0.04
RELEASE_WAIT_S = 10.0


@dataclass(eq=False)
class RemoteRow(TextInbox):
    """One generation streamed from a server; its task on the remote loop writes, ``step`` reads,
    both under ``lock``."""

    should_stop: Callable[[], FinishReason | None]
    stops: StopFilter
    lock: threading.Condition
    prepared: Prepared | None = None
    failure: ServiceError | None = None  # set: the row ends with this error, alone (base.EngineRow)
    finish_reason: FinishReason | None = None
    generated: int = 0
    prompt_tokens: int = 0
    prompt_truncated: bool = False
    history_dropped: int = 0
    pending_text: list[str] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)
    first_text_at: float | None = None
    seen_end: FinishReason | None = None  # the server's own finish reason
    halt: FinishReason | None = None  # set by step: the row's task is cancelled
    ended: bool = False
    task: Future[None] | None = None
    reasoning: bool = False  # inside the server's reasoning_content (shown as <think> text)


class RemoteEngine:
    """One remote catalog model (``Engine``)."""

    def __init__(
        self, models: RemoteModels, model: str, twin: Callable[[], TransformersEngine] | None = None
    ) -> None:
        self._models = models
        self._model = model
        self._server = models.server(model)
        self._twin = twin  # the local copy, for what the server can't do
        self._filled_locally = False
        self._rows: list[RemoteRow] = []
        self._news = threading.Condition()

    def join(self, request: GenerationRequest, should_stop: Callable[[], FinishReason | None]) -> RemoteRow:
        row = RemoteRow(should_stop, StopFilter(request.params.stop), self._news)
        try:
            facts = self._models.facts(self._model)
            row.prepared = prepare(self._model, request, facts, self._models.prompt_model(self._model, facts))
        except ServiceError as exc:  # this request's own problem: the others in the batch go on
            row.failure, row.ended, row.finish_reason = exc, True, "cancelled"
            return row
        row.prompt_tokens = row.prepared.prompt_tokens
        row.prompt_truncated = row.prepared.truncated
        row.history_dropped = row.prepared.history_dropped
        return row

    def step(self, joining: Sequence[RemoteRow]) -> list[RemoteRow]:
        for row in joining:
            self._rows.append(row)
            if not row.ended:
                row.task = self._models.loop.submit(self._stream(row))
                # A task cancelled before it ran has no `finally`: the callback ends the row then.
                row.task.add_done_callback(functools.partial(self._ended, row))
        done, self._rows = gather_news(self._news, self._rows, self._halt, STEP_WAIT_S)
        return done

    def _ended(self, row: RemoteRow, _task: object) -> None:
        self._end(row)

    def _halt(self, row: RemoteRow, reason: FinishReason) -> None:
        row.halt = reason
        if row.task is not None:
            row.task.cancel()  # cancels the task on the loop: its stream closes, the server stops

    async def _stream(self, row: RemoteRow) -> None:
        """On the remote loop: one request, start to end, its text filed into the row."""
        assert row.prepared is not None
        chat = row.prepared.path == "/chat/completions"
        try:
            async with contextlib.aclosing(
                self._server.stream(row.prepared.path, row.prepared.body)
            ) as events:
                async for event in events:
                    with self._news:
                        # A row stopped from `step` has ended already: nothing more goes into it.
                        over = row.ended or self._file(row, event, chat)
                        self._news.notify_all()
                    if over:
                        break
        except StreamCut as exc:
            if row.seen_end is None:  # a stream that said it was done, then closed, is fine
                self._fail(row, exc)
        except ServerSilent as exc:
            with self._news:
                if not row.text_parts:
                    self._fail(row, exc)
                elif not row.ended:  # a server that stalls after some text: the reply ends there
                    row.finish_reason = "timeout"
        except ServiceError as exc:
            self._fail(row, exc)
        except asyncio.CancelledError:
            raise
        except Exception:  # an answer of a shape no server should send: this row fails alone
            log.exception("model %s: reading the server's stream failed", self._model)
            self._fail(row, InternalError(f"model `{self._model}`: the server's answer could not be read"))
        finally:
            self._end(row)

    def _fail(self, row: RemoteRow, error: ServiceError) -> None:
        with self._news:
            if not row.ended:
                row.failure = error

    def _file(self, row: RemoteRow, event: dict[str, Any], chat: bool) -> bool:
        """One event's text into the row (under the lock); True: the row is over."""
        if isinstance(usage := event.get("usage"), dict):
            row.generated = int(usage.get("completion_tokens") or row.generated)
            if not row.prompt_tokens:
                row.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        for choice in event.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = (choice.get("delta") or {}) if chat else {}
            text = delta.get("content") if chat else choice.get("text")
            thought = delta.get("reasoning_content") if chat else None
            # A reasoning server's thinking comes apart from the answer: it joins the text as the
            # <think> block a local reasoning model writes, which the bot hides or folds away.
            if isinstance(thought, str) and thought:
                row.generated += 1
                row.emit(thought if row.reasoning else THINK_OPEN + thought)
                row.reasoning = True
            if isinstance(text, str) and text and row.reasoning:
                row.emit(THINK_CLOSE)
                row.reasoning = False
            if isinstance(text, str) and text:
                row.generated += 1  # one event a token, near enough; the usage at the end counts
                row.emit(row.stops.feed(text))
                if row.stops.stopped:
                    row.finish_reason = "stop"
                    return True
            if reason := choice.get("finish_reason"):
                row.seen_end = "length" if reason == "length" else "eos"
        return False

    def _end(self, row: RemoteRow) -> None:
        with self._news:
            if row.ended:
                return
            if row.reasoning:  # the server stopped while thinking
                row.emit(THINK_CLOSE)
                row.reasoning = False
            if row.finish_reason is None:
                row.finish_reason = row.halt or row.seen_end or ("cancelled" if row.failure else "eos")
            if row.finish_reason != "stop":
                row.emit(row.stops.flush())
            row.ended = True
            self._news.notify_all()

    def release(self) -> None:
        """Cancel every running row and wait until each has ended (its connection closed)."""
        deadline = time.monotonic() + RELEASE_WAIT_S
        with self._news:
            for row in self._rows:
                if not row.ended:
                    self._halt(row, row.halt or "cancelled")
            while not all(row.ended for row in self._rows) and (left := deadline - time.monotonic()) > 0:
                self._news.wait(left)
            self._rows = []

    def close(self) -> None:
        self.release()

    def fill(self, tasks: Sequence[FillTask]) -> FillWork:
        """Fill on the server where it gives prompt log-probabilities, else on the local copy."""
        facts = self._models.facts(self._model)
        if facts.flavour.prompt_logprobs:
            tokenizer = self._models.tokenizer(self._model)
            return EchoFill(self._server, facts, tokenizer, tasks)
        if self._twin is not None:
            if not self._filled_locally:
                log.info(
                    "model %s fills on its local copy: its server %s", self._model, no_prompt_logprobs(facts)
                )
                self._filled_locally = True
            return self._twin().fill(tasks)
        raise ModelUnavailableError(
            f"model `{self._model}` can't fill masks here: its {facts.flavour.label} server at "
            f"{self._server.url} {no_prompt_logprobs(facts)}, and ranking the candidate sentences "
            "needs them. Use a masked LM for /fill (FILL_MODEL), serve this model with vLLM or SGLang, "
            "or name a local copy with its weights in REMOTE_TOKENIZERS to fill on"
        )


def no_prompt_logprobs(facts: ServerFacts) -> str:
    """Why a server can't give what the causal fill-mask needs, in words."""
    if facts.flavour.name == "llama.cpp":
        return "returns no log-probabilities of prompt tokens (llama-server does not honour `echo`)"
    return "offers no log-probabilities of prompt tokens (`echo` with `logprobs`) over its OpenAI API"
