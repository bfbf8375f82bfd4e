"""The scheduling policy: which waiting requests join which batch, which batches step, which fills run.

No tensors, no event loop, no model (the shape of vLLM v1's scheduler): :meth:`Scheduler.schedule`
returns a :class:`Plan`; the engine core (``engine_core``) carries it out and reports back with
:meth:`Scheduler.finish` and :meth:`Scheduler.fill_done`. Its tests feed it ids and load nothing.

The policy: generation requests join their model's batch as far as ``max_batch_size`` leaves
room, taken fairly from a :class:`FairQueue`: groups (the bot's channels) in turn, a group's turn
taking as many requests as its weight, and within a group its members (who asked) in turn, each
member's own requests in the order they came. So a flood from one channel or one member cannot
push anyone else's request behind all of its own, and with one group of one member it is first
come, first served. Every model with rows steps once a turn, so a late request never waits for
earlier ones to finish. Fill-mask requests are filled in batches: when none is in
progress, the first waiting fill's model takes every waiting fill of that model (up to the same
cap), and that batch takes one forward a turn, between the generation steps. A request that
stopped (cancelled, timed out) while waiting is dropped unstarted.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Mapping
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
    group: str = ""  # whose turn it takes: a channel, opaque here
    member: str = ""  # who asked, within the group
    weight: int = 1  # the group's requests per turn


class FairQueue:
    """Waiting generation requests, taken round robin between groups (deficit round robin: a
    group's turn earns it ``weight`` requests) and between members within each group."""

    def __init__(self) -> None:
        # Both dicts are rings in insertion order: whoever took a turn goes to the back.
        self._groups: dict[str, dict[str, collections.deque[_Waiting]]] = {}
        self._credit: dict[str, float] = {}
        self._weight: dict[str, int] = {}

    def add(self, waiting: _Waiting) -> None:
        self._groups.setdefault(waiting.group, {}).setdefault(waiting.member, collections.deque()).append(
            waiting
        )
        self._weight[waiting.group] = max(1, waiting.weight)

    def __len__(self) -> int:
        return sum(len(q) for members in self._groups.values() for q in members.values())

    def __iter__(self) -> Iterator[_Waiting]:
        return (w for members in self._groups.values() for q in members.values() for w in q)

    def drop(self, stopped: Callable[[int], bool]) -> list[int]:
        """Take out every request that stopped while waiting; returns their ids."""
        dropped = []
        for group, members in list(self._groups.items()):
            for member, queue in list(members.items()):
                keep = collections.deque(w for w in queue if not stopped(w.request_id))
                dropped += [w.request_id for w in queue if w not in keep]
                if keep:
                    members[member] = keep
                else:
                    del members[member]
            if not members:
                self._forget(group)
        return dropped

    def take(self, room: dict[str, int], default_room: int) -> list[_Waiting]:
        """As many requests as the models' free slots (``room``, else ``default_room``) take, in
        fair order; ``room`` is used up as they are taken.

        The group at the front of the ring has the turn: it starts with ``weight`` credit and
        takes a request a credit; once its credit is spent (or it has nothing left that fits) the
        turn passes and it goes to the back. A turn cut short by full slots goes on next time.
        """
        taken: list[_Waiting] = []
        progress = True
        while progress and self._groups:
            progress = False
            for group in list(self._groups):
                members = self._groups[group]
                credit = self._credit.get(group, 0.0)
                if credit < 1:
                    credit = float(self._weight[group])  # a new turn
                while credit >= 1 and (waiting := self._next(members, room, default_room)) is not None:
                    taken.append(waiting)
                    credit -= 1
                    progress = True
                if not members:
                    self._forget(group)
                elif credit < 1:
                    self._credit[group] = 0.0
                    self._groups[group] = self._groups.pop(group)  # its turn is over: to the back
                else:
                    self._credit[group] = credit  # nothing more fits now: the turn goes on later
        return taken

    def order(self) -> list[int]:
        """Every waiting id in the order :meth:`take` would hand them out with unlimited room."""
        copy = FairQueue()
        copy._groups = {g: {m: collections.deque(q) for m, q in ms.items()} for g, ms in self._groups.items()}
        copy._credit, copy._weight = dict(self._credit), dict(self._weight)
        return [w.request_id for w in copy.take({}, default_room=len(self) + 1)]

    def _next(
        self, members: dict[str, collections.deque[_Waiting]], room: dict[str, int], default: int
    ) -> _Waiting | None:
        """The next member's first request whose model has a free slot; that member to the back."""
        for member in list(members):
            queue = members[member]
            waiting = next((w for w in queue if room.setdefault(w.model, default) > 0), None)
            if waiting is None:
                continue  # every model it waits for is full
            queue.remove(waiting)
            room[waiting.model] -= 1
            del members[member]
            if queue:
                members[member] = queue  # to the back of the group's ring
            return waiting
        return None

    def _forget(self, group: str) -> None:
        self._groups.pop(group, None)
        self._credit.pop(group, None)
        self._weight.pop(group, None)


class Scheduler:
    def __init__(self, max_batch_size: int) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.max_batch_size = max_batch_size
        self._waiting = FairQueue()
        self._fills_waiting: collections.deque[_Waiting] = collections.deque()
        self._running: dict[str, dict[int, None]] = {}  # model -> ids in its batch, in join order
        self._filling: tuple[str, tuple[int, ...]] | None = None

    # -- what comes in and goes out -------------------------------------------------------------

    def add(
        self,
        request_id: int,
        model: str,
        kind: Kind = "generate",
        *,
        group: str = "",
        member: str = "",
        weight: int = 1,
    ) -> None:
        if kind == "fill":
            self._fills_waiting.append(_Waiting(request_id, model))
        else:
            self._waiting.add(_Waiting(request_id, model, group, member, weight))

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
        self._waiting = FairQueue()
        self._fills_waiting.clear()
        self._running.clear()
        self._filling = None
        return tuple(ids)

    # -- the plan ---------------------------------------------------------------------------------

    def schedule(self, stopped: Callable[[int], bool] = lambda _: False) -> Plan:
        """The next turn: who joins, which batches step, which fills run; ``stopped(id)`` drops."""
        dropped = self._waiting.drop(stopped)
        room = {model: self.max_batch_size - len(rows) for model, rows in self._running.items()}
        joins: dict[str, list[int]] = {}
        for waiting in self._waiting.take(room, self.max_batch_size):
            joins.setdefault(waiting.model, []).append(waiting.request_id)
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

    def place(self, request_id: int) -> int | None:
        """Where a waiting generation request stands in the queue (1: next), or None: not waiting."""
        try:
            return self._waiting.order().index(request_id) + 1
        except ValueError:
            return None

    def waiting_shares(self) -> dict[str, int]:
        """Waiting generation requests by group."""
        out: dict[str, int] = {}
        for waiting in self._waiting:
            out[waiting.group] = out.get(waiting.group, 0) + 1
        return out

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
