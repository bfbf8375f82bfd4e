"""``transcord``: one command for what an operator does, so a service unit needs no ``python -m``.

``run`` is what ``python bot.py`` does: bot.py calls :func:`start_bot` here too, so both read the
settings (environment, ``.env``, ``transcord.toml``) and start the bot the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.config_file import Settings, find_path, load_settings, read_file
from app.environment import ConfigError
from app.failures import FIX_SETTINGS, StartFailure
from app.root import open_store
from core.config import BotConfig
from model_service import fetch as fetcher
from model_service.config import ServiceConfig
from model_service.remote_source import is_remote
from storage import SchemaError
from storage.connect import redact
from storage.schema import migrations

log = logging.getLogger("transcord")
ROOT = Path(__file__).resolve().parents[1]  # the source tree: the benchmarks live only there
PASSTHROUGH = ("fetch", "bench")  # their options are the underlying tool's


def read_env(env_file: str) -> dict[str, str]:
    """The environment over ``env_file``: .env fills in what the real environment leaves unset."""
    from dotenv import dotenv_values

    return {**{k: v for k, v in dotenv_values(env_file).items() if v is not None}, **os.environ}


def load(env_file: str, config_path: str | None) -> Settings:
    """The one read of the settings; raises ConfigError naming the key (and the file)."""
    env = read_env(env_file)
    return load_settings(env, find_path(env, config_path))


def start_bot(env_file: str, config_path: str | None, *, playground: bool, sync: bool) -> int:
    """Read the settings and run the bot: Discord when a token is set, else the playground."""
    try:
        settings = load(env_file, config_path)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    config = dataclasses.replace(settings.config, force_sync=True) if sync else settings.config

    from app.logs import setup_logging

    setup_logging(config)
    if settings.file is not None:
        log.info("settings from %s and the environment", settings.file.path)
        if settings.overridden:
            log.info("the environment overrides %s", ", ".join(key.lower() for key in settings.overridden))
    try:
        if playground or not config.token_set:
            from app.playground import run_playground

            log.info("playground" if playground else "no DISCORD_TOKEN set: starting the local playground")
            return asyncio.run(run_playground(config))
        from app import App

        return asyncio.run(App(config).run())
    except KeyboardInterrupt:
        return 130


# -- check-config ---------------------------------------------------------------------------------


def summary(settings: Settings) -> list[str]:
    """The settings in effect, one a line; secrets only as set or unset."""
    config, service = settings.config, settings.config.service
    file = settings.file
    lines = [f"config file: {file.path if file else 'none (the environment and .env only)'}"]
    if settings.overridden:
        overridden = ", ".join(key.lower() for key in settings.overridden)
        lines.append(f"  the environment (or .env) overrides its {overridden}")
    lines.append(f"discord token: {'set' if config.token_set else 'unset: the local playground runs'}")
    lines.append(f"database: {database(config)}")
    lines.append("models:")
    for name, source in service.models.items():
        lines.append(f"  {name} = {source} ({_model_notes(settings, name)})")
    shown = {"token", "database_url", "database_path", "service", "models", "engines"}
    shown |= {"remote_flavours", "remote_tokenizers"}
    for holder in (config, service):
        for field in dataclasses.fields(holder):
            if field.repr and field.name not in shown:  # repr=False marks a secret
                lines.append(f"{field.name}: {_shown(getattr(holder, field.name))}")
    return lines


def _model_notes(settings: Settings, name: str) -> str:
    service: ServiceConfig = settings.config.service
    notes = [f"engine {service.engines.get(name, 'auto')}"]
    if is_remote(service.models[name]):
        notes.append(f"flavour {service.remote_flavours.get(name, 'auto')}")
        if name in service.remote_tokenizers:
            notes.append(f"tokenizer {service.remote_tokenizers[name]}")
        envs = settings.file.api_key_envs if settings.file else {}
        if name in service.remote_api_keys:
            notes.append(f"API key from {envs.get(name, 'its own variable')}")
        else:
            notes.append("API key from REMOTE_API_KEY" if service.remote_api_key else "no API key")
    return ", ".join(notes)


def _shown(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)


def database(config: BotConfig) -> str:
    """Where the store is, for people: the Postgres URL without its password."""
    if config.database_url is None:
        return f"SQLite {config.database_path}"
    return f"PostgreSQL {redact(config.database_url)}"


def check_config(settings: Settings) -> int:
    print("\n".join(summary(settings)))
    return 0


# -- migrate --------------------------------------------------------------------------------------


def migrate(settings: Settings) -> int:
    """Open the database the bot would (creating or upgrading its tables), close it, say so."""
    config = settings.config

    async def open_and_close() -> None:
        store = await open_store(config)
        await store.close()

    try:
        asyncio.run(open_and_close())
    except StartFailure as exc:  # Postgres: its message names the server, never the password
        print(exc.message, file=sys.stderr)
        return exc.exit_code
    except (OSError, sqlite3.DatabaseError, SchemaError) as exc:
        print(
            f"could not open the database {config.database_path} ({exc}); "
            "check DATABASE_PATH and the folder's permissions",
            file=sys.stderr,
        )
        return FIX_SETTINGS
    print(f"{database(config)}: up to date (schema version {len(migrations())})")
    return 0


# -- fetch, bench ---------------------------------------------------------------------------------


def fetch(env_file: str, config_path: str | None, args: list[str]) -> int:
    """``python -m model_service.fetch``, into the MODELS_DIR the bot reads (env, .env or file)."""
    asked = any(a in ("-h", "--help") or a.split("=")[0] == "--models-dir" for a in args)
    if not asked:
        env = read_env(env_file)
        models_dir = (env.get("MODELS_DIR") or "").strip()
        path = find_path(env, config_path)
        if not models_dir and path is not None:
            models_dir = read_file(path).env.get("MODELS_DIR", "")
        if models_dir:
            args = ["--models-dir", models_dir, *args]
    return fetcher.main(args)


def bench(args: list[str]) -> int:
    """``python -m benchmarks.throughput`` in this process's place (signals and exit code its own)."""
    if not (ROOT / "benchmarks" / "throughput.py").is_file():
        print("the benchmarks come with Transcord's source tree; this installation has none", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.throughput", *args], env)


# -- the command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="the config file (default: $TRANSCORD_CONFIG, else ./transcord.toml if there is one)",
    )
    common.add_argument(
        "--env-file", metavar="PATH", default=argparse.SUPPRESS, help="the .env file to read (default: .env)"
    )
    parser = argparse.ArgumentParser(
        prog="transcord",
        description="Transcord: Hugging Face models behind Discord slash commands",
        parents=[common],
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, about: str, *, passthrough: bool = False) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=text,  # one line in `transcord --help`
            description=about,
            parents=[] if name == "bench" else [common],
            add_help=not passthrough,  # --help goes to the tool, which says what it takes
            allow_abbrev=False,
        )

    sync_help = "sync slash commands even if unchanged"
    command(
        "run",
        "start the bot: Discord if a token is set, else playground",
        "Start the bot: on Discord when DISCORD_TOKEN is set, else the local playground.",
    ).add_argument("--sync", action="store_true", help=sync_help)
    command(
        "playground",
        "start the local playground, even with a token",
        "Start the local playground: an embedded Discord-compatible server and a terminal client.",
    ).add_argument("--sync", action="store_true", help=sync_help)
    command(
        "fetch",
        "set up the default model (model_service.fetch's options)",
        "",
        passthrough=True,
    )
    command(
        "check-config",
        "print the settings without secrets; exit 2 on a bad one",
        "Read the settings (environment, .env, the config file) and print them, secrets only as set "
        "or unset; a bad one exits 2 with a message naming it.",
    )
    command(
        "migrate",
        "create or upgrade the database's tables, then exit",
        "Open the database (SQLite at DATABASE_PATH, or DATABASE_URL), apply the migrations it lacks, "
        "and exit.",
    )
    command("bench", "the throughput benchmark (benchmarks.throughput's options)", "", passthrough=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if extra and args.command not in PASSTHROUGH:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    env_file: str = getattr(args, "env_file", ".env")
    config_path: str | None = getattr(args, "config", None)
    try:
        if args.command == "bench":
            return bench(extra)
        if args.command == "fetch":
            return fetch(env_file, config_path, extra)
        if args.command in ("run", "playground"):
            return start_bot(env_file, config_path, playground=args.command == "playground", sync=args.sync)
        settings = load(env_file, config_path)
        return check_config(settings) if args.command == "check-config" else migrate(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
