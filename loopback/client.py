"""Pointing discord.py at a Discord-compatible server other than discord.com.

discord.py keeps both addresses as class attributes, so this is process-wide: the bot sets it once
from its config, and tests restore it afterwards (the returned object is a callable and a context
manager).
"""

from __future__ import annotations

import logging
from types import TracebackType

import discord.gateway
import discord.http
import yarl

log = logging.getLogger("loopback.client")


class Restore:
    """Puts back the addresses discord.py had before :func:`point_discord_at`; safe to call twice."""

    def __init__(self, api_base: str, gateway: yarl.URL) -> None:
        self._api_base = api_base
        self._gateway = gateway
        self._done = False

    def __call__(self) -> None:
        if self._done:
            return
        discord.http.Route.BASE = self._api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._gateway
        self._done = True

    def __enter__(self) -> Restore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self()


def point_discord_at(api_base: str, gateway_url: str) -> Restore:
    """Send discord.py's REST calls to ``api_base`` (ending in ``/api/v10``) and its gateway to ``gateway_url``.

    ``Route.BASE`` is a plain string that paths are appended to; ``DEFAULT_GATEWAY`` must be a
    ``yarl.URL`` because discord.py calls ``.with_query()`` on it.
    """
    if not api_base.startswith(("http://", "https://")):
        raise ValueError(f"api_base must be an http(s) URL, got {api_base!r}")
    if not gateway_url.startswith(("ws://", "wss://")):
        raise ValueError(f"gateway_url must be a ws(s) URL, got {gateway_url!r}")
    restore = Restore(discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    log.info("discord.py now talks to %s (gateway %s)", api_base, gateway_url)
    return restore
