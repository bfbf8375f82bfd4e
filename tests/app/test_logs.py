"""What a server admin reads in the log: one plain line per reconnect, never the token."""

from __future__ import annotations

import io
import logging
import sys

import aiohttp
import discord
import pytest

from app.logs import RECONNECT_MESSAGE, PlainReconnects, Redact

TOKEN = "MTk4NjIy.Log-Test.s3cret"


def emit(logger_name: str, message: str, *args: object, exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(PlainReconnects())
    handler.addFilter(Redact(TOKEN))
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        if exc is None:
            logger.error(message, *args)
        else:
            try:
                raise exc
            except BaseException:
                logger.exception(message, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_reconnect_is_one_warning_line_saying_what_went_wrong() -> None:
    dns = aiohttp.ClientConnectorDNSError(
        aiohttp.client_reqrep.ConnectionKey("gateway.discord.gg", 443, True, True, None, None, None),
        OSError(-2, "Name or service not known"),
    )
    text = emit("discord.client", RECONNECT_MESSAGE, 1.5, exc=dns)
    assert text == (
        "WARNING discord.client lost the connection to Discord: the gateway's name could not be "
        "resolved (check DNS); reconnecting in 1.50 s\n"
    )


def test_other_tracebacks_are_kept() -> None:
    text = emit("transcord", "something else broke", exc=RuntimeError("boom"))
    assert "Traceback" in text and "RuntimeError: boom" in text


@pytest.mark.parametrize("where", ["message", "traceback"])
def test_the_token_is_redacted_wherever_it_would_appear(where: str) -> None:
    if where == "message":
        text = emit("discord.http", "sent Authorization: Bot %s", TOKEN)
    else:
        text = emit("transcord", "failed", exc=discord.LoginFailure(f"bad token {TOKEN}"))
    assert TOKEN not in text and "<DISCORD_TOKEN>" in text, text
    assert sys.exc_info() == (None, None, None)
