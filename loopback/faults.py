"""Injected REST faults: 429s the way Discord sends them, 5xx errors and added latency."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from aiohttp import web

from loopback.wire import error_response, json_response


@dataclass(eq=False)
class FaultRule:
    """Answers up to ``count`` matching calls (None: every one) instead of the real route.

    ``method`` None matches any method; ``path_contains`` matches a substring of the path under
    ``/api/v10``. ``hits`` counts the calls it answered, so a test can check the fault fired.
    """

    kind: str  # "429", "ban" (a 429 from Cloudflare's edge), "error" or "delay"
    method: str | None
    path_contains: str
    count: int | None
    status: int = 0
    retry_after: float = 0.0
    is_global: bool = False
    delay: float = 0.0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        return (self.method is None or self.method == method) and self.path_contains in path

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.hits >= self.count

    def describe(self) -> str:
        return f"{self.kind}:{self.status or self.delay}"


class Faults:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> FaultRule:
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    async def apply(self, method: str, path: str) -> tuple[web.Response | None, FaultRule | None]:
        """Sleep for matching delays, then return the first matching 429/5xx response, if any."""
        for rule in self.rules:
            if rule.kind == "delay" and rule.matches(method, path):
                rule.hits += 1
                await asyncio.sleep(rule.delay)
        for rule in self.rules:
            if rule.kind != "delay" and rule.matches(method, path):
                rule.hits += 1
                answers = {"429": rate_limited, "ban": banned}
                return answers.get(rule.kind, lambda r: server_error(r.status))(rule), rule
        return None, None


def rate_limited(rule: FaultRule) -> web.Response:
    """A 429 as Discord sends it. discord.py retries only with ``Via`` and a JSON ``retry_after``."""
    retry = rule.retry_after
    body = {"message": "You are being rate limited.", "retry_after": retry, "global": rule.is_global}
    headers = {
        "Via": "1.1 google",
        "Retry-After": str(max(1, math.ceil(retry))),
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": f"{time.time() + retry:.3f}",
        "X-RateLimit-Reset-After": f"{retry:.3f}",
        "X-RateLimit-Bucket": "loopback-injected",
        "X-RateLimit-Scope": "global" if rule.is_global else "user",
    }
    if rule.is_global:
        headers["X-RateLimit-Global"] = "true"
    return json_response(body, status=429, headers=headers)


def banned(rule: FaultRule) -> web.Response:
    """Cloudflare's 429 after too many invalid requests: an HTML page, no ``Via``, no ``retry_after``."""
    text = "<html><body><h1>Error 1015</h1><p>You are being rate limited.</p></body></html>"
    return web.Response(status=429, text=text, content_type="text/html")


def server_error(status: int) -> web.Response:
    if status == 500:
        return error_response(500, "500: Internal Server Error")
    # Discord's edge answers 502/503/504 with an HTML page rather than JSON.
    text = f"<html><body><h1>{status} Server Error</h1></body></html>"
    return web.Response(status=status, text=text, content_type="text/html")
