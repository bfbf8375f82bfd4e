"""REST handlers: identity, command sync, guild/channel reads and channel messages.

The interaction endpoints (callback, ``@original``, follow-ups) are in :mod:`loopback.webhooks`,
channel messages in :mod:`loopback.channel_messages`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from loopback import payloads
from loopback.records import Change
from loopback.rest import ApiError, Request, Router
from loopback.state import ServerState
from loopback.wire import FormError, json_response
from loopback.world import Channel, Guild

NAME_RE = re.compile(r"^[-_\w]{1,32}$")


class Routes:
    def __init__(self, state: ServerState, gateway_url: Callable[[], str]) -> None:
        self.state = state
        self.gateway_url = gateway_url  # known once the server is bound

    def install(self, r: Router) -> None:
        r.add("GET", "/users/@me", self.me)
        r.add("GET", "/oauth2/applications/@me", self.application)
        r.add("GET", "/applications/@me", self.application)
        r.add("GET", "/gateway", self.gateway, auth=False)
        r.add("GET", "/gateway/bot", self.gateway_bot)
        for scope in ("/applications/{app}/commands", "/applications/{app}/guilds/{guild}/commands"):
            r.add("GET", scope, self.get_commands)
            r.add("PUT", scope, self.put_commands)
        r.add("GET", "/guilds/{guild}", self.guild)
        r.add("GET", "/guilds/{guild}/channels", self.guild_channels)
        r.add("GET", "/guilds/{guild}/roles", self.guild_roles)
        r.add("GET", "/guilds/{guild}/members/{user}", self.guild_member)
        r.add("GET", "/channels/{channel}", self.channel)

    # -- identity ---------------------------------------------------------------------------------

    async def me(self, req: Request) -> web.Response:
        bot = self.state.world.application.bot
        return json_response(
            {**payloads.user(bot), "verified": True, "mfa_enabled": False, "locale": "en-US"}
        )

    async def application(self, req: Request) -> web.Response:
        return json_response(payloads.application(self.state.world.application))

    async def gateway(self, req: Request) -> web.Response:
        return json_response({"url": self.gateway_url()})

    async def gateway_bot(self, req: Request) -> web.Response:
        sharding = self.state.sharding
        return json_response(
            {
                "url": self.gateway_url(),
                "shards": sharding.shard_count,
                "session_start_limit": sharding.session_start_limit(),
            }
        )

    # -- commands ---------------------------------------------------------------------------------

    def _command_scope(self, req: Request) -> int | None:
        if req.params["app"] != str(self.state.world.application.id):
            raise ApiError(403, "Missing Access", 50001)
        if "guild" not in req.params:
            return None
        return self._guild(req.params["guild"]).id

    async def get_commands(self, req: Request) -> web.Response:
        return json_response(self.state.commands.get(self._command_scope(req)))

    async def put_commands(self, req: Request) -> web.Response:
        scope = self._command_scope(req)
        commands = req.json
        if not isinstance(commands, list):
            raise FormError("_root", "BASE_TYPE_ARRAY", "Must be an array.")
        for i, command in enumerate(commands):
            _validate_command(i, command)
        stored = self.state.commands.put(scope, commands)
        self.state.bus.publish(Change("sync", detail=f"{len(stored)} command(s) for {scope or 'global'}"))
        return json_response(stored)

    # -- guilds and channels ----------------------------------------------------------------------

    def _guild(self, guild_id: str) -> Guild:
        guild = self.state.world.guilds.get(int(guild_id)) if guild_id.isdigit() else None
        if guild is None:
            raise ApiError(404, "Unknown Guild", 10004)
        return guild

    def _channel(self, channel_id: str) -> Channel:
        channel = self.state.world.channel(int(channel_id)) if channel_id.isdigit() else None
        if channel is None:
            raise ApiError(404, "Unknown Channel", 10003)
        return channel

    async def guild(self, req: Request) -> web.Response:
        guild = self._guild(req.params["guild"])
        return json_response({**payloads.guild(guild), "approximate_member_count": len(guild.members)})

    async def guild_channels(self, req: Request) -> web.Response:
        guild = self._guild(req.params["guild"])
        return json_response([payloads.channel(c) for c in guild.channels.values() if not c.is_thread])

    async def guild_roles(self, req: Request) -> web.Response:
        guild = self._guild(req.params["guild"])
        return json_response([payloads.role(r) for r in guild.roles.values()])

    async def guild_member(self, req: Request) -> web.Response:
        guild = self._guild(req.params["guild"])
        member = guild.members.get(int(req.params["user"])) if req.params["user"].isdigit() else None
        if member is None:
            raise ApiError(404, "Unknown Member", 10007)
        return json_response(payloads.member(member))

    async def channel(self, req: Request) -> web.Response:
        return json_response(payloads.channel(self._channel(req.params["channel"])))


def _validate_command(index: int, command: Any) -> None:
    """The checks Discord makes on a synced command that discord.py does not make itself."""
    if not isinstance(command, dict) or not isinstance(command.get("name"), str):
        raise FormError(f"{index}.name", "BASE_TYPE_REQUIRED", "This field is required")
    name = command["name"]
    if command.get("type", 1) == 1:
        if not NAME_RE.match(name) or name != name.lower():
            raise FormError(
                f"{index}.name", "APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid: {name}"
            )
        if not 1 <= len(command.get("description") or "") <= 100:
            raise FormError(
                f"{index}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
    _validate_options(f"{index}", command.get("options") or [])


def _validate_options(where: str, options: list[dict[str, Any]]) -> None:
    if len(options) > 25:
        raise FormError(f"{where}.options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    seen_optional = False
    for j, option in enumerate(options):
        if option.get("type") in (1, 2):
            _validate_options(f"{where}.options.{j}", option.get("options") or [])
            continue
        if option.get("required"):
            if seen_optional:
                message = "Required options must be placed before non-required options"
                raise FormError(
                    f"{where}.options.{j}", "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID", message
                )
        else:
            seen_optional = True
        if len(option.get("choices") or []) > 25:
            raise FormError(
                f"{where}.options.{j}.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
