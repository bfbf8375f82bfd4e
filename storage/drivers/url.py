"""A database URL as messages may show it: everything but the password."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit


def redact(url: str) -> str:
    """``postgresql://user@host:port/db``: the URL without its password and query.

    The query is left out whole: libpq-style URLs may carry ``?password=...`` there too.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # e.g. a port that is not a number
        return "the DATABASE_URL"
    user = f"{unquote(parts.username)}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def scrub(text: str, url: str) -> str:
    """``text`` with every password ``url`` carries replaced, in case a driver message quotes it."""
    for secret in _passwords(url):
        text = text.replace(secret, "***")
    return text


def _passwords(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:  # no telling the password apart: hide the whole URL
        return [url]
    found = [parts.password or ""] + [value for key, value in parse_qsl(parts.query) if key == "password"]
    return [secret for raw in found for secret in {raw, unquote(raw)} if secret]
