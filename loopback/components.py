"""Message components as a user meets them: finding one on a message, and what the client lets one click."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from loopback.commands import InvalidInvocation
from loopback.records import MessageRecord
from loopback.world import Channel, Member, Perm

ACTION_ROW, BUTTON = 1, 2
COMPONENT_NAMES = {
    1: "action row",
    2: "button",
    3: "string select",
    4: "text input",
    5: "user select",
    6: "role select",
    7: "mentionable select",
    8: "channel select",
}


def walk(components: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every component, nested ones too (action rows, containers, a section's accessory)."""
    for component in components:
        yield component
        yield from walk(component.get("components") or ())
        accessory = component.get("accessory")
        if isinstance(accessory, dict):
            yield from walk((accessory,))


def find(message: MessageRecord, custom_id: str) -> dict[str, Any] | None:
    """The component with ``custom_id`` on the latest version of ``message``."""
    return next((c for c in walk(message.latest.components) if c.get("custom_id") == custom_id), None)


def custom_ids(message: MessageRecord) -> list[str]:
    return [str(c["custom_id"]) for c in walk(message.latest.components) if c.get("custom_id")]


def check_click(
    message: MessageRecord,
    custom_id: str,
    member: Member,
    channel: Channel,
    perms: int,
    ephemeral_owner: int | None,
    strict: bool,
) -> dict[str, Any] | None:
    """The button ``member`` clicks; with ``strict``, refuse what the Discord client would not send.

    A client shows a message's latest components only, greys out disabled buttons, shows no
    deleted message, and shows an ephemeral message to its interaction's user alone.
    """
    component = find(message, custom_id)
    if not strict:
        return component
    who = member.user.name
    if message.deleted:
        raise InvalidInvocation(f"message {message.id} was deleted: there is nothing to click")
    if not perms & Perm.VIEW_CHANNEL:
        raise InvalidInvocation(f"{who} cannot see #{channel.name}")
    if message.ephemeral and ephemeral_owner is not None and ephemeral_owner != member.id:
        raise InvalidInvocation(f"message {message.id} is ephemeral: only user {ephemeral_owner} sees it")
    if component is None:
        raise InvalidInvocation(
            f"message {message.id} has no component {custom_id!r} (it has {custom_ids(message)})"
        )
    kind = int(component.get("type", 0))
    if kind != BUTTON:
        raise InvalidInvocation(f"{custom_id!r} is a {COMPONENT_NAMES.get(kind, kind)}, not a button")
    if component.get("disabled"):
        raise InvalidInvocation(f"button {custom_id!r} is disabled")
    return component
