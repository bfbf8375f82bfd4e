"""Discord's published contract for REST calls: route, method and request body, checked on arrival.

The schema is Discord's own OpenAPI 3.1 description of API v10 (``discord_api_spec/``, MIT, from
discord/discord-api-spec). Its request-body schemas are JSON Schema 2020-12: a body is validated
against the operation's ``application/json`` schema (a multipart body through its
``payload_json`` part). The spec types every snowflake as a decimal string, which Discord also
accepts as a number (and discord.py sends some as numbers), so both are accepted here.

Discord enforces some limits the spec does not carry; :func:`extra_limits` adds the ones known
for application commands (name and description lengths, 25 options and choices).

A call that breaks the contract is answered as Discord answers it: 400, code 50035, "Invalid Form
Body", with the errors under ``errors``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import referencing
from referencing.jsonschema import DRAFT202012

SPEC_DIR = Path(__file__).resolve().parent / "discord_api_spec"
SPEC_URI = "urn:discord-api-spec"
METHODS = ("get", "put", "post", "patch", "delete")
NAME = re.compile(r"^[-_\w]{1,32}$")  # a CHAT_INPUT command or option name (lower case checked apart)


@dataclass(frozen=True)
class Violation:
    """Why Discord would refuse a call: where in the body (a JSON path) and what is wrong."""

    method: str
    path: str
    route: str | None
    problems: tuple[tuple[str, str], ...]  # (where, message)

    def describe(self) -> str:
        shown = "; ".join(f"{where or '(body)'}: {message}" for where, message in self.problems[:5])
        more = f" (+{len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        return f"{self.method} {self.path} ({self.route or 'no such route'}) breaks Discord's contract: {shown}{more}"

    def errors(self) -> dict[str, Any]:
        """The ``errors`` object of Discord's 50035 answer: each problem nested under its path."""
        errors: dict[str, Any] = {}
        for where, message in self.problems:
            node = errors
            for part in where.split(".") if where else ():
                node = node.setdefault(part, {})
            node.setdefault("_errors", []).append({"code": "CONTRACT_VIOLATION", "message": message})
        return errors


@dataclass(frozen=True)
class Operation:
    route: str
    method: str
    pattern: re.Pattern[str]
    literal_segments: int
    body_pointer: str | None  # JSON pointer to the request body's schema in the spec


class Contract:
    """Routes and request schemas of one OpenAPI document; :meth:`check` returns the violations."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = _accept_numeric_snowflakes(spec)
        self.version = str(self.spec.get("info", {}).get("version", "?"))
        resource = referencing.Resource.from_contents(self.spec, default_specification=DRAFT202012)
        self._registry: referencing.Registry[Any] = referencing.Registry().with_resource(SPEC_URI, resource)
        self.operations = sorted(self._operations(), key=lambda o: -o.literal_segments)
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}

    @classmethod
    @functools.cache
    def bundled(cls) -> Contract:
        """The copy of Discord's spec shipped with the loopback server (parsed once per process)."""
        return cls(json.loads((SPEC_DIR / "openapi.json").read_text(encoding="utf-8")))

    def _operations(self) -> Iterator[Operation]:
        for route, item in self.spec["paths"].items():
            regex = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(route))
            literal = sum(1 for part in route.split("/") if part and not part.startswith("{"))
            for method in METHODS:
                if method not in item:
                    continue
                content = item[method].get("requestBody", {}).get("content", {})
                pointer = None
                if "application/json" in content:
                    pointer = "/".join(
                        (
                            "",
                            "paths",
                            _escape(route),
                            method,
                            "requestBody",
                            "content",
                            "application~1json",
                            "schema",
                        )
                    )
                yield Operation(route, method.upper(), re.compile(f"^{regex}$"), literal, pointer)

    def find(self, method: str, path: str) -> Operation | None:
        """The operation a call is to; a literal segment beats a parameter (``@original`` over ``{id}``)."""
        for operation in self.operations:
            if operation.method == method and operation.pattern.match(path):
                return operation
        return None

    def check(self, method: str, path: str, body: Any) -> Violation | None:
        operation = self.find(method, path)
        if operation is None:
            return None  # not a route of Discord's: the server answers its own 404/405
        problems: list[tuple[str, str]] = []
        if operation.body_pointer is not None and body is not None:
            validator = self._validator(operation.body_pointer)
            problems += [p for error in validator.iter_errors(body) for p in _problems(error)]
        problems += extra_limits(operation.route, method, body)
        if not problems:
            return None
        return Violation(method, path, operation.route, tuple(problems))

    def _validator(self, pointer: str) -> jsonschema.Draft202012Validator:
        found = self._validators.get(pointer)
        if found is None:
            schema = {"$ref": f"{SPEC_URI}#{quote(pointer, safe='/~')}"}
            found = self._validators[pointer] = jsonschema.Draft202012Validator(
                schema, registry=self._registry
            )
        return found


# -- what the spec leaves out ------------------------------------------------------------------

COMMAND_ROUTES = (
    "/applications/{application_id}/commands",
    "/applications/{application_id}/guilds/{guild_id}/commands",
)
CHAT_INPUT_LIMIT = 100  # slash commands per scope; the spec allows 130 items of every type together


def extra_limits(route: str, method: str, body: Any) -> list[tuple[str, str]]:
    """Discord's rules for slash commands that its spec does not state (lengths and counts it does)."""
    if route not in COMMAND_ROUTES or method != "PUT" or not isinstance(body, list):
        return []
    commands = [(str(i), c) for i, c in enumerate(body) if isinstance(c, dict) and c.get("type", 1) == 1]
    problems: list[tuple[str, str]] = []
    if len(commands) > CHAT_INPUT_LIMIT:
        problems.append(("", f"at most {CHAT_INPUT_LIMIT} slash commands per scope, got {len(commands)}"))
    problems += _unique_names(commands, "")
    for where, command in commands:
        problems += _named(command, where)
    return problems


def _named(item: dict[str, Any], where: str) -> list[tuple[str, str]]:
    """A slash command or option: its name's characters, a description, its options' order."""
    problems: list[tuple[str, str]] = []
    name = str(item.get("name", ""))
    if not NAME.match(name) or name != name.lower():
        problems.append((f"{where}.name", f"must be lower-case letters, digits, - or _, got {name!r}"))
    if not item.get("description"):
        problems.append((f"{where}.description", "a slash command or option needs a description"))
    options = [
        (f"{where}.options.{i}", o) for i, o in enumerate(item.get("options") or []) if isinstance(o, dict)
    ]
    problems += _unique_names(options, f"{where}.options")
    optional_seen = False
    for here, option in options:
        problems += _named(option, here)
        if option.get("type") in (1, 2):  # subcommands and groups are not ordered this way
            continue
        if option.get("required") and optional_seen:
            problems.append((here, "required options must come before optional ones"))
        optional_seen |= not option.get("required")
    return problems


def _unique_names(items: list[tuple[str, dict[str, Any]]], where: str) -> list[tuple[str, str]]:
    names = [str(item.get("name")) for _, item in items]
    repeated = sorted({n for n in names if names.count(n) > 1})
    return [(where, f"names must be unique, {n!r} is used twice") for n in repeated]


# -- helpers -----------------------------------------------------------------------------------


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path)


def _problems(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """An error as (where, message); for a union, the errors of the branch the body meant.

    A branch the value is of the wrong JSON type for (``null`` or an object) is not the one meant;
    nor is one whose ``type`` field does not match (Discord's unions of callbacks and components
    are told apart by it). Of the rest, the branch with the fewest errors is.
    """
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return [(_where(error), _say(error))]
    branches: dict[int, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(int(sub.schema_path[0]), []).append(sub)
    base = len(error.absolute_path)

    def not_meant(e: jsonschema.ValidationError) -> bool:
        rest = list(e.absolute_path)[base:]
        return rest == ["type"] or (not rest and e.validator == "type")

    meant = [errors for errors in branches.values() if not any(map(not_meant, errors))]
    meant = meant or list(branches.values())
    best = min(meant, key=len)
    return [problem for sub in best for problem in _problems(sub)]


def _say(error: jsonschema.ValidationError) -> str:
    """Discord's wording where it has one ("Must be 2000 or fewer in length."), else jsonschema's."""
    bound = error.validator_value
    wording = {
        "maxLength": f"Must be {bound} or fewer in length.",
        "minLength": f"Must be {bound} or more in length.",
        "maxItems": f"Must be {bound} or fewer in length.",
        "minItems": f"Must be {bound} or more in length.",
        "maximum": f"int value should be less than or equal to {bound}.",
        "minimum": f"int value should be greater than or equal to {bound}.",
        "required": f"This field is required ({error.message.split(' ')[0]}).",
    }
    text: str = wording.get(str(error.validator), error.message)
    return text if len(text) <= 300 else text[:300] + "…"


def _accept_numeric_snowflakes(spec: dict[str, Any]) -> dict[str, Any]:
    schemas = spec.get("components", {}).get("schemas", {})
    snowflake = schemas.get("SnowflakeType")
    if isinstance(snowflake, dict) and "anyOf" not in snowflake:
        schemas["SnowflakeType"] = {"anyOf": [snowflake, {"type": "integer", "minimum": 0}]}
    return spec
