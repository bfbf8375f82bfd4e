"""Why a bot could not connect or stay connected, in one line a server admin can act on.

Each line says what happened and what to check; none carries a traceback or the token.
"""

from __future__ import annotations

import asyncio

import aiohttp
import discord
import yarl

from core.config import BotConfig

STATUS_PAGE = "https://discordstatus.com"
# Exit statuses a restart policy can tell apart (systemd: Restart=on-failure, RestartPreventExitStatus=2).
TRY_AGAIN = 1  # Discord unreachable or failing: starting again later may work
FIX_SETTINGS = 2  # a setting (the token, a config value) must change first: restarting cannot help


class StartFailure(Exception):
    """The bot could not start or go on; ``message`` is the one line to log, ``exit_code`` the status."""

    def __init__(self, message: str, *, exit_code: int = TRY_AGAIN) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def rest_host(config: BotConfig) -> str:
    return yarl.URL(config.api_base).host or config.api_base if config.api_base else "discord.com"


def explain(exc: BaseException | None, config: BotConfig) -> StartFailure:
    """The plain line for the way a connection ended (``exc`` None: it ended without an error)."""
    host = rest_host(config)
    if exc is None or isinstance(exc, asyncio.CancelledError):
        return StartFailure("the connection to Discord ended")
    if isinstance(exc, discord.LoginFailure):
        return StartFailure(
            "Discord refused the bot token (DISCORD_TOKEN): copy a new one from the Discord developer "
            "portal (your application -> Bot -> Reset Token) into .env",
            exit_code=FIX_SETTINGS,
        )
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return StartFailure(
            "Discord refused the gateway intents this bot asked for; enable them in the developer portal",
            exit_code=FIX_SETTINGS,
        )
    if isinstance(exc, discord.ConnectionClosed) and exc.code == 4004:
        return StartFailure(
            "Discord's gateway refused the bot token (DISCORD_TOKEN, close code 4004)", exit_code=FIX_SETTINGS
        )
    if isinstance(exc, discord.DiscordServerError):
        return StartFailure(
            f"Discord answered {exc.status} {exc.response.reason or ''}".rstrip()
            + f" when the bot logged in: Discord is having trouble (see {STATUS_PAGE}); "
            "start the bot again in a few minutes"
        )
    if isinstance(exc, discord.HTTPException) and exc.status == 429:
        return StartFailure(
            "Discord is refusing this machine's requests (429 Too Many Requests with no retry time: "
            "a temporary ban after too many invalid requests, often an hour); wait, then start again"
        )
    if isinstance(exc, discord.HTTPException):
        return StartFailure(f"Discord answered {exc.status} when the bot logged in: {exc.text or exc}")
    if isinstance(exc, OSError | aiohttp.ClientError | TimeoutError):  # connector errors are both
        return StartFailure(
            f"could not reach Discord at {host} ({_reason(exc)}); check this machine's internet "
            f"connection, DNS and firewall (HTTPS to {host}:443 must be allowed)"
        )
    if isinstance(exc, discord.ConnectionClosed):
        return StartFailure(f"Discord's gateway closed the connection (code {exc.code}: {exc.reason})")
    return StartFailure(f"the bot stopped: {type(exc).__name__}: {exc}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "its name could not be resolved"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "its TLS certificate was not trusted"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error.strerror or str(exc.os_error)
        return f"connection failed: {cause}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"
