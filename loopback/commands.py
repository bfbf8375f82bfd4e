"""Synced application commands, and turning "what a user typed" into interaction ``data``.

The Discord client only lets a user invoke a synced command with options that fit its schema, so
:func:`build_command_data` checks the same things (names, required options, types, choices, ranges)
unless ``strict=False``; a test of the bot's own validation can switch that off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from loopback import payloads
from loopback.wire import Snowflakes
from loopback.world import Channel, Guild, Member, Role, User, World


class OptionType(IntEnum):
    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


MAX_SAFE_INTEGER = 2**53


class InvalidInvocation(ValueError):
    """The Discord client would not have let a user send this command."""


class CommandRegistry:
    """Commands as stored by ``PUT /applications/{app}[/guilds/{guild}]/commands``."""

    def __init__(self, ids: Snowflakes, application_id: int) -> None:
        self._ids = ids
        self._application_id = application_id
        self._scopes: dict[int | None, list[dict[str, Any]]] = {}

    def put(self, guild_id: int | None, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A bulk overwrite: a command keeps its id when its name and type stay the same."""
        old = {(c["name"], c.get("type", 1)): c for c in self._scopes.get(guild_id, [])}
        stored = []
        for command in commands:
            previous = old.get((command["name"], command.get("type", 1)))
            stored.append(self._stored(command, guild_id, previous["id"] if previous else None))
        self._scopes[guild_id] = stored
        return stored

    def get(self, guild_id: int | None) -> list[dict[str, Any]]:
        return list(self._scopes.get(guild_id, []))

    def find(self, name: str, guild_id: int | None) -> dict[str, Any] | None:
        """A guild command shadows a global one of the same name, as in the Discord client."""
        for scope in (guild_id, None) if guild_id is not None else (None,):
            for command in self._scopes.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        return None

    def _stored(
        self, command: dict[str, Any], guild_id: int | None, command_id: str | None
    ) -> dict[str, Any]:
        stored = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            "name_localizations": None,
            "description_localizations": None,
            **command,
            "id": command_id or str(self._ids.next()),
            "application_id": str(self._application_id),
            "version": str(self._ids.next()),
        }
        if stored["default_member_permissions"] is not None:  # a bitfield sent as a number or a string
            stored["default_member_permissions"] = str(int(stored["default_member_permissions"]))
        if guild_id is not None:
            stored["guild_id"] = str(guild_id)
        return stored


@dataclass
class Resolved:
    """The ``resolved`` map of an interaction, filled while options are converted."""

    users: dict[str, Any] = field(default_factory=dict)
    members: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, Any] = field(default_factory=dict)
    channels: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v}


@dataclass
class OptionContext:
    world: World
    guild: Guild
    member: Member
    resolved: Resolved
    store_attachment: Callable[[str, bytes], dict[str, Any]]
    strict: bool
    focused: str | None


def build_command_data(
    command: dict[str, Any], path: list[str], options: Mapping[str, Any], ctx: OptionContext
) -> dict[str, Any]:
    """The ``data`` of an APPLICATION_COMMAND (or AUTOCOMPLETE) interaction for ``/name path... options``."""
    leaf_schema, nesting = _walk_path(command, path)
    leaf_options = _convert_options(leaf_schema, options, ctx)
    for name, kind in reversed(nesting):
        leaf_options = [{"name": name, "type": kind, "options": leaf_options}]
    data: dict[str, Any] = {
        "id": command["id"],
        "name": command["name"],
        "type": command.get("type", 1),
        "options": leaf_options,
    }
    if "guild_id" in command:
        data["guild_id"] = command["guild_id"]
    resolved = ctx.resolved.payload()
    if resolved:
        data["resolved"] = resolved
    return data


def _walk_path(
    command: dict[str, Any], path: list[str]
) -> tuple[list[dict[str, Any]], list[tuple[str, int]]]:
    schema: list[dict[str, Any]] = command.get("options") or []
    nesting: list[tuple[str, int]] = []
    trail = command["name"]
    for part in path:
        match = next((o for o in schema if o["name"] == part and o["type"] in (1, 2)), None)
        if match is None:
            known = [o["name"] for o in schema if o["type"] in (1, 2)]
            raise InvalidInvocation(f"/{trail} has no subcommand {part!r} (it has {known})")
        nesting.append((part, match["type"]))
        schema = match.get("options") or []
        trail += f" {part}"
    if any(o["type"] in (1, 2) for o in schema):
        known = [o["name"] for o in schema]
        raise InvalidInvocation(f"/{trail} needs a subcommand, one of {known}")
    return schema, nesting


def _convert_options(
    schema: list[dict[str, Any]], given: Mapping[str, Any], ctx: OptionContext
) -> list[dict[str, Any]]:
    by_name = {o["name"]: o for o in schema}
    if ctx.strict:
        unknown = sorted(set(given) - set(by_name))
        if unknown:
            raise InvalidInvocation(f"unknown options {unknown}; the command takes {sorted(by_name)}")
        if ctx.focused is None:
            missing = [o["name"] for o in schema if o.get("required") and o["name"] not in given]
            if missing:
                raise InvalidInvocation(f"missing required options {missing}")
    out = []
    for name, value in given.items():
        spec = by_name.get(name) or {"name": name, "type": _guess_type(value)}
        if name == ctx.focused:
            out.append({"name": name, "type": spec["type"], "value": value, "focused": True})
            continue
        out.append({"name": name, "type": spec["type"], "value": _convert_value(spec, value, ctx)})
    return out


def _guess_type(value: Any) -> int:
    """Only for ``strict=False`` options the schema does not know."""
    if isinstance(value, bool):
        return OptionType.BOOLEAN
    if isinstance(value, int):
        return OptionType.INTEGER
    if isinstance(value, float):
        return OptionType.NUMBER
    if isinstance(value, User | Member):
        return OptionType.USER
    if isinstance(value, Channel):
        return OptionType.CHANNEL
    if isinstance(value, Role):
        return OptionType.ROLE
    return OptionType.STRING


def _convert_value(spec: dict[str, Any], value: Any, ctx: OptionContext) -> Any:
    kind, name = spec["type"], spec["name"]
    if kind == OptionType.STRING:
        converted: Any = value if not ctx.strict else _expect(name, value, str, "a string")
    elif kind == OptionType.INTEGER:
        if ctx.strict and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidInvocation(f"option {name!r} must be an integer, got {value!r}")
        if ctx.strict and abs(value) > MAX_SAFE_INTEGER:
            raise InvalidInvocation(f"option {name!r} must be within ±2**53, got {value!r}")
        converted = value
    elif kind == OptionType.NUMBER:
        if ctx.strict and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidInvocation(f"option {name!r} must be a number, got {value!r}")
        converted = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    elif kind == OptionType.BOOLEAN:
        converted = value if not ctx.strict else _expect(name, value, bool, "a boolean")
    elif kind in (OptionType.USER, OptionType.MENTIONABLE) and isinstance(value, User | Member):
        converted = _resolve_user(value, ctx)
    elif kind in (OptionType.ROLE, OptionType.MENTIONABLE) and isinstance(value, Role):
        ctx.resolved.roles[str(value.id)] = payloads.role(value)
        converted = str(value.id)
    elif kind == OptionType.CHANNEL and isinstance(value, Channel):
        converted = _resolve_channel(spec, value, ctx)
    elif kind == OptionType.ATTACHMENT and isinstance(value, tuple) and len(value) == 2:
        attachment = ctx.store_attachment(value[0], value[1])
        ctx.resolved.attachments[attachment["id"]] = attachment
        converted = attachment["id"]
    elif ctx.strict:
        raise InvalidInvocation(f"option {name!r} of type {kind} cannot take {value!r}")
    else:
        converted = value
    if ctx.strict:
        _check_bounds(spec, converted)
    return converted


def _expect(name: str, value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise InvalidInvocation(f"option {name!r} must be {what}, got {value!r}")
    return value


def _resolve_user(value: User | Member, ctx: OptionContext) -> str:
    user = value.user if isinstance(value, Member) else value
    ctx.resolved.users[str(user.id)] = payloads.user(user)
    member = ctx.guild.members.get(user.id)
    if member is not None:
        perms = ctx.world.permissions(member)
        ctx.resolved.members[str(user.id)] = payloads.member(member, permissions=perms, with_user=False)
    return str(user.id)


def _resolve_channel(spec: dict[str, Any], channel: Channel, ctx: OptionContext) -> str:
    allowed = spec.get("channel_types")
    if ctx.strict and allowed and int(channel.type) not in allowed:
        raise InvalidInvocation(f"option {spec['name']!r} takes channel types {allowed}, got {channel.type}")
    perms = ctx.world.permissions(ctx.member, channel)
    ctx.resolved.channels[str(channel.id)] = payloads.channel(channel, permissions=perms)
    return str(channel.id)


def _check_bounds(spec: dict[str, Any], value: Any) -> None:
    name = spec["name"]
    choices = spec.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise InvalidInvocation(
            f"option {name!r} must be one of {[c['value'] for c in choices]}, got {value!r}"
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = spec.get("min_value"), spec.get("max_value")
        if (low is not None and value < low) or (high is not None and value > high):
            raise InvalidInvocation(f"option {name!r} must be in [{low}, {high}], got {value!r}")
    if isinstance(value, str) and spec["type"] == OptionType.STRING:
        low, high = spec.get("min_length"), spec.get("max_length", 6000)
        if (low is not None and len(value) < low) or len(value) > high:
            raise InvalidInvocation(
                f"option {name!r} must be {low or 0}..{high} characters, got {len(value)}"
            )
