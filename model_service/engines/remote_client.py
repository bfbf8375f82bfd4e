"""The remote engine's requests to one model server: what it serves, whether it answers, and the
streams to it (aiohttp, on the remote loop: ``remote_loop``).

Every failure becomes one of the service's errors (``remote_errors``), naming the model and the
server's address, never the API key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from model_service.engines.remote_errors import (
    ServerSilent,
    StreamCut,
    connection_detail,
    cut,
    error_of,
    failed_mid_reply,
    http_error,
    json_or_none,
    not_openai,
    silent,
    stream_cut,
    unreachable,
)
from model_service.engines.remote_loop import RemoteLoop
from model_service.errors import ModelUnavailableError, ServiceError
from model_service.remote_source import FLAVOUR, OWNED_BY, Flavour, RemoteSource

log = logging.getLogger(__name__)

__all__ = ["Health", "RemoteLoop", "RemoteServer", "ServerFacts", "ServerSilent", "StreamCut"]

PROBE_INTERVAL_S = 15.0  # how often each server is looked at while all answer (for /status)
DOWN_PROBE_S = 3.0  # how often while one does not: it is found again soon after it is back
CONNECT_TIMEOUT_S = 5.0  # at most this long to connect (less when REMOTE_TIMEOUT_S is less)
PROBE_TIMEOUT_S = 10.0  # a /v1/models answer is instant where the server is well


@dataclass(frozen=True)
class ServerFacts:
    """What the server's /v1/models said (or what its settings say where it said nothing)."""

    model_id: str | None  # the name requests carry; None: the server takes any
    flavour: Flavour
    context: int | None  # tokens a request may hold (vLLM's max_model_len, llama.cpp's slot n_ctx)
    parameters: int | None


@dataclass(frozen=True)
class Health:
    state: Literal["unknown", "reachable", "unreachable"]
    detail: str = ""
    at: float = 0.0  # time.monotonic() of the news


class RemoteServer:
    """One catalog model's server: its facts, its health, and the requests to it."""

    def __init__(
        self,
        name: str,
        source: RemoteSource,
        flavour: str,
        *,
        api_key: str | None,
        timeout_s: float,
        loop: RemoteLoop,
    ) -> None:
        self.name = name
        self.source = source
        self.flavour_setting = flavour
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.loop = loop
        self.facts: ServerFacts | None = None
        self.health = Health("unknown")
        self._failed: tuple[float, ServiceError] | None = None
        self._probing: asyncio.Lock | None = None

    @property
    def url(self) -> str:
        return self.source.base_url

    @property
    def who(self) -> str:
        return f"model `{self.name}`"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _timeout(self, *, read: float | None = None) -> aiohttp.ClientTimeout:
        """No bound on the whole (a reply takes what it takes); each silence is bounded."""
        connect = min(CONNECT_TIMEOUT_S, self.timeout_s)
        return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read or self.timeout_s)

    # -- facts ------------------------------------------------------------------------------------

    async def ensure_facts(self) -> ServerFacts:
        """The server's facts, asking it if they are not known yet.

        A failure the watcher saw lately is raised again at once: a request waits on this on the
        service's executor, which must not wait out a connect timeout for every request while a
        server is down (the watcher looks again every ``DOWN_PROBE_S``).
        """
        if self.facts is not None:
            return self.facts
        if self._probing is None:
            self._probing = asyncio.Lock()
        async with self._probing:  # rows joining together wait for one probe
            if self.facts is not None:
                return self.facts
            trusted = DOWN_PROBE_S + CONNECT_TIMEOUT_S + 1.0  # until the watcher's next answer
            if self._failed is not None and time.monotonic() - self._failed[0] < trusted:
                raise self._failed[1]
            return await self.probe()

    async def probe(self) -> ServerFacts:
        """Ask /v1/models what the server serves; raises what a user would be told."""
        session = await self.loop.session()
        try:
            try:
                async with session.get(
                    f"{self.url}/models",
                    headers=self._headers(),
                    timeout=self._timeout(read=min(self.timeout_s, PROBE_TIMEOUT_S)),
                ) as resp:
                    self._reachable()
                    if resp.status == 404:  # a server without the listing: its settings decide
                        payload: Any = {}
                    elif resp.status >= 400:
                        raise http_error(
                            self.who, self.url, resp.status, resp.reason, await resp.text(), resp.headers
                        )
                    else:
                        payload = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise self._connection_error(exc) from None
            self.facts = self._read_facts(payload)
        except ServiceError as exc:
            self._failed = (time.monotonic(), exc)
            raise
        self._failed = None
        return self.facts

    def _read_facts(self, payload: Any) -> ServerFacts:
        data = payload.get("data") if isinstance(payload, dict) else None
        cards = [c for c in data or [] if isinstance(c, dict) and c.get("id")]
        wanted = self.source.model_id
        card: dict[str, Any] | None = (
            next((c for c in cards if c["id"] == wanted), None) if wanted else (cards[0] if cards else None)
        )
        if wanted and cards and card is None:
            served = ", ".join(f"`{c['id']}`" for c in cards[:5])
            raise ModelUnavailableError(
                f"{self.who}: its server at {self.url} serves {served}, not `{wanted}` "
                "(the name after `#` in MODELS)"
            )
        card = card or {}
        owned_by = str(card.get("owned_by", ""))
        flavour = self.flavour_setting if self.flavour_setting != "auto" else OWNED_BY.get(owned_by, "openai")
        if self.facts is None:
            log.info(
                "%s: server %s (%s), serving %s", self.who, self.url, FLAVOUR[flavour].label, card.get("id")
            )
        found = card.get("meta")
        meta: dict[str, Any] = found if isinstance(found, dict) else {}
        return ServerFacts(
            model_id=card.get("id") or wanted,
            flavour=FLAVOUR[flavour],
            context=positive(card.get("max_model_len")) or positive(meta.get("n_ctx")),
            parameters=positive(meta.get("n_params")),
        )

    # -- requests ---------------------------------------------------------------------------------

    async def stream(self, path: str, body: Mapping[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """POST ``body`` with ``stream: true``; yields each server-sent event's JSON.

        Use it inside ``contextlib.aclosing``: leaving early must close the response (and so the
        connection, which is what stops the server).
        """
        session = await self.loop.session()
        answering = False
        try:
            async with session.post(
                f"{self.url}{path}", json=body, headers=self._headers(), timeout=self._timeout()
            ) as resp:
                self._reachable()
                if resp.status != 200:
                    raise http_error(
                        self.who, self.url, resp.status, resp.reason, await resp.text(), resp.headers
                    )
                answering = True
                async for event in self._events(resp):
                    yield event
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise self._connection_error(exc) from None
        except aiohttp.SocketTimeoutError:
            raise silent(self.who, self.url, self.timeout_s) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._cut(exc, answering) from None

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` and return the JSON answer (no streaming)."""
        session = await self.loop.session()
        try:
            async with session.post(
                f"{self.url}{path}", json=body, headers=self._headers(), timeout=self._timeout()
            ) as resp:
                self._reachable()
                text = await resp.text()
                if resp.status != 200:
                    raise http_error(self.who, self.url, resp.status, resp.reason, text, resp.headers)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise self._connection_error(exc) from None
        except aiohttp.SocketTimeoutError:
            raise silent(self.who, self.url, self.timeout_s) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._cut(exc, False) from None
        payload = json_or_none(text)
        if not isinstance(payload, dict):
            raise not_openai(self.who, self.url, text)
        if (error := error_of(payload)) is not None:
            raise http_error(self.who, self.url, int(error.get("code") or 500), None, text, {})
        return payload

    async def _events(self, resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
        """Server-sent events: ``data: {json}`` lines until ``data: [DONE]``; ``:`` lines are pings."""
        async for raw in resp.content:
            line = raw.decode("utf-8", "replace").strip()
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.strip()
            if field == "data" and value == "[DONE]":
                return
            if field not in ("data", "error"):
                continue  # event:, id:, retry:
            payload = json_or_none(value)
            if payload is None and value not in ("null", ""):
                raise not_openai(self.who, self.url, value)
            if not isinstance(payload, dict):
                continue
            if field == "error" or error_of(payload) is not None:
                raise failed_mid_reply(self.who, self.url, payload, value)
            yield payload
        raise stream_cut(self.who, self.url)

    # -- health -----------------------------------------------------------------------------------

    def _reachable(self) -> None:
        if self.health.state != "reachable":
            if self.health.state == "unreachable":
                log.info("%s: server %s answers again", self.who, self.url)
            self.health = Health("reachable", at=time.monotonic())

    def _unreachable(self, detail: str) -> None:
        if self.health.state != "unreachable":
            log.warning("%s: server %s is unreachable (%s)", self.who, self.url, detail)
        self.health = Health("unreachable", detail, time.monotonic())

    def _connection_error(self, exc: BaseException) -> ServiceError:
        """No answer at all (an answer that is not JSON is not an OpenAI API)."""
        if isinstance(exc, ValueError):
            return not_openai(self.who, self.url, str(exc))
        detail = connection_detail(exc, self.url.split("/")[2], min(CONNECT_TIMEOUT_S, self.timeout_s))
        self._unreachable(detail)
        return unreachable(self.who, self.url, detail)

    def _cut(self, exc: BaseException, answering: bool) -> ServiceError:
        self._unreachable(f"connection lost: {type(exc).__name__}")
        return cut(self.who, self.url, answering)


def positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
