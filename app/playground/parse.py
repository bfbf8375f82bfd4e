"""Reading a line the way the Discord client would send it: a slash command
(``/settings set temperature: 0.3``) or a message, whose ``@name`` becomes a mention.

The synced command schema decides everything: which words are subcommands, which ``name:``
starts an option (any other ``word:`` is part of the value, so ``prompt: a: b`` keeps its colon),
and what type each value becomes. Mistakes raise :class:`ParseError` with a message naming the
command, the option and the value, as the Discord client would refuse to send them.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from loopback.commands import OptionType

# ``@name`` not inside a word or an existing ``<@id>`` mention.
AT_NAME = re.compile(r"(?<![\w<@&])@([\w-]+)")
# ``name:`` at the start or after whitespace; Discord option names are 1-32 word characters or '-'.
MARKER = re.compile(r"(?<!\S)([\w-]{1,32}):")
SUBCOMMANDS = (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP)
TRUE_WORDS = ("true", "yes", "y", "on", "1")
FALSE_WORDS = ("false", "no", "n", "off", "0")
TYPE_NAMES = {
    OptionType.STRING: "text",
    OptionType.INTEGER: "a whole number",
    OptionType.NUMBER: "a number",
    OptionType.BOOLEAN: "true or false",
    OptionType.USER: "a member (@name)",
    OptionType.CHANNEL: "a channel (#name)",
    OptionType.ROLE: "a role (@name)",
    OptionType.MENTIONABLE: "a member or role (@name)",
    OptionType.ATTACHMENT: "a file path",
}


class ParseError(ValueError):
    """The line is not a command the Discord client would send; the message says why."""


class Resolver(Protocol):
    """Turns typed text into world objects for user, channel, role and attachment options."""

    def user(self, text: str) -> Any: ...

    def channel(self, text: str) -> Any: ...

    def role(self, text: str) -> Any: ...

    def mentionable(self, text: str) -> Any: ...

    def attachment(self, text: str) -> tuple[str, bytes]: ...


@dataclass(frozen=True)
class ParsedCommand:
    path: str  # "settings set"
    options: dict[str, Any]
    notes: tuple[str, ...] = field(default=())  # hints worth showing, though the line is valid


def mention_names(text: str, names: Mapping[str, int]) -> str:
    """A typed message as the client sends it: each ``@name`` of ``names`` (any case) becomes the
    ``<@id>`` mention the client puts in its place; other ``@words`` (``@everyone``) stay text."""
    known = {name.lower(): user_id for name, user_id in names.items()}

    def mention(match: re.Match[str]) -> str:
        user_id = known.get(match.group(1).lower())
        return f"<@{user_id}>" if user_id is not None else match.group(0)

    return AT_NAME.sub(mention, text)


def find_command(commands: Sequence[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The chat-input command called ``name``; earlier entries win (put guild commands first)."""
    return next((c for c in commands if c["name"] == name and c.get("type", 1) == 1), None)


def command_names(commands: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({c["name"] for c in commands if c.get("type", 1) == 1})


def subcommands(schema: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in schema if o["type"] in SUBCOMMANDS]


def walk(command: dict[str, Any], words: Sequence[str]) -> tuple[list[str], list[dict[str, Any]], int]:
    """Follow subcommand words from ``command``: (path, the schema reached, words consumed)."""
    path = [command["name"]]
    schema: list[dict[str, Any]] = command.get("options") or []
    used = 0
    for word in words:
        match = next((o for o in subcommands(schema) if o["name"] == word.lower()), None)
        if match is None:
            break
        path.append(match["name"])
        schema = match.get("options") or []
        used += 1
    return path, schema, used


def usage(path: Sequence[str], schema: Sequence[dict[str, Any]]) -> str:
    """``/fill text: … [top_k: …]``, or the subcommands when the command needs one."""
    subs = subcommands(schema)
    if subs:
        return f"/{' '.join(path)} " + "|".join(o["name"] for o in subs)
    parts = [f"/{' '.join(path)}"]
    for o in schema:
        parts.append(f"{o['name']}: …" if o.get("required") else f"[{o['name']}: …]")
    return " ".join(parts)


def parse_command(
    line: str, commands: Sequence[dict[str, Any]], resolver: Resolver | None = None
) -> ParsedCommand:
    """Parse ``/name [sub...] opt: value ...`` against the synced ``commands``."""
    text = line.strip()
    if not text.startswith("/") or len(text) < 2 or text[1].isspace():
        raise ParseError("a command starts with / and its name, e.g. /help")
    head, _, rest = text[1:].partition(" ")
    name = head.lower()
    command = find_command(commands, name)
    if command is None:
        raise ParseError(_unknown_command(name, commands))
    words = rest.split()
    path, schema, used = walk(command, words)
    subs = subcommands(schema)
    if subs:
        names = ", ".join(o["name"] for o in subs)
        trail = "/" + " ".join(path)
        if used < len(words):
            raise ParseError(f"{trail} has no subcommand `{words[used]}`; it has: {names}")
        raise ParseError(f"{trail} needs a subcommand, one of: {names}")
    for _ in range(used):  # drop the subcommand words, keeping the rest of the text as typed
        rest = rest.lstrip()
        rest = rest[len(rest.split(maxsplit=1)[0]) :]
    raw, notes = split_options(path, schema, rest.strip())
    options = {n: convert(path, by_name(schema)[n], v, resolver) for n, v in raw.items()}
    missing = [o["name"] for o in schema if o.get("required") and o["name"] not in options]
    if missing:
        raise ParseError(
            f"/{' '.join(path)} is missing the required option {_names(missing)}; usage: {usage(path, schema)}"
        )
    return ParsedCommand(" ".join(path), options, tuple(notes))


def by_name(schema: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in schema}


def split_options(
    path: Sequence[str], schema: Sequence[dict[str, Any]], rest: str
) -> tuple[dict[str, str], list[str]]:
    """``name: value`` pairs; a value runs until the next ``name:`` of a known option."""
    known = by_name(schema)
    trail = "/" + " ".join(path)
    markers = [m for m in MARKER.finditer(rest) if m.group(1) in known]
    values: dict[str, str] = {}
    lead = rest[: markers[0].start()] if markers else rest
    if lead.strip():
        first = MARKER.match(lead)
        if first is not None and lead[first.end() : first.end() + 1] in ("", " ", "\t"):
            raise ParseError(_unknown_option(trail, first.group(1), known))
        # As in the Discord client, text typed right after the command goes into the first
        # required option.
        target = next((o["name"] for o in schema if o.get("required")), None)
        if target is None or target in {m.group(1) for m in markers}:
            options = ", ".join(known) or "no options"
            raise ParseError(
                f"{trail}: `{_short(lead.strip())}` is not an option; write options as `name: value` "
                f"({trail} takes {options})"
            )
        values[target] = lead.strip()
    for i, marker in enumerate(markers):
        end = markers[i + 1].start() if i + 1 < len(markers) else len(rest)
        name = marker.group(1)
        if name in values:
            raise ParseError(f"{trail}: option `{name}` is given twice")
        values[name] = rest[marker.end() : end].strip()
    notes = _near_misses(trail, rest, known, values)
    return values, notes


def _near_misses(trail: str, rest: str, known: dict[str, Any], given: dict[str, str]) -> list[str]:
    """``max_tokens:`` inside a value is probably a mistyped option, though it may be plain text."""
    notes = []
    for marker in MARKER.finditer(rest):
        word = marker.group(1)
        if word in known:
            continue
        close = difflib.get_close_matches(word, [n for n in known if n not in given], n=1, cutoff=0.75)
        if close:
            notes.append(
                f"note: {trail} has no option `{word}`, so `{word}:` was sent as part of the text; "
                f"did you mean `{close[0]}:`?"
            )
    return notes


def convert(path: Sequence[str], spec: dict[str, Any], text: str, resolver: Resolver | None) -> Any:
    """Turn the typed text of one option into the value its type takes, checked against its bounds."""
    name, kind = spec["name"], OptionType(spec["type"])
    where = f"/{' '.join(path)}: `{name}`"
    if text == "" and kind != OptionType.STRING:
        raise ParseError(f"{where} has no value; it takes {TYPE_NAMES.get(kind, kind.name.lower())}")
    value: Any
    if spec.get("choices"):
        value = _choice(where, spec, text)
    elif kind == OptionType.STRING:
        value = text
    elif kind == OptionType.INTEGER:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise ParseError(f"{where} must be a whole number, got `{_short(text)}`") from None
    elif kind == OptionType.NUMBER:
        try:
            value = float(text)
        except ValueError:
            raise ParseError(f"{where} must be a number, got `{_short(text)}`") from None
        if not math.isfinite(value):
            raise ParseError(f"{where} must be a finite number, got `{_short(text)}`")
    elif kind == OptionType.BOOLEAN:
        value = _boolean(where, text)
    else:
        value = _entity(where, kind, text, resolver)
    _check_bounds(where, spec, value)
    return value


def _choice(where: str, spec: dict[str, Any], text: str) -> Any:
    for choice in spec["choices"]:
        if text == str(choice["value"]) or text.lower() == str(choice["name"]).lower():
            return choice["value"]
    allowed = ", ".join(str(c["value"]) for c in spec["choices"])
    raise ParseError(f"{where} must be one of {allowed}; got `{_short(text)}`")


def _boolean(where: str, text: str) -> bool:
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise ParseError(f"{where} must be true or false, got `{_short(text)}`")


def _entity(where: str, kind: OptionType, text: str, resolver: Resolver | None) -> Any:
    if resolver is None:
        raise ParseError(
            f"{where} takes {TYPE_NAMES.get(kind, kind.name.lower())}, which cannot be typed here"
        )
    lookup = {
        OptionType.USER: resolver.user,
        OptionType.CHANNEL: resolver.channel,
        OptionType.ROLE: resolver.role,
        OptionType.MENTIONABLE: resolver.mentionable,
        OptionType.ATTACHMENT: resolver.attachment,
    }.get(kind)
    if lookup is None:
        raise ParseError(f"{where} has option type {kind.name}, which the playground cannot send")
    try:
        return lookup(text)
    except LookupError as exc:
        raise ParseError(f"{where}: {exc.args[0] if exc.args else exc}") from None


def _check_bounds(where: str, spec: dict[str, Any], value: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = spec.get("min_value"), spec.get("max_value")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ParseError(f"{where} must be {_range(low, high)}, got {value:g}")
    if isinstance(value, str) and spec["type"] == OptionType.STRING:
        low, high = spec.get("min_length") or 0, spec.get("max_length") or 6000
        if not low <= len(value) <= high:
            got = "nothing" if not value else f"{len(value)} characters"
            raise ParseError(f"{where} must be {low}..{high} characters long, got {got}")


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}"
    return f"at least {low:g}" if low is not None else f"at most {high:g}"


def _unknown_command(name: str, commands: Sequence[dict[str, Any]]) -> str:
    names = command_names(commands)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean /{close[0]}?" if close else ""
    listed = " ".join(f"/{n}" for n in names) or "none synced yet"
    return f"unknown command /{name}{hint} (the bot's commands: {listed}; /playground lists the playground's own)"


def _unknown_option(trail: str, name: str, known: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    options = ", ".join(known) or "no options"
    return f"{trail} has no option `{name}`{hint} (it takes {options})"


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
