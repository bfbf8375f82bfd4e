"""Logging for a server admin: one plain line per reconnect attempt, and never the token."""

from __future__ import annotations

import logging

import aiohttp
import discord

from app.environment import log_level_number
from core.config import BotConfig

RECONNECT_MESSAGE = "Attempting a reconnect in %.2fs"  # discord.Client.connect logs it with a traceback


def gateway_trouble(exc: BaseException | None) -> str:
    """What went wrong with the gateway connection, in words."""
    if isinstance(exc, discord.ConnectionClosed):
        return f"the gateway closed the connection (code {exc.code})"
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"the gateway answered {exc.status} instead of opening a websocket"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "the gateway's name could not be resolved (check DNS)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"the gateway could not be reached ({exc.os_error.strerror or exc.os_error})"
    if isinstance(exc, TimeoutError):
        return "the gateway did not answer in time"
    return f"{type(exc).__name__}: {exc}"


class PlainReconnects(logging.Filter):
    """discord.py logs each gateway reconnect with a full traceback; say it in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "discord.client" and record.msg == RECONNECT_MESSAGE and record.exc_info:
            record.msg = "lost the connection to Discord: %s; reconnecting in %.2f s"
            record.args = (gateway_trouble(record.exc_info[1]), *(record.args or ()))
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


class Redact(logging.Filter):
    """Replaces a secret wherever it would appear in a formatted record (message or traceback)."""

    def __init__(self, secret: str, placeholder: str = "<DISCORD_TOKEN>") -> None:
        super().__init__()
        self.secret = secret
        self.placeholder = placeholder

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, self.placeholder), None
        if record.exc_info:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            if self.secret in text:
                record.exc_text = text.replace(self.secret, self.placeholder)
        return True


def setup_logging(config: BotConfig) -> None:
    """discord.py's coloured handler on the root logger, with the admin-facing filters on it."""
    discord.utils.setup_logging(level=log_level_number(config), root=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(PlainReconnects())
        if config.token:
            handler.addFilter(Redact(config.token))
