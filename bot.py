"""Transcord's entry point: parse the arguments, read the config once, hand it to the app.

``transcord run`` (app/cli.py) is the same start: both go through :func:`app.cli.start_bot`.

With ``DISCORD_TOKEN`` set, the bot connects to Discord (or, with both ``DISCORD_API_BASE`` and
``DISCORD_GATEWAY_URL`` set, to that Discord-compatible server). Without it, or with
``--playground``, it runs the local playground: an embedded Discord-compatible server and a
terminal client.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app.cli import start_bot


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Transcord: Hugging Face models behind Discord slash commands"
    )
    parser.add_argument(
        "--playground", action="store_true", help="run the local playground even with a token"
    )
    parser.add_argument("--sync", action="store_true", help="sync slash commands even if unchanged")
    parser.add_argument("--env-file", default=".env", help="the .env file to read (default: .env)")
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="the config file (default: $TRANSCORD_CONFIG, else ./transcord.toml if there is one)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return start_bot(args.env_file, args.config, playground=args.playground, sync=args.sync)


if __name__ == "__main__":
    sys.exit(main())
