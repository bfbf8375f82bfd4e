"""Everything the REST side and the gateway side share, in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loopback.commands import CommandRegistry
from loopback.contract import Contract, Violation
from loopback.faults import Faults
from loopback.interactions import InteractionRecord
from loopback.records import CallRecord, ChangeBus, FileRecord, MessageRecord
from loopback.sharding import Sharding
from loopback.wire import Snowflakes
from loopback.world import World


@dataclass(eq=False)
class ServerState:
    ids: Snowflakes
    world: World
    token: str
    commands: CommandRegistry
    sharding: Sharding = field(default_factory=Sharding)
    bus: ChangeBus = field(default_factory=ChangeBus)
    faults: Faults = field(default_factory=Faults)
    calls: list[CallRecord] = field(default_factory=list)
    interactions: dict[int, InteractionRecord] = field(default_factory=dict)
    by_token: dict[str, InteractionRecord] = field(default_factory=dict)
    messages: dict[int, MessageRecord] = field(default_factory=dict)
    channel_log: dict[int, list[MessageRecord]] = field(default_factory=dict)
    files: dict[int, FileRecord] = field(default_factory=dict)
    response_deadline: float | None = 3.0
    base_url: str = ""
    # Server Settings -> Integrations: (guild id, command name) -> role, member or guild (@everyone)
    # ids a server admin granted the command to, over its default_member_permissions.
    command_grants: dict[tuple[int, str], set[int]] = field(default_factory=dict)
    # Discord's published contract every REST call is checked against (None: not checked), and
    # the calls it refused, for a test to assert there were none.
    contract: Contract | None = None
    contract_violations: list[Violation] = field(default_factory=list)
    # Called with each message that joins a channel's history (the server sends MESSAGE_CREATE),
    # and the shard a test sent it to (None: the one its guild maps to).
    message_listeners: list[Callable[[MessageRecord, int | None], object]] = field(default_factory=list)
    # Whether REST answers show other users' message content: the app has the MESSAGE_CONTENT
    # intent (Discord ties that to the developer portal; here, to a session identified with it).
    content_intent: Callable[[], bool] = lambda: True
    # The channels' webhooks (a ChannelWebhooks, which imports this module), once installed.
    channel_webhooks: Any = None

    def log_message(self, message: MessageRecord, *, shard: int | None = None) -> None:
        """Add a visible message to its channel's history and tell the listeners (``shard``: send
        its MESSAGE_CREATE to that shard's sessions, whatever its guild)."""
        self.messages[message.id] = message
        self.channel_log.setdefault(message.channel_id, []).append(message)
        channel = self.world.channel(message.channel_id)
        if channel is not None:
            channel.last_message_id = message.id
        for listener in list(self.message_listeners):
            listener(message, shard)

    def attachment_url(self, channel_id: int, file: FileRecord) -> str:
        return f"{self.base_url}/attachments/{channel_id}/{file.id}/{file.filename}"
