"""The bot itself: a ``commands.Bot`` whose dependencies come in through the constructor.

Cogs take the moderated model facade, the store and the config from here (typed with it under
``TYPE_CHECKING``); :class:`app.root.App` builds it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from core import replies
from core.answers import Answers
from core.config import BotConfig
from core.facade import ModeratedModels
from domain.settings import ChannelSettings
from model_service import ModelServiceAPI, shares
from model_service.shares import Share
from storage import Storage

log = logging.getLogger("transcord")

EXTENSIONS = (
    "cogs.generate",
    "cogs.chat",
    "cogs.talk",
    "cogs.controls",
    "cogs.fill_mask",
    "cogs.settings",
    "cogs.status",
    "cogs.mod",
    "cogs.quota",
    "cogs.story",
    "cogs.tokenize",
    "cogs.next",
    "cogs.tasks",
    "cogs.rewrite",
    "cogs.character",
)
# Command replies and follow-ups go through the interaction's webhook, which needs no channel
# permission; answering a mention or a Discord reply is a message of its own, which does, and
# opening a thread from a mention (the `threads` setting) needs Create Public Threads.
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    read_message_history=True,
    create_public_threads=True,
    manage_webhooks=True,  # characters and a story's cast speak through the bot's webhook
)


class Transcord(commands.Bot):
    """The bot: dependencies come in through the constructor; cogs take them from here."""

    _cut_off: asyncio.Task[None] | None = None  # ending the replies a process that died left

    def __init__(
        self,
        config: BotConfig,
        service: ModelServiceAPI,
        store: Storage,
        *,
        extensions: Sequence[str] = EXTENSIONS,
    ) -> None:
        # The bot has no voice features: discord.py's warnings about voice libraries only alarm admins.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True  # channels and threads, so a thread finds its parent's settings
        # Messages, for @mentions and replies to the bot's answers. Message content is privileged
        # (MESSAGE_CONTENT_INTENT): without it Discord still gives the bot the text of messages
        # that mention it, and a reply mentions it; channels that `listen: all` need it.
        intents.guild_messages = True
        intents.message_content = config.message_content
        # Sharded (ShardedTranscord): this process's range of Discord's shards.
        sharding: dict[str, Any] = (
            {"shard_count": config.shard_count, "shard_ids": list(config.shard_ids)}
            if isinstance(self, commands.AutoShardedBot)
            else {}
        )
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            **sharding,
        )
        self.config = config
        self.models = ModeratedModels(service)  # cogs reach the model through this alone
        self.store = store
        self.answers = Answers(  # generated replies with their buttons
            self.models,
            store.replies,
            cap=config.service.max_new_tokens_cap,
            edit_interval_s=config.stream_edit_interval_s,
        )
        self.started_at = time.monotonic()
        self.extension_names = tuple(extensions)
        self.failed_extensions: dict[str, str] = {}
        self.tree.error(self.on_app_command_error)

    # -- start-up ---------------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        # Before any cog: model commands are refused until moderation is in place, and stay
        # refused if it cannot load.
        await self.models.load_moderation(self.store.rules, self.store.limits)
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
            if not force and await self.store.meta.get_meta(key) == digest:
                log.info("commands unchanged for %s; not syncing", scope)
                continue
            await self.tree.sync(guild=guild)
            await self.store.meta.set_meta(key, digest)
            synced.append(scope)
            log.info("synced commands to %s", scope)
        return synced

    async def on_message(self, message: discord.Message) -> None:
        """No prefix commands here: messages are for the listeners (replies to answers) alone."""

    async def on_ready(self) -> None:
        assert self.user is not None
        url = discord.utils.oauth_url(
            self.application_id or self.user.id,
            permissions=INVITE_PERMISSIONS,
            scopes=("bot", "applications.commands"),
        )
        log.info("ready as %s (%s); invite: %s", self.user, self.user.id, url)
        if self._cut_off is None:  # once: Discord sends READY again after a new session
            self._cut_off = asyncio.create_task(self._finish_cut_off(), name="finish-cut-off-replies")

    async def _finish_cut_off(self) -> None:
        """Replies an earlier process of these shards was writing when it died (kill -9, a crash)
        end with the restart notice, rather than stay "thinking…"."""
        try:
            await self.answers.finish_cut_off(self, ours=self.serves)
        except Exception:
            log.exception("could not end the replies an earlier process left unfinished")

    def serves(self, guild_id: int | None) -> bool:
        """Whether this process gets the guild's events: one of its shards is the guild's,
        ``(guild_id >> 22) % SHARD_COUNT`` (a DM's is shard 0); unsharded, every guild is."""
        count = self.config.shard_count
        if count is None:
            return True
        return (0 if guild_id is None else (guild_id >> 22) % count) in self.config.shard_ids

    # -- what cogs use ------------------------------------------------------------------------------

    async def settings_for(self, source: discord.Interaction | discord.Message) -> ChannelSettings:
        """The settings where a command was used or a message was posted (a thread: its own,
        then its parent's). Every model command reads them first, so this is also where its task
        says whose turn its requests take in the model's queue (the channel's, the member's)."""
        channel_id = (
            source.channel_id if isinstance(source, discord.Interaction) else source.channel.id
        ) or 0
        parent_id = getattr(source.channel, "parent_id", None)
        guild_id = (
            source.guild_id if isinstance(source, discord.Interaction) else getattr(source.guild, "id", None)
        )
        settings = await self.store.settings.effective(guild_id, channel_id, parent_id)
        # What this task asks of the model next takes this channel's and member's turns in the queue.
        user = source.user if isinstance(source, discord.Interaction) else source.author
        shares.asking(Share(str(channel_id), str(user.id), settings.queue_weight))
        return settings

    async def moderator_role_id(self, guild_id: int) -> int | None:
        raw = await self.store.meta.get_meta(f"moderator_role:{guild_id}")
        return int(raw) if raw else None

    async def is_moderator(self, interaction: discord.Interaction) -> bool:
        """Manage Channels here, or the guild's moderator role; decided by the server, not the client."""
        if interaction.guild_id is None:
            return False
        return interaction.permissions.manage_channels or await self.has_moderator_role(interaction)

    async def has_moderator_role(self, interaction: discord.Interaction) -> bool:
        """The member holds the role set with /config moderator-role."""
        if interaction.guild_id is None:
            return False
        role_id = await self.moderator_role_id(interaction.guild_id)
        roles = getattr(interaction.user, "roles", [])
        return role_id is not None and any(r.id == role_id for r in roles)

    # -- errors: the one place they become replies ---------------------------------------------------

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await replies.send_error(interaction, error)

    # -- shutdown ---------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Let in-flight replies finish (up to the grace period), tell the rest, then close."""
        self.models.closing = True
        pending = set(self.models.inflight)
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


class ShardedTranscord(Transcord, commands.AutoShardedBot):
    """The bot on some of Discord's shards (``SHARD_COUNT``, ``SHARD_IDS``).

    Discord sends each guild's events to one shard, ``(guild_id >> 22) % SHARD_COUNT``; several
    processes, each with its own ``SHARD_IDS``, share the guilds between them, and the database
    (PostgreSQL) holds what they must agree on: settings, limits, conversations, stories.
    """


def build_bot(
    config: BotConfig, service: ModelServiceAPI, store: Storage, *, extensions: Sequence[str] = EXTENSIONS
) -> Transcord:
    """The bot for this config: sharded when SHARD_COUNT is set."""
    kind = ShardedTranscord if config.shard_count is not None else Transcord
    return kind(config, service, store, extensions=extensions)
