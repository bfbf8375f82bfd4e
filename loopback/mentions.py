"""Who a message mentions, and what an app without the MESSAGE_CONTENT intent may read of it.

Mentions follow Discord's rules: ``<@id>``/``<@!id>``, ``<@&role>`` and ``@everyone``/``@here`` in
the content count only as far as the message's ``allowed_mentions`` lets them (no
``allowed_mentions`` at all parses everything), and a reply also mentions the replied-to author
when ``replied_user`` says so (a reply sent without ``allowed_mentions`` does, as the client's
default "@ on" does).

MESSAGE_CONTENT is privileged: without it an app gets ``content``, ``embeds``, ``attachments``,
``components`` and ``poll`` blanked, except in its own messages, messages that mention it and DMs
(Discord's "Message Content Intent" FAQ).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from loopback.records import MessageRecord
from loopback.world import Perm, World

USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")
EVERYONE_MENTION = re.compile(r"@(?:everyone|here)\b")
PARSE_ALL = ("users", "roles", "everyone")

BLANKED = {"content": "", "embeds": [], "attachments": [], "components": []}


@dataclass(frozen=True)
class Mentions:
    users: tuple[int, ...] = ()
    roles: tuple[int, ...] = ()
    everyone: bool = False


def resolve(world: World, message: MessageRecord, replied: MessageRecord | None) -> Mentions:
    """The users, roles and @everyone the latest version of ``message`` mentions."""
    latest = message.latest
    # An edit that sends no allowed_mentions keeps the ones the message had.
    allowed = next((v.allowed_mentions for v in reversed(message.versions) if v.allowed_mentions), None)
    parse = set(PARSE_ALL if allowed is None else allowed.get("parse") or ())
    listed_users = {int(u) for u in (allowed or {}).get("users") or ()}
    listed_roles = {int(r) for r in (allowed or {}).get("roles") or ()}
    replied_user = True if allowed is None else bool(allowed.get("replied_user", False))
    content = latest.content or ""

    users: list[int] = []
    if (
        replied is not None
        and replied_user
        and replied.author_id != message.author_id
        and replied.webhook_author is None  # a webhook is no user to ping
    ):
        users.append(replied.author_id)
    for raw in USER_MENTION.findall(content):
        user_id = int(raw)
        if user_id in world.users and ("users" in parse or user_id in listed_users):
            users.append(user_id)

    guild = world.guilds.get(message.guild_id) if message.guild_id is not None else None
    roles: list[int] = []
    everyone = False
    if guild is not None:
        for raw in ROLE_MENTION.findall(content):
            role_id = int(raw)
            if role_id in guild.roles and ("roles" in parse or role_id in listed_roles):
                roles.append(role_id)
        author = guild.members.get(message.author_id)
        channel = guild.channels.get(message.channel_id)
        if "everyone" in parse and EVERYONE_MENTION.search(content) and author is not None:
            everyone = bool(world.permissions(author, channel) & Perm.MENTION_EVERYONE)
    return Mentions(tuple(dict.fromkeys(users)), tuple(dict.fromkeys(roles)), everyone)


def shows_content(data: dict[str, Any], app_user_id: int) -> bool:
    """Whether an app without MESSAGE_CONTENT still reads this rendered message's content."""
    me = str(app_user_id)
    if data.get("author", {}).get("id") == me or "guild_id" not in data:
        return True
    return any(m.get("id") == me for m in data.get("mentions") or ())


def redact(data: dict[str, Any], app_user_id: int) -> dict[str, Any]:
    """A rendered message as an app without MESSAGE_CONTENT receives it (a referenced message too)."""
    out = dict(data)
    if not shows_content(data, app_user_id):
        out.update({key: type(value)() for key, value in BLANKED.items()})
        out.pop("poll", None)
    referenced = data.get("referenced_message")
    if isinstance(referenced, dict):
        out["referenced_message"] = redact(referenced, app_user_id)
    return out
