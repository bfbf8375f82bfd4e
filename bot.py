"""Transcord's entry point: read the config once, build the service and the store, run the bot.

With ``DISCORD_TOKEN`` set, the bot connects to Discord (or to the Discord-compatible server
named by ``DISCORD_API_BASE`` / ``DISCORD_GATEWAY_URL``). Without it, or with ``--playground``,
it runs the local playground: an embedded Discord-compatible server and a terminal client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils import replies
from cogs.utils.config import BotConfig, ConfigError, load_config, log_level_number
from cogs.utils.settings import ChannelSettings
from cogs.utils.store import Store
from loopback.client import point_discord_at
from model_service import ModelServiceAPI, ServiceError

log = logging.getLogger("transcord")

Guard = Callable[
    [discord.Interaction, tuple[str, ...]], contextlib.AbstractAsyncContextManager[Callable[[str], str]]
]

EXTENSIONS = (
    "cogs.generate",
    "cogs.fill_mask",
    "cogs.settings",
    "cogs.status",
    "cogs.moderation",
    "cogs.story",
)
# Interaction replies and follow-ups go through the interaction's webhook, which needs no
# channel permission; the bot asks for none beyond being present.
INVITE_PERMISSIONS = discord.Permissions.none()


class Transcord(commands.Bot):
    """The bot: dependencies come in through the constructor; cogs take them from here."""

    def __init__(
        self,
        config: BotConfig,
        service: ModelServiceAPI,
        store: Store,
        *,
        extensions: Sequence[str] = EXTENSIONS,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels and threads, so a thread finds its parent's settings
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.config = config
        self.service = service
        self.store = store
        self.started_at = time.monotonic()
        self.extension_names = tuple(extensions)
        self.failed_extensions: dict[str, str] = {}
        self._inflight: set[asyncio.Task[object]] = set()
        self._closing = False
        # Context-manager factories run around every model command (moderation adds its own).
        self.guards: list[Guard] = []
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    # -- start-up ---------------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        for name in self.extension_names:
            try:
                await self.load_extension(name)
            except Exception as exc:
                # One broken feature must not take the others down.
                self.failed_extensions[name] = f"{type(exc).__name__}: {exc}"
                log.exception("could not load %s; the other commands still work", name)
        await self.sync_commands()

    def _command_payload(self, guild: discord.abc.Snowflake | None) -> list[dict[str, object]]:
        commands_ = self.tree.get_commands(guild=guild)
        return sorted((c.to_dict(self.tree) for c in commands_), key=lambda c: str(c["name"]))

    async def sync_commands(self, *, force: bool | None = None) -> list[str]:
        """Sync only when the command definitions changed (Discord limits creations per day)."""
        force = self.config.force_sync if force is None else force
        targets: list[discord.Object | None] = [discord.Object(g) for g in self.config.guild_ids] or [None]
        synced = []
        for guild in targets:
            if guild is not None:
                self.tree.copy_global_to(guild=guild)
            scope = f"guild:{guild.id}" if guild else "global"
            digest = hashlib.sha256(
                json.dumps(self._command_payload(guild), sort_keys=True, default=str).encode()
            ).hexdigest()
            key = f"command_hash:{self.application_id}:{scope}"
            if not force and await self.store.get_meta(key) == digest:
                log.info("commands unchanged for %s; not syncing", scope)
                continue
            await self.tree.sync(guild=guild)
            await self.store.set_meta(key, digest)
            synced.append(scope)
            log.info("synced commands to %s", scope)
        return synced

    async def on_ready(self) -> None:
        assert self.user is not None
        url = discord.utils.oauth_url(
            self.application_id or self.user.id,
            permissions=INVITE_PERMISSIONS,
            scopes=("bot", "applications.commands"),
        )
        log.info("ready as %s (%s); invite: %s", self.user, self.user.id, url)

    # -- what cogs use ------------------------------------------------------------------------------

    async def settings_for(self, interaction: discord.Interaction) -> ChannelSettings:
        channel_id = interaction.channel_id or 0
        parent_id = getattr(interaction.channel, "parent_id", None)
        return await self.store.effective(interaction.guild_id, channel_id, parent_id)

    async def moderator_role_id(self, guild_id: int) -> int | None:
        raw = await self.store.get_meta(f"moderator_role:{guild_id}")
        return int(raw) if raw else None

    async def is_moderator(self, interaction: discord.Interaction) -> bool:
        """Manage Channels here, or the guild's moderator role; decided by the server, not the client."""
        if interaction.guild_id is None:
            return False
        return interaction.permissions.manage_channels or await self.has_moderator_role(interaction)

    async def has_moderator_role(self, interaction: discord.Interaction) -> bool:
        """The member holds the role set with /settings moderator-role."""
        if interaction.guild_id is None:
            return False
        role_id = await self.moderator_role_id(interaction.guild_id)
        roles = getattr(interaction.user, "roles", [])
        return role_id is not None and any(r.id == role_id for r in roles)

    @contextlib.asynccontextmanager
    async def model_command(
        self, interaction: discord.Interaction, *texts: str
    ) -> AsyncIterator[Callable[[str], str]]:
        """Run a model command: refused while restarting, guarded, tracked for shutdown.

        ``texts`` are what the user sent (prompts); each registered guard (moderation) may
        refuse them by raising, and returns a transform for the model's output (redaction).
        Yields the combined output transform.
        """
        if self._closing:
            raise replies.UserFacingError("The bot is restarting; please try again in a minute.")
        task = asyncio.current_task()
        assert task is not None
        async with contextlib.AsyncExitStack() as stack:
            transforms = [await stack.enter_async_context(g(interaction, texts)) for g in self.guards]
            self._inflight.add(task)  # type: ignore[arg-type]
            stack.callback(self._inflight.discard, task)
            yield _compose(transforms)

    # -- errors: the one place they become replies ---------------------------------------------------

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await replies.send_error(interaction, error)

    # -- shutdown ---------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Let in-flight replies finish (up to the grace period), tell the rest, then close."""
        self._closing = True
        pending = set(self._inflight)
        if pending:
            log.info(
                "waiting up to %.0f s for %d in-flight replies", self.config.shutdown_grace_s, len(pending)
            )
            _, late = await asyncio.wait(pending, timeout=self.config.shutdown_grace_s)
            for task in late:
                task.cancel()  # the reply code tells its user the bot is restarting
            if late:
                await asyncio.wait(late, timeout=5)
        await self.close()


def _compose(transforms: Sequence[Callable[[str], str]]) -> Callable[[str], str]:
    def apply(text: str) -> str:
        for transform in transforms:
            text = transform(text)
        return text

    return apply


# -- running -----------------------------------------------------------------------------------


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


async def build_service(config: BotConfig) -> ModelServiceAPI:
    from model_service.service import ModelService  # torch loads here, not at import time

    service = ModelService(config.service)
    await service.start()
    return service


async def open_store(config: BotConfig) -> Store:
    config.database_path.parent.mkdir(parents=True, exist_ok=True)
    return await Store.open(
        config.database_path, ChannelSettings(max_new_tokens=config.default_max_new_tokens)
    )


async def run_discord(config: BotConfig) -> int:
    point_discord_at(config.api_base, config.gateway_url)
    log.info("connecting to %s", config.api_base or "Discord")
    service = await build_service(config)
    store = await open_store(config)
    bot = Transcord(config, service, store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(bot.start(config.token or ""))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done() and runner.exception() is not None:
            raise runner.exception()  # type: ignore[misc]
        log.info("shutting down")
        await bot.shutdown()
        return 0
    except discord.LoginFailure:
        log.error("Discord refused the token (DISCORD_TOKEN); check it in the developer portal")
        return 1
    finally:
        stopper.cancel()
        if not bot.is_closed():
            await bot.close()
        await service.close()  # type: ignore[attr-defined]
        await store.close()


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
    discord.utils.setup_logging(level=log_level_number(config), root=True)
    if args.playground or not config.token_set:
        from loopback.playground import run_playground

        log.info(
            "no DISCORD_TOKEN set: starting the local playground" if not args.playground else "playground"
        )
        return _run(run_playground(config))
    log.info("DISCORD_TOKEN is set: connecting to %s", config.api_base or "Discord")
    return _run(run_discord(config))


def _run(coro: Coroutine[object, object, int]) -> int:
    try:
        return asyncio.run(coro)
    except ServiceError as exc:
        # A model that can't load is the usual first-run problem: say what and how to fix it.
        log.error("%s", exc.message)
        log.error("the default model is set up with: .venv/bin/python -m model_service.fetch")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
