"""A small Discord-compatible server (REST API v10 + gateway) on loopback, for e2e tests and the playground.

Start :class:`LoopbackDiscord`, point discord.py at it with :func:`point_discord_at`, invoke slash
commands, click the bot's buttons and post messages (replies and files too) as any member, or
another bot, in any channel, and read back what the bot did (its replies, the threads it starts
from messages) from the returned :class:`InteractionRecord` / :class:`MessageRecord`.
Its gateway shards guilds as Discord does (``LoopbackDiscord(shard_count=...)``). It imports
nothing of the bot.
"""

from __future__ import annotations

from loopback.client import Restore, point_discord_at
from loopback.commands import InvalidInvocation, OptionType
from loopback.faults import FaultRule
from loopback.interactions import InteractionRecord
from loopback.records import BotStopped, CallRecord, Change, FileRecord, MessageRecord, Version
from loopback.server import LoopbackDiscord, check_loopback
from loopback.sharding import IdentifyOutcome, IdentifyRecord
from loopback.world import Channel, ChannelType, Guild, Member, Overwrite, Perm, Role, User

__all__ = [
    "BotStopped",
    "CallRecord",
    "Change",
    "Channel",
    "ChannelType",
    "FaultRule",
    "FileRecord",
    "Guild",
    "IdentifyOutcome",
    "IdentifyRecord",
    "InteractionRecord",
    "InvalidInvocation",
    "LoopbackDiscord",
    "Member",
    "MessageRecord",
    "OptionType",
    "Overwrite",
    "Perm",
    "Restore",
    "Role",
    "User",
    "Version",
    "check_loopback",
    "point_discord_at",
]
