"""The scheduling policy: which waiting requests join which batch, which batches step, which fills run.

No tensors, no event loop, no model (the shape of vLLM v1's scheduler): :meth:`Scheduler.schedule`
returns a :class:`Plan`; the engine core (``engine_core``) carries it out and reports back with
:meth:`Scheduler.finish` and :meth:`Scheduler.fill_done`. Its tests feed it ids and load nothing.

The policy: generation requests join their model's batch first come, first served, as far as
``max_batch_size`` leaves room; every model with rows steps once a turn, so a late request never
waits for earlier ones to finish. Fill-mask requests are filled in batches: when none is in
progress, the first waiting fill's model takes every waiting fill of that model (up to the same
cap), and that batch takes one forward a turn, between the generation steps. A request that
stopped (cancelled, timed out) while waiting is dropped unstarted.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["generate", "fill"]


@dataclass(frozen=True)
class Plan:
    """One turn of work."""

    joins: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # model -> ids joining its batch
    steps: tuple[str, ...] = ()  # models whose batch takes one step (every model with rows)
    fill_start: tuple[str, tuple[int, ...]] | None = None  # a new fill batch: its model and ids
    fill_step: bool = False  # the fill batch in progress (or just started) takes one forward
    dropped: tuple[int, ...] = ()  # stopped while waiting: never started

    @property
    def empty(self) -> bool:
        return not (self.steps or self.fill_step or self.dropped)


@dataclass(frozen=True)
class _Waiting:
    request_id: int
    model: str


class Scheduler:
    def __init__(self, max_batch_size: int) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.max_batch_size = max_batch_size
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._fills_waiting: collections.deque[_Waiting] = collections.deque()
        self._running: dict[str, dict[int, None]] = {}  # model -> ids in its batch, in join order
        self._filling: tuple[str, tuple[int, ...]] | None = None

    # -- what comes in and goes out -------------------------------------------------------------

    def add(self, request_id: int, model: str, kind: Kind = "generate") -> None:
        queue = self._fills_waiting if kind == "fill" else self._waiting
        queue.append(_Waiting(request_id, model))

    def finish(self, request_id: int, model: str) -> None:
        """A generation left its model's batch (done, stopped or failed)."""
        rows = self._running.get(model)
        if rows is not None:
            rows.pop(request_id, None)
            if not rows:
                del self._running[model]

    def fail_model(self, model: str) -> tuple[int, ...]:
        """The model's batch failed: every row in it is gone; returns their ids."""
        return tuple(self._running.pop(model, ()))

    def fill_done(self) -> None:
        """The fill batch in progress ended."""
        self._filling = None

    def drop_all(self) -> tuple[int, ...]:
        """Forget everything (the service stops); returns every id it held."""
        ids = [w.request_id for w in (*self._waiting, *self._fills_waiting)]
        ids += [i for rows in self._running.values() for i in rows]
        ids += list(self._filling[1]) if self._filling else []
        self._waiting.clear()
        self._fills_waiting.clear()
        self._running.clear()
        self._filling = None
        return tuple(ids)

    # -- the plan ---------------------------------------------------------------------------------

    def schedule(self, stopped: Callable[[int], bool] = lambda _: False) -> Plan:
        """The next turn: who joins, which batches step, which fills run; ``stopped(id)`` drops."""
        dropped: list[int] = []
        joins: dict[str, list[int]] = {}
        keep: collections.deque[_Waiting] = collections.deque()
        while self._waiting:
            waiting = self._waiting.popleft()
            if stopped(waiting.request_id):
                dropped.append(waiting.request_id)
                continue
            taken = joins.setdefault(waiting.model, [])
            if len(self._running.get(waiting.model, ())) + len(taken) < self.max_batch_size:
                taken.append(waiting.request_id)
            else:
                keep.append(waiting)
        self._waiting = keep
        for model, ids in joins.items():
            if ids:
                self._running.setdefault(model, {}).update(dict.fromkeys(ids))
        fill_start = None
        if self._filling is None:
            fill_start = self._take_fills(stopped, dropped)
            self._filling = fill_start
        return Plan(
            joins={m: tuple(ids) for m, ids in joins.items() if ids},
            steps=tuple(self._running),
            fill_start=fill_start,
            fill_step=self._filling is not None,
            dropped=tuple(dropped),
        )

    def _take_fills(
        self, stopped: Callable[[int], bool], dropped: list[int]
    ) -> tuple[str, tuple[int, ...]] | None:
        taken: list[_Waiting] = []
        keep: collections.deque[_Waiting] = collections.deque()
        while self._fills_waiting:
            waiting = self._fills_waiting.popleft()
            if stopped(waiting.request_id):
                dropped.append(waiting.request_id)
                continue
            if (not taken or waiting.model == taken[0].model) and len(taken) < self.max_batch_size:
                taken.append(waiting)
            else:
                keep.append(waiting)
        self._fills_waiting = keep
        return (taken[0].model, tuple(w.request_id for w in taken)) if taken else None

    def rows(self, model: str) -> tuple[int, ...]:
        """The ids in the model's batch, in the order they joined (the joiners of this turn too)."""
        return tuple(self._running.get(model, ()))

    # -- figures ----------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return sum(len(rows) for rows in self._running.values())

    @property
    def waiting(self) -> int:
        return len(self._waiting) + len(self._fills_waiting)

    @property
    def filling(self) -> int:
        return len(self._filling[1]) if self._filling else 0

    @property
    def idle(self) -> bool:
        return not (self._waiting or self._fills_waiting or self._running or self._filling)
