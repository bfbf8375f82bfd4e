"""Message bodies: Discord's limits, turning a create/edit body into a new :class:`Version`, and JSON out."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from loopback import mentions, payloads
from loopback.records import EPHEMERAL, LOADING, FileRecord, MessageRecord, Version
from loopback.state import ServerState
from loopback.wire import DISCORD_EPOCH_MS, FormError, iso_now

CONTENT_MAX = 2000
EMBEDS_MAX = 10
EMBED_TOTAL_MAX = 6000
EMBED_LIMITS = {"title": 256, "description": 4096}
SETTABLE_FLAGS = EPHEMERAL | (1 << 2) | (1 << 12) | (1 << 13) | (1 << 15)  # see "Message Flags"
HAS_THREAD = 1 << 5
ATTACHMENTS_MAX = 10


class EmptyMessage(Exception):
    """Discord's 50006 "Cannot send an empty message"."""


def validate(body: dict[str, Any]) -> None:
    """Raise :class:`FormError` where Discord would answer 50035 Invalid Form Body."""
    content = body.get("content")
    if content is not None and len(str(content)) > CONTENT_MAX:
        raise FormError("content", "BASE_TYPE_MAX_LENGTH", f"Must be {CONTENT_MAX} or fewer in length.")
    embeds = body.get("embeds") or []
    if len(embeds) > EMBEDS_MAX:
        raise FormError("embeds", "BASE_TYPE_MAX_LENGTH", f"Must be {EMBEDS_MAX} or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in EMBED_LIMITS.items():
            value = embed.get(key) or ""
            total += len(value)
            if len(value) > limit:
                raise FormError(
                    f"embeds.{i}.{key}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                )
        for j, f in enumerate(embed.get("fields") or []):
            for key, limit in (("name", 256), ("value", 1024)):
                value = str(f.get(key) or "")
                total += len(value)
                if not value:
                    raise FormError(
                        f"embeds.{i}.fields.{j}.{key}", "BASE_TYPE_REQUIRED", "This field is required"
                    )
                if len(value) > limit:
                    msg = f"Must be {limit} or fewer in length."
                    raise FormError(f"embeds.{i}.fields.{j}.{key}", "BASE_TYPE_MAX_LENGTH", msg)
        total += len((embed.get("footer") or {}).get("text") or "") + len(
            (embed.get("author") or {}).get("name") or ""
        )
    if total > EMBED_TOTAL_MAX:
        raise FormError("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    _validate_mentions(body.get("allowed_mentions"))


def _validate_mentions(allowed: dict[str, Any] | None) -> None:
    if not allowed:
        return
    parse = allowed.get("parse") or []
    for kind in ("users", "roles"):
        if kind in parse and allowed.get(kind):
            message = f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.'
            raise FormError(f"allowed_mentions.{kind}", "SET_TYPE_ALREADY_CONTAINS_VALUE", message)


def new_version(
    body: dict[str, Any],
    files: tuple[FileRecord, ...],
    *,
    previous: Version | None,
    flags: int | None = None,
    require_content: bool = True,
) -> Version:
    """The state a message has after a create (``previous`` None) or an edit with ``body``.

    An edit changes only the fields it carries. New uploads are the ``files[n]`` parts; an
    ``attachments`` list keeps the existing attachments it names by id and adds uploads by index.
    """
    validate(body)
    base = previous or Version("", (), (), (), 0, None, 0.0)
    content = body["content"] if "content" in body else base.content
    embeds = tuple(body["embeds"] or ()) if "embeds" in body else base.embeds
    components = tuple(body["components"] or ()) if "components" in body else base.components
    attachments = _attachments(body, files, base.attachments)
    if flags is None:
        flags = base.flags & ~LOADING
        if "flags" in body and body["flags"] is not None:
            flags = (
                (flags & ~SETTABLE_FLAGS) | (int(body["flags"]) & SETTABLE_FLAGS) | (base.flags & EPHEMERAL)
            )
    version = Version(
        content=content or "",
        embeds=embeds,
        attachments=attachments,
        components=components,
        flags=flags,
        allowed_mentions=body.get("allowed_mentions"),
        at=time.monotonic(),
    )
    if require_content and not (
        version.content or version.embeds or version.attachments or version.components
    ):
        raise EmptyMessage()
    return version


def _attachments(
    body: dict[str, Any], files: tuple[FileRecord, ...], existing: tuple[FileRecord, ...]
) -> tuple[FileRecord, ...]:
    if "attachments" not in body:
        return existing + files
    by_id = {str(f.id): f for f in existing}
    uploads = dict(enumerate(files))
    kept: list[FileRecord] = []
    for entry in body["attachments"] or []:
        key = str(entry.get("id"))
        if key.isdigit() and int(key) in uploads:
            kept.append(uploads.pop(int(key)))
        elif key in by_id:
            kept.append(by_id[key])
    return tuple(kept) + tuple(uploads.values())


def render(state: ServerState, message: MessageRecord, *, with_reference: bool = True) -> dict[str, Any]:
    """A message object as Discord returns it from the webhook and channel endpoints.

    A reply carries ``message_reference`` and, with ``with_reference``, ``referenced_message``
    (rendered one level deep, as Discord does; ``None`` once that message is deleted). A message a
    thread was started from carries that ``thread`` and the HAS_THREAD flag.
    """
    world = state.world
    latest = message.latest
    created_ms = (message.id >> 22) + DISCORD_EPOCH_MS
    replied = state.messages.get(message.reference_id) if message.reference_id is not None else None
    mentioned = mentions.resolve(world, message, replied)
    data: dict[str, Any] = {
        "id": str(message.id),
        "type": _message_type(state, message),
        "channel_id": str(message.channel_id),
        "author": dict(message.webhook_author)
        if message.webhook_author is not None
        else payloads.user(world.users[message.author_id]),
        "content": latest.content,
        "timestamp": datetime.fromtimestamp(created_ms / 1000, UTC).isoformat(),
        "edited_timestamp": message.edited_iso,
        "tts": False,
        "mention_everyone": mentioned.everyone,
        "mentions": [payloads.user(world.users[u]) for u in mentioned.users],
        "mention_roles": [str(r) for r in mentioned.roles],
        "attachments": [_attachment(state, message.channel_id, f) for f in latest.attachments],
        "embeds": list(latest.embeds),
        "pinned": False,
        "flags": latest.flags,
        "components": list(latest.components),
    }
    if message.webhook_author is not None:
        data["webhook_id"] = message.webhook_author["id"]
        if message.application_id is not None:
            data["application_id"] = str(message.application_id)
    if message.guild_id is not None:
        data["guild_id"] = str(message.guild_id)
    thread = world.channel(message.id)
    if thread is not None and thread.is_thread and thread.parent_id == message.channel_id:
        data["thread"] = payloads.channel(thread)
        data["flags"] |= HAS_THREAD
    if message.reference_id is not None:
        reference = {"type": 0, "message_id": str(message.reference_id)}
        reference["channel_id"] = str(replied.channel_id if replied else message.channel_id)
        if message.guild_id is not None:
            reference["guild_id"] = str(message.guild_id)
        data["message_reference"] = reference
        if with_reference:
            gone = replied is None or replied.deleted
            data["referenced_message"] = (
                None if gone or replied is None else render(state, replied, with_reference=False)
            )
    if message.interaction_id is not None:
        data.update(_interaction_fields(state, message))
    return data


def gateway_message(state: ServerState, message: MessageRecord) -> dict[str, Any]:
    """A MESSAGE_CREATE payload: the message plus the author's partial ``member`` and each mentioned
    user's, as the gateway sends them in a guild."""
    data = render(state, message)
    guild = state.world.guilds.get(message.guild_id) if message.guild_id is not None else None
    if guild is None or message.webhook_author is not None:
        return data
    author = guild.members.get(message.author_id)
    if author is not None:
        data["member"] = payloads.member(author, with_user=False)
    for user in data["mentions"]:
        member = guild.members.get(int(user["id"]))
        if member is not None:
            user["member"] = payloads.member(member, with_user=False)
    return data


def _message_type(state: ServerState, message: MessageRecord) -> int:
    """19 REPLY (a component's response replies to the clicked message), 20/23 for a command's
    response, else 0 DEFAULT."""
    if message.reference_id is not None:
        return 19
    if message.kind == "original" and message.interaction_id is not None:
        record = state.interactions[message.interaction_id]
        if record.type == 2:
            return 20 if (record.payload.get("data") or {}).get("type", 1) == 1 else 23
    return 0


def _interaction_fields(state: ServerState, message: MessageRecord) -> dict[str, Any]:
    assert message.interaction_id is not None
    record = state.interactions[message.interaction_id]
    app_id = str(state.world.application.id)
    user = record.payload.get("member", {}).get("user") or record.payload.get("user")
    metadata: dict[str, Any] = {
        "id": str(record.id),
        "type": record.type,
        "user": user,
        "authorizing_integration_owners": record.payload.get("authorizing_integration_owners", {}),
    }
    fields: dict[str, Any] = {"webhook_id": app_id, "application_id": app_id}
    if record.type == 2:
        metadata["name"] = record.command
        fields["interaction"] = {"id": str(record.id), "type": 2, "name": record.command, "user": user}
    if record.target is not None:
        metadata["interacted_message_id"] = str(record.target.id)
    original = record.original
    if message.kind == "followup" and original is not None and original.interaction_id == record.id:
        metadata["original_response_message_id"] = str(original.id)
    fields["interaction_metadata"] = metadata
    return fields


def _attachment(state: ServerState, channel_id: int, file: FileRecord) -> dict[str, Any]:
    url = state.attachment_url(channel_id, file)
    data: dict[str, Any] = {
        "id": str(file.id),
        "filename": file.filename,
        "size": len(file.data),
        "url": url,
        "proxy_url": url,
        "content_type": file.content_type,
    }
    if file.description:
        data["description"] = file.description
    return data


def mark_edited(message: MessageRecord) -> None:
    message.edited_iso = iso_now()
