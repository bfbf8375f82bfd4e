"""Every way a model server can fail, as one of the service's errors (``model_service.errors``).

Each message names the model and the server's address (never the API key) and says what a user
or the bot's operator can do about it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from model_service.errors import (
    ModelUnavailableError,
    OverloadedError,
    RequestTimeoutError,
    ServiceError,
    ValidationError,
)

DEFAULT_RETRY_AFTER_S = 5.0  # a 429 that does not say when to come back


class ServerSilent(RequestTimeoutError):
    """The server sent nothing for the read timeout (after some text, the reply ends with it)."""


class StreamCut(ModelUnavailableError):
    """The stream ended without ``[DONE]`` (the server died or restarted, or a proxy cut it)."""


def connection_detail(exc: BaseException, host: str, connect_timeout: float) -> str:
    """Why there was no answer at all, in a few words: refused, no such host, no connection in time."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"can't resolve `{host}`"
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return "connected, but no answer in time"
    if isinstance(exc, aiohttp.ConnectionTimeoutError | TimeoutError):
        return f"no connection within {connect_timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error.strerror or type(exc.os_error).__name__
    return str(exc) or type(exc).__name__


def unreachable(who: str, url: str, detail: str) -> ServiceError:
    return ModelUnavailableError(
        f"{who} is unreachable: its server at {url} does not answer ({detail}); "
        "it may be down or still starting. Try again later"
    )


def cut(who: str, url: str, answering: bool) -> ServiceError:
    """The connection broke after the request went out (``answering``: in the reply's stream)."""
    when = "in the middle of the reply" if answering else "before answering"
    return StreamCut(
        f"{who}: its server at {url} dropped the connection {when} (it may have crashed or restarted); try again"
    )


def stream_cut(who: str, url: str) -> ServiceError:
    return StreamCut(
        f"{who}: its server at {url} closed the stream in the middle of the reply "
        "(it may have crashed or restarted); try again"
    )


def silent(who: str, url: str, timeout_s: float) -> ServerSilent:
    return ServerSilent(f"{who}: its server at {url} sent nothing for {timeout_s:g} s")


def failed_mid_reply(who: str, url: str, payload: dict[str, Any], raw: str) -> ServiceError:
    """An error event in the stream (a 429 there is the server's queue, full)."""
    detail = message_of(payload) or raw[:200]
    inner = payload.get("error")
    error: dict[str, Any] = inner if isinstance(inner, dict) else payload
    if error.get("code") == 429:
        return OverloadedError(
            f"{who}: its server at {url} is busy ({detail})", retry_after=DEFAULT_RETRY_AFTER_S
        )
    return ModelUnavailableError(f"{who}: its server at {url} failed in the middle of the reply ({detail})")


def not_openai(who: str, url: str, text: str) -> ServiceError:
    return ModelUnavailableError(
        f"{who}: its server at {url} does not answer as an OpenAI-compatible API does "
        f"(it sent `{text.strip()[:80]}`)"
    )


def http_error(
    who: str, url: str, status: int, reason: str | None, text: str, headers: Mapping[str, str]
) -> ServiceError:
    """A refusal by status code, in words a user can act on."""
    detail = message_of(json_or_none(text)) or text.strip()[:200] or "no details"
    said = f"{status} {reason}" if reason else str(status)
    if status == 429 or (status == 503 and "Retry-After" in headers):
        wait = retry_after(headers, json_or_none(text))
        return OverloadedError(
            f"{who}: its server at {url} is busy ({said}); try again in {wait:.0f} s",
            retry_after=wait,
        )
    if status in (401, 403):
        return ModelUnavailableError(
            f"{who}: its server at {url} refused the bot's credentials ({said}); "
            "the bot's operator should check its API key (REMOTE_API_KEY, or the model's api_key_env "
            "in the config file)"
        )
    if status == 404:
        return ModelUnavailableError(
            f"{who}: its server at {url} has no such model or endpoint ({said}: {detail})"
        )
    if status in (400, 413, 422):
        return ValidationError(f"{who}: its server at {url} refused the request ({said}: {detail})")
    if status == 503:
        return ModelUnavailableError(
            f"{who}: its server at {url} is not ready ({said}: {detail}); try again later"
        )
    return ModelUnavailableError(f"{who}: its server at {url} failed ({said}: {detail}); try again later")


def json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def error_of(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The error an answer carries (``{"error": {...}}``, or vLLM's ``{"object": "error", ...}``)."""
    error = payload.get("error")
    if isinstance(error, dict):
        return error
    if error is not None or payload.get("object") == "error":
        return payload
    return None


def message_of(payload: Any) -> str | None:
    """The human part of an error answer, in the shapes servers use."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    for candidate in (error.get("message") if isinstance(error, dict) else error, payload.get("message")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()[:200]
    detail = payload.get("detail")  # FastAPI
    return str(detail)[:200] if detail else None


def retry_after(headers: Mapping[str, str], payload: Any) -> float:
    for value in (
        headers.get("Retry-After"),
        payload.get("retry_after") if isinstance(payload, dict) else None,
    ):
        try:
            if value is not None and float(value) >= 0:
                return max(1.0, float(value))
        except (TypeError, ValueError):
            pass  # an HTTP date: rare from model servers; the default will do
    return DEFAULT_RETRY_AFTER_S
