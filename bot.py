"""Transcord's entry point: parse the arguments, read the config once, hand it to the app.

With ``DISCORD_TOKEN`` set, the bot connects to Discord (or, with both ``DISCORD_API_BASE`` and
``DISCORD_GATEWAY_URL`` set, to that Discord-compatible server). Without it, or with
``--playground``, it runs the local playground: an embedded Discord-compatible server and a
terminal client.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence

from app.environment import ConfigError, load_config

log = logging.getLogger("transcord")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Transcord: Hugging Face models behind Discord slash commands"
    )
    parser.add_argument(
        "--playground", action="store_true", help="run the local playground even with a token"
    )
    parser.add_argument("--sync", action="store_true", help="sync slash commands even if unchanged")
    parser.add_argument("--env-file", default=".env", help="the .env file to read (default: .env)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from dotenv import dotenv_values

    # .env fills in what the real environment leaves unset; this is the one read of settings.
    env = {**{k: v for k, v in dotenv_values(args.env_file).items() if v is not None}, **os.environ}
    try:
        config = load_config(env)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.sync:
        config = dataclasses.replace(config, force_sync=True)

    from app.logs import setup_logging

    setup_logging(config)
    try:
        if args.playground or not config.token_set:
            from app.playground import run_playground

            log.info(
                "playground" if args.playground else "no DISCORD_TOKEN set: starting the local playground"
            )
            return asyncio.run(run_playground(config))
        from app import App

        return asyncio.run(App(config).run())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
