"""The engine core over the engine interface, with a scripted engine: no model, no tensors.

Any runner that implements ``model_service.engines.base.Engine`` can serve a model; this one
writes each prompt's words back, one word a step, and shows what the core makes of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from model_service import GenerationParams, GenerationRequest, InternalError, ServiceError
from model_service.engine_core import DONE, EngineCore, Job
from model_service.engines.base import Engine
from model_service.types import FinishReason, GenerationResult


@dataclass(eq=False)
class EchoRow:
    words: list[str]
    limit: int
    should_stop: Callable[[], FinishReason | None]
    finish_reason: FinishReason | None = None
    generated: int = 0
    text_parts: list[str] = field(default_factory=list)
    first_text_at: float | None = None
    pending: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    prompt_truncated: bool = False
    history_dropped: int = 0

    def take_text(self) -> str:
        text, self.pending = "".join(self.pending), []
        return text


class EchoEngine:
    """Writes the prompt's words back, one a step; ``fail_at`` makes step number N raise."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.rows: list[EchoRow] = []
        self.steps: list[int] = []  # rows in the batch at each step
        self.fail_at = fail_at
        self.released = 0

    def join(self, request: GenerationRequest, should_stop: Callable[[], FinishReason | None]) -> EchoRow:
        words = request.prompt.split()
        return EchoRow(words, request.params.max_new_tokens, should_stop, prompt_tokens=len(words))

    def step(self, joining: Sequence[EchoRow]) -> list[EchoRow]:  # type: ignore[override]
        self.rows += joining
        self.steps.append(len(self.rows))
        if self.fail_at is not None and len(self.steps) == self.fail_at:
            raise InternalError("the engine fell over")
        for row in self.rows:
            word = row.words[row.generated] + " "
            row.generated += 1
            row.pending.append(word)
            row.text_parts.append(word)
            if row.generated >= min(row.limit, len(row.words)):
                row.finish_reason = "length" if row.generated == row.limit else "eos"
            elif (reason := row.should_stop()) is not None:
                row.finish_reason = reason
        done = [row for row in self.rows if row.finish_reason is not None]
        self.rows = [row for row in self.rows if row.finish_reason is None]
        return done

    def release(self) -> None:
        self.released += 1
        self.rows = []

    def fill(self, tasks: Sequence[Any]) -> Any:
        raise NotImplementedError


async def run_on_loop(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except ServiceError:
        raise
    except Exception as exc:  # as the service's executor boundary does
        raise InternalError(str(exc)) from exc


def job(prompt: str, max_new_tokens: int = 10, model: str = "echo") -> Job:
    params = GenerationParams.from_values({"max_new_tokens": max_new_tokens})
    return Job(
        request=GenerationRequest(prompt, params),
        model=model,
        should_stop=lambda: None,
        started=asyncio.Event(),
    )


async def drain(j: Job) -> tuple[list[str], GenerationResult | BaseException]:
    deltas = []
    while (item := await j.deltas.get()) is not DONE:
        deltas.append(item)
    try:
        return deltas, await j.result
    except BaseException as exc:
        return deltas, exc


@pytest.fixture
async def core() -> Any:
    engines: dict[str, EchoEngine] = {}
    finished: list[GenerationResult] = []

    def engine_for(model: str) -> Engine:
        return engines.setdefault(model, EchoEngine(fail_at=2 if model == "fragile" else None))

    running = EngineCore(engine_for, run_on_loop, max_batch_size=2, on_finished=finished.append)
    running.start()
    running.engines, running.finished = engines, finished  # type: ignore[attr-defined]
    yield running
    await running.stop(grace=1)


async def test_rows_stream_word_by_word_and_share_steps_up_to_the_cap(core: Any) -> None:
    jobs = [job("one two three"), job("a b"), job("x y z w", max_new_tokens=2)]
    for j in jobs:
        core.submit(j)
    results = await asyncio.gather(*(drain(j) for j in jobs))

    assert results[0][0] == ["one ", "two ", "three "]
    assert [r.text for _, r in results] == ["one two three ", "a b ", "x y "]  # type: ignore[union-attr]
    assert [r.finish_reason for _, r in results] == ["eos", "eos", "length"]  # type: ignore[union-attr]
    assert [r.prompt_tokens for _, r in results] == [3, 2, 4]  # type: ignore[union-attr]
    # Two rows at once (the cap); the third joined as soon as "a b" left, without waiting.
    assert max(core.engines["echo"].steps) == 2
    assert len(core.finished) == 3


async def test_a_failing_step_fails_that_models_rows_only_and_the_engine_is_released(core: Any) -> None:
    fragile, steady = job("p q r", model="fragile"), job("s t u")
    core.submit(fragile)
    core.submit(steady)
    (_, failed), (_, done) = await asyncio.gather(drain(fragile), drain(steady))
    assert isinstance(failed, InternalError) and "fell over" in failed.message
    assert isinstance(done, GenerationResult) and done.text == "s t u "
    assert core.engines["fragile"].released == 1
    assert core.running == 0 and core.waiting == 0


async def test_a_bug_in_a_turn_fails_the_requests_in_flight_instead_of_hanging_them(
    core: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = job("one two three")
    original = EchoRow.take_text

    def take_text(self: EchoRow) -> str:
        if "one " in self.pending:
            raise AttributeError("a row without a field the core reads")  # e.g. an engine's bug
        return original(self)

    monkeypatch.setattr(EchoRow, "take_text", take_text)
    core.submit(broken)
    _, outcome = await asyncio.wait_for(drain(broken), 5)
    assert isinstance(outcome, InternalError)

    monkeypatch.setattr(EchoRow, "take_text", original)
    after = job("still serving")
    core.submit(after)
    _, result = await asyncio.wait_for(drain(after), 5)
    assert isinstance(result, GenerationResult) and result.text == "still serving "
