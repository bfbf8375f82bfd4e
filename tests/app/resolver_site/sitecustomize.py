"""Loaded by a test's ``bot.py`` child process (on its PYTHONPATH): name resolution intercepted.

Every name the process looks up is appended to ``$RESOLVE_LOG`` as ``host port``. A name in
``$RESOLVE_MAP`` (JSON: host -> port) resolves to that port on 127.0.0.1; any other name fails as
an unknown host would, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import socket

_real_getaddrinfo = socket.getaddrinfo
_LOG = os.environ.get("RESOLVE_LOG", "")
_MAP: dict[str, int] = json.loads(os.environ.get("RESOLVE_MAP", "{}"))
_LOCAL = {"127.0.0.1", "::1", "localhost"}


def _getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name in _LOCAL:
        return _real_getaddrinfo(host, port, *args, **kwargs)
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(f"{name} {port}\n")
    if name in _MAP:
        return _real_getaddrinfo("127.0.0.1", _MAP[name], *args, **kwargs)
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


if _LOG or _MAP:
    socket.getaddrinfo = _getaddrinfo
