"""Whose turn a request takes in the queue: a group (the bot's channel) and a member in it.

The service knows nothing of Discord: a share is two opaque names and the group's weight. The
caller says whose requests come next with :func:`asking`, in the task that then makes them (a
context variable, so each command's task carries its own); requests made with none set share one
group. The scheduler takes waiting requests round robin between groups, then between members
(``scheduler.FairQueue``).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Share:
    group: str = ""
    member: str = ""
    weight: int = 1  # the group's requests per turn


_CURRENT: ContextVar[Share] = ContextVar("transcord_share", default=Share())  # noqa: B039  (frozen)


def asking(share: Share) -> None:
    """The requests this task makes from now on take ``share``'s turns."""
    _CURRENT.set(share)


def current() -> Share:
    return _CURRENT.get()
