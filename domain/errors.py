"""The bot's own refusals: an error with the message a user reads, whatever raised it.

Part of the one error taxonomy (the model service's :class:`~model_service.ServiceError` and its
kinds); ``core.replies`` turns every error into the text a user sees.
"""

from __future__ import annotations

from model_service import ErrorKind, ServiceError


class UserFacingError(ServiceError):
    """An error of the bot itself (not the model service) with a message for the user.

    ``icon`` leads the reply: ❌ for a mistake, another for a refusal that is no mistake
    (🔒 a locked channel, ⏳ a busy one).
    """

    kind = ErrorKind.VALIDATION

    def __init__(self, message: str, *, icon: str = "❌", retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.icon = icon
