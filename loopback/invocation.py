"""Sending interactions to the bot as a given member in a given channel or thread."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from loopback import components, payloads
from loopback.commands import InvalidInvocation, OptionContext, Resolved, build_command_data
from loopback.components import BUTTON
from loopback.interactions import InteractionRecord
from loopback.messages import render
from loopback.records import Change, FileRecord, MessageRecord
from loopback.state import ServerState
from loopback.world import Channel, Member, Perm, User, World

if TYPE_CHECKING:
    from loopback.gateway import Gateway

ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE = 2, 3, 4


class Invoker:
    """Mixed into :class:`~loopback.server.LoopbackDiscord`: ``invoke``, ``autocomplete``, ``click``
    and raw sends."""

    state: ServerState
    world: World
    gateway: Gateway
    general: Channel | None
    member: Member | None

    async def invoke(
        self,
        command: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: User | Member | None = None,
        channel: Channel | None = None,
        subcommand: str | None = None,
        locale: str = "en-US",
        strict: bool = True,
        shard: int | None = None,
    ) -> InteractionRecord:
        """Run ``/command [subcommand] options`` as ``user`` (default: the plain member) in ``channel``.

        ``command`` may name the subcommand path itself (``"story start"``); ``subcommand`` may too
        (``"group sub"``). Options are typed from the synced command's schema: pass ``str``, ``int``,
        ``float``, ``bool``, world ``User``/``Member``/``Channel``/``Role`` objects, or
        ``(filename, bytes)`` for an attachment. With ``strict`` (the default) anything the Discord
        client would not let a user send raises :class:`InvalidInvocation`. The interaction goes
        to the sessions of the channel's guild's shard, or with ``shard`` to that shard's.
        """
        payload = self.build_interaction(
            command, options, user=user, channel=channel, subcommand=subcommand, locale=locale, strict=strict
        )
        return await self.send_raw_interaction(payload, shard=shard)

    async def autocomplete(
        self,
        command: str,
        options: Mapping[str, Any],
        focused: str,
        *,
        user: User | Member | None = None,
        channel: Channel | None = None,
        subcommand: str | None = None,
        shard: int | None = None,
    ) -> InteractionRecord:
        """An autocomplete interaction with ``focused`` as the option being typed; see ``.choices``."""
        payload = self.build_interaction(
            command, options, user=user, channel=channel, subcommand=subcommand, focused=focused
        )
        return await self.send_raw_interaction(payload, shard=shard)

    def build_interaction(
        self,
        command: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: User | Member | None = None,
        channel: Channel | None = None,
        subcommand: str | None = None,
        locale: str = "en-US",
        strict: bool = True,
        focused: str | None = None,
    ) -> dict[str, Any]:
        """The INTERACTION_CREATE payload :meth:`invoke` would send, for a test to alter first."""
        channel = channel or self.general
        if channel is None:
            raise ValueError("no channel given and no default channel")
        world = self.world
        guild = world.guilds[channel.guild_id]
        member = world.member(guild, user or self._default_user())
        name, *path = command.split()
        path += subcommand.split() if subcommand else []
        spec = self.state.commands.find(name, guild.id)
        if spec is None:
            if strict:
                synced = sorted(
                    {c["name"] for c in self.state.commands.get(None) + self.state.commands.get(guild.id)}
                )
                raise InvalidInvocation(f"/{name} is not synced (synced: {synced})")
            spec = {"id": str(self.state.ids.next()), "name": name, "type": 1, "options": []}
        perms = world.permissions(member, channel)
        if strict:
            granted = self.state.command_grants.get((guild.id, name), set())
            _check_visible(spec, perms, member, channel, granted)
        ctx = OptionContext(world, guild, member, Resolved(), self._store_attachment, strict, focused)
        data = build_command_data(spec, path, options or {}, ctx)
        return self._envelope(
            AUTOCOMPLETE if focused else APPLICATION_COMMAND, data, member, channel, perms, locale
        )

    async def click(
        self,
        message: MessageRecord,
        custom_id: str,
        *,
        user: User | Member | None = None,
        locale: str = "en-US",
        strict: bool = True,
        shard: int | None = None,
    ) -> InteractionRecord:
        """Press the button ``custom_id`` on ``message`` as ``user`` (default: the plain member).

        The bot gets a MESSAGE_COMPONENT interaction carrying the message as it is now (on the
        guild's shard, or on ``shard``). With ``strict`` (the default) a click the Discord client
        would not allow raises :class:`InvalidInvocation`: see :func:`loopback.components.check_click`.
        """
        return await self.send_raw_interaction(
            self.build_click(message, custom_id, user=user, locale=locale, strict=strict), shard=shard
        )

    def build_click(
        self,
        message: MessageRecord,
        custom_id: str,
        *,
        user: User | Member | None = None,
        locale: str = "en-US",
        strict: bool = True,
    ) -> dict[str, Any]:
        """The INTERACTION_CREATE payload :meth:`click` would send, for a test to alter first."""
        world = self.world
        channel = world.channel(message.channel_id)
        if channel is None:
            raise ValueError(f"message {message.id} is not in a channel of this world")
        member = world.member(world.guilds[channel.guild_id], user or self._default_user())
        perms = world.permissions(member, channel)
        owner = self._ephemeral_owner(message)
        component = components.check_click(message, custom_id, member, channel, perms, owner, strict)
        data = {"custom_id": custom_id, "component_type": int((component or {}).get("type", BUTTON))}
        payload = self._envelope(MESSAGE_COMPONENT, data, member, channel, perms, locale)
        # Discord sends the clicked message without resolving what it replies to.
        shown = render(self.state, message, with_reference=False)
        payload["message"] = shown
        return payload

    def _envelope(
        self, kind: int, data: dict[str, Any], member: Member, channel: Channel, perms: int, locale: str
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload around ``data``, from ``member`` in ``channel``."""
        world = self.world
        guild = world.guilds[channel.guild_id]
        bot = world.member(guild, world.application.bot)
        return {
            "id": str(self.state.ids.next()),
            "application_id": str(world.application.id),
            "type": kind,
            "token": "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48),
            "version": 1,
            "data": data,
            "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
            "guild_id": str(guild.id),
            "channel": payloads.channel(channel, permissions=perms),
            "channel_id": str(channel.id),
            "member": payloads.member(member, permissions=perms),
            "app_permissions": str(world.permissions(bot, channel)),
            "locale": locale,
            "guild_locale": guild.locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }

    def _ephemeral_owner(self, message: MessageRecord) -> int | None:
        """The one user who sees an ephemeral message: the user of the interaction that made it."""
        if not message.ephemeral or message.interaction_id is None:
            return None
        record = self.state.interactions[message.interaction_id]
        user = record.payload.get("member", {}).get("user") or record.payload.get("user") or {}
        return int(user["id"]) if user.get("id") else None

    async def send_raw_interaction(
        self, payload: dict[str, Any], *, shard: int | None = None
    ) -> InteractionRecord:
        """Track ``payload`` (it needs ``id`` and ``token``) and dispatch it as INTERACTION_CREATE
        to the sessions of its guild's shard (guildless: shard 0), or of ``shard``."""
        if not self.gateway.sessions:
            raise RuntimeError("no bot has identified on the gateway yet; start it before invoking")
        if not self.gateway.targets("INTERACTION_CREATE", payload, shard=shard):
            where = f"shard {shard}" if shard is not None else f"the shard of guild {payload.get('guild_id')}"
            on = sorted(self.gateway.sessions_by_shard())
            raise RuntimeError(f"no bot session on {where} (sessions on shards {on})")
        kind = int(payload.get("type") or 0)
        data = payload.get("data") or {}
        shown = payload.get("message") or {}
        target = self.state.messages.get(int(shown["id"])) if str(shown.get("id", "")).isdigit() else None
        record = InteractionRecord(
            id=int(payload["id"]),
            token=str(payload["token"]),
            type=kind,
            payload=payload,
            command=f"component:{data.get('custom_id')}"
            if kind == MESSAGE_COMPONENT
            else _command_path(data),
            bus=self.state.bus,
            target=target,
        )
        self.state.interactions[record.id] = record
        self.state.by_token[record.token] = record
        self.gateway.dispatch("INTERACTION_CREATE", payload, shard=shard)
        self.state.bus.publish(Change("interaction", interaction=record))
        await asyncio.sleep(0)
        return record

    def _default_user(self) -> Member:
        if self.member is None:
            raise ValueError("no user given and no default member")
        return self.member

    def _store_attachment(self, filename: str, data: bytes) -> dict[str, Any]:
        file = FileRecord(self.state.ids.next(), filename, bytes(data), "application/octet-stream")
        self.state.files[file.id] = file
        url = self.state.attachment_url(0, file)
        return {
            "id": str(file.id),
            "filename": filename,
            "size": len(file.data),
            "url": url,
            "proxy_url": url,
            "content_type": file.content_type,
            "ephemeral": True,
        }


def _check_visible(
    spec: dict[str, Any], perms: int, member: Member, channel: Channel, granted: set[int]
) -> None:
    """The Discord client hides commands a member may not use; refuse to invoke those.

    ``granted``: the role, member and guild (@everyone) ids an admin granted the command to in
    Integrations, which overrides its ``default_member_permissions``.
    """
    name = spec["name"]
    if not perms & Perm.USE_APPLICATION_COMMANDS:
        raise InvalidInvocation(f"{member.user.name} may not use application commands in #{channel.name}")
    contexts = spec.get("contexts")
    if contexts is not None and 0 not in contexts:
        raise InvalidInvocation(f"/{name} is not available in guilds (contexts {contexts})")
    required = spec.get("default_member_permissions")
    if required is None or perms & Perm.ADMINISTRATOR:
        return
    if granted & {member.id, member.guild_id, *member.roles}:
        return
    needed = int(required)
    if needed == 0 or perms & needed != needed:
        missing = ", ".join(_perm_name(p) for p in Perm if p & needed and not perms & p) or "admin only"
        raise InvalidInvocation(
            f"Discord hides /{name} from {member.user.name}: it needs {missing} "
            f"(default_member_permissions {needed}; a server admin can grant it in Integrations)"
        )


def _perm_name(perm: Perm) -> str:
    return (perm.name or str(int(perm))).replace("_", " ").title().replace("Guild", "Server")


def _command_path(data: dict[str, Any]) -> str:
    parts = [str(data.get("name", "?"))]
    options = data.get("options") or []
    while options and options[0].get("type") in (1, 2):
        parts.append(options[0]["name"])
        options = options[0].get("options") or []
    return " ".join(parts)


__all__ = ["InvalidInvocation", "Invoker"]
