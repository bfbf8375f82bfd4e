"""The REST half of the loopback Discord: request parsing, recording, faults and routing.

Every request under ``/api/v10`` is recorded as a :class:`CallRecord` before anything else, so a
test can see calls the server does not know (answered with Discord's 404 body) as well as known ones.
The handlers themselves live in :mod:`loopback.routes`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from loopback.interactions import InteractionRecord
from loopback.records import CallRecord, Change, FileRecord
from loopback.state import ServerState
from loopback.wire import FormError, error_response, not_found

log = logging.getLogger("loopback.rest")

API_PREFIX = "/api/v10"


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code

    def response(self) -> web.Response:
        return error_response(self.status, self.message, self.code)


@dataclass(eq=False)
class Request:
    """A parsed request: path parameters, query, the JSON body (``payload_json`` for multipart), files."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    json: Any
    files: tuple[FileRecord, ...]
    call: CallRecord
    interaction: InteractionRecord | None = None  # set by handlers that act for an interaction


Handler = Callable[[Request], Awaitable[web.Response]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler
    auth: bool  # webhook and interaction-callback routes are authorised by their token instead


class Router:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *, auth: bool = True) -> None:
        """``template`` like ``/webhooks/{app}/{token}/messages/{message}``; parameters match one segment."""
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append(Route(method, re.compile(f"^{regex}$"), f"{method} {template}", handler, auth))

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path[len(API_PREFIX) :] or "/"
        body, files = await self._read_body(request)
        call = CallRecord(
            method=request.method,
            path=path,
            query=dict(request.query),
            json=body,
            files=files,
            at=time.monotonic(),
        )
        self.state.calls.append(call)
        response, parsed = await self._answer(request, call)
        call.status = response.status
        if response.status >= 400 and isinstance(response.body, bytes):
            try:
                call.error = json.loads(response.body)
            except ValueError:
                call.error = {"text": response.body.decode(errors="replace")}
        log.debug("%s %s -> %s", request.method, path, response.status)
        record = parsed.interaction if parsed else self._interaction_for(path)
        if record is not None:
            record.calls.append(call)
            if response.status >= 400 and call.fault is None:
                log.info("refused %s %s for %s: %s", request.method, path, record.label, call.error)
                record.rejected.append(call)
                self.state.bus.publish(Change("rejected", interaction=record, detail=f"{call.error}"))
        self.state.bus.publish(
            Change("call", interaction=record, detail=f"{request.method} {path} {call.status}")
        )
        return response

    async def _answer(self, request: web.Request, call: CallRecord) -> tuple[web.Response, Request | None]:
        fault, rule = await self.state.faults.apply(call.method, call.path)
        if fault is not None and rule is not None:
            call.fault = rule.describe()
            log.info("injected %s for %s %s", call.fault, call.method, call.path)
            return fault, None
        contract = self.state.contract
        violation = contract.check(call.method, call.path, call.json) if contract is not None else None
        if violation is not None:
            self.state.contract_violations.append(violation)
            log.warning("%s", violation.describe())
            return error_response(400, "Invalid Form Body", 50035, errors=violation.errors()), None
        for route in self.routes:
            match = route.pattern.match(call.path)
            if match is None or route.method != call.method:
                continue
            call.route = route.name
            if route.auth and request.headers.get("Authorization") != f"Bot {self.state.token}":
                return error_response(401, "401: Unauthorized"), None
            parsed = Request(
                call.method, call.path, match.groupdict(), call.query, call.json, call.files, call
            )
            try:
                return await route.handler(parsed), parsed
            except (ApiError, FormError) as exc:
                return exc.response(), parsed
        log.warning("no route for %s %s (answered 404)", call.method, call.path)
        return not_found(), None

    def _interaction_for(self, path: str) -> InteractionRecord | None:
        """The interaction a path is about, found by its token (for calls no handler saw)."""
        match = re.match(r"^/(?:webhooks|interactions)/\d+/([^/]+)", path)
        return self.state.by_token.get(match.group(1)) if match else None

    async def _read_body(self, request: web.Request) -> tuple[Any, tuple[FileRecord, ...]]:
        if request.content_type.startswith("multipart/"):
            return await self._read_multipart(request)
        raw = await request.read()
        if not raw:
            return None, ()
        try:
            return json.loads(raw), ()
        except ValueError:
            return raw.decode(errors="replace"), ()

    async def _read_multipart(self, request: web.Request) -> tuple[Any, tuple[FileRecord, ...]]:
        body: Any = None
        files: list[FileRecord] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue  # nested multipart: Discord does not use it
            data = await part.read(decode=True)
            if part.name == "payload_json":
                body = json.loads(data)
            elif part.filename is not None:
                content_type = part.headers.get("Content-Type")
                files.append(FileRecord(self.state.ids.next(), part.filename, bytes(data), content_type))
        if isinstance(body, dict):
            files = _describe(files, body)
        self.state.files.update((f.id, f) for f in files)
        return body, tuple(files)


def _describe(files: list[FileRecord], body: dict[str, Any]) -> list[FileRecord]:
    """Carry ``description`` from the payload's attachment entries onto the uploads they index."""
    message = body.get("data", body) if isinstance(body.get("data"), dict) else body
    described = []
    entries = {str(a.get("id")): a for a in message.get("attachments") or [] if isinstance(a, dict)}
    for index, file in enumerate(files):
        entry = entries.get(str(index), {})
        described.append(
            FileRecord(file.id, file.filename, file.data, file.content_type, entry.get("description"))
        )
    return described
