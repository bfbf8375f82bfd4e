"""Runs llmcord's own ``llmcord.py``, unchanged, against the loopback Discord server.

    PEER_VENV/bin/python -I benchmarks/peer_llmcord.py LLMCORD_PY API_BASE GATEWAY_URL

It runs in llmcord's venv (``benchmarks.peer`` makes it), not the bot's, from the folder that
holds llmcord's ``config.yaml``. It points discord.py at the server with the project's own
``point_discord_at``, loaded from its file (the rest of the ``loopback`` package needs the
server's dependencies), then runs ``llmcord.py`` as ``python llmcord.py`` would.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[1] / "loopback" / "client.py"


def main(argv: list[str]) -> None:
    source, api_base, gateway_url = argv
    spec = importlib.util.spec_from_file_location("loopback_client", CLIENT)
    assert spec is not None and spec.loader is not None
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    client.point_discord_at(api_base, gateway_url)
    runpy.run_path(source, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
