"""One error taxonomy for everything the model service can refuse or fail at.

Each error carries a ``kind`` (what the caller may do about it) and a message
that is fit to show a user verbatim. The bot maps kinds to replies in one place.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    VALIDATION = "validation"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    MODEL_UNAVAILABLE = "model_unavailable"
    INTERNAL = "internal"


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ValidationError(ServiceError):
    """The request itself is wrong; the message names the parameter."""

    kind = ErrorKind.VALIDATION


class OverloadedError(ServiceError):
    """The queue is full; ``retry_after`` (seconds) says when to try again."""

    kind = ErrorKind.OVERLOADED


class RequestTimeoutError(ServiceError):
    """The request ran out of time before producing anything usable."""

    kind = ErrorKind.TIMEOUT


class ModelUnavailableError(ServiceError):
    """The model can't be loaded or can't do the task; the message says why."""

    kind = ErrorKind.MODEL_UNAVAILABLE


class InternalError(ServiceError):
    """Something broke that the user can't fix; details are in the log."""

    kind = ErrorKind.INTERNAL
