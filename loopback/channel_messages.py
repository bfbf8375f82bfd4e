"""Channel message endpoints: history, send (replies too), fetch, edit, delete, typing, and
starting a thread from a message.

Rules kept from Discord because a bot gets them wrong in ways a user notices:
- a bot edits only its own messages (403 50005 "Cannot edit a message authored by another
  user") and deletes others' only with Manage Messages (403 50013);
- a reply's ``message_reference`` must name an existing message of that channel, else 400 50035
  "Unknown message", unless ``fail_if_not_exists`` is false (then it is sent as a plain message);
- ephemeral messages are no channel's history: these endpoints answer 10008 Unknown Message;
- without the MESSAGE_CONTENT intent other users' content reads blank here too, unless the
  message mentions the bot;
- history takes ``limit`` 1-100 (50 by default) and answers newest first;
- a thread started from a message is a public thread whose id is the message's, owned by the bot;
  it needs Create Public Threads in a text channel, and one message holds one thread (400 160004
  "A thread has already been created for this message").
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from loopback import mentions, payloads
from loopback.messages import EmptyMessage, mark_edited, new_version, render
from loopback.records import EPHEMERAL, Change, MessageRecord
from loopback.rest import ApiError, Request, Router
from loopback.state import ServerState
from loopback.wire import FormError, json_response
from loopback.world import Channel, ChannelType, Perm

MESSAGE = "/channels/{channel}/messages/{message}"
HISTORY_LIMIT = 100
THREAD_NAME_MAX = 100
AUTO_ARCHIVE_MINUTES = (60, 1440, 4320, 10080)
DEFAULT_AUTO_ARCHIVE = 1440  # every loopback text channel's default_auto_archive_duration
SLOWMODE_MAX_S = 21600


class ChannelMessages:
    def __init__(self, state: ServerState) -> None:
        self.state = state

    def install(self, r: Router) -> None:
        r.add("GET", "/channels/{channel}/messages", self.history)
        r.add("POST", "/channels/{channel}/messages", self.send)
        r.add("GET", MESSAGE, self.fetch)
        r.add("PATCH", MESSAGE, self.edit)
        r.add("DELETE", MESSAGE, self.delete)
        r.add("POST", "/channels/{channel}/typing", self.typing)
        r.add("POST", MESSAGE + "/threads", self.start_thread)

    # -- reading ----------------------------------------------------------------------------------

    async def history(self, req: Request) -> web.Response:
        channel = self._channel(req)
        if not self._bot_permissions(channel) & Perm.READ_MESSAGE_HISTORY:
            return json_response([])  # Discord: "no messages will be returned"
        limit = _limit(req.query.get("limit"))
        visible = [m for m in self.state.channel_log.get(channel.id, []) if not m.deleted]
        return json_response([self._out(m) for m in reversed(_page(visible, req.query, limit))])

    async def fetch(self, req: Request) -> web.Response:
        channel = self._channel(req, Perm.READ_MESSAGE_HISTORY)
        return json_response(self._out(self._message(req, channel)))

    # -- writing ----------------------------------------------------------------------------------

    async def send(self, req: Request) -> web.Response:
        channel = self._channel(req, sending=True)
        body = req.json if isinstance(req.json, dict) else {}
        reference = self._reference(channel, body.get("message_reference"))
        try:
            version = new_version(body, req.files, previous=None)
        except EmptyMessage:
            raise ApiError(400, "Cannot send an empty message", 50006) from None
        if version.flags & EPHEMERAL:  # only interaction responses can be ephemeral
            version = replace(version, flags=version.flags & ~EPHEMERAL)
        message = MessageRecord(
            id=self.state.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author_id=self.state.world.application.bot.id,
            kind="channel",
            versions=[version],
            reference_id=reference.id if reference is not None else None,
        )
        self.state.log_message(message)
        self.state.bus.publish(Change("message", message=message))
        return json_response(self._out(message))

    async def edit(self, req: Request) -> web.Response:
        channel = self._channel(req)
        message = self._message(req, channel)
        if message.author_id != self.state.world.application.bot.id:
            raise ApiError(403, "Cannot edit a message authored by another user", 50005)
        body = req.json if isinstance(req.json, dict) else {}
        try:
            message.versions.append(new_version(body, req.files, previous=message.latest))
        except EmptyMessage:
            raise ApiError(400, "Cannot send an empty message", 50006) from None
        mark_edited(message)
        self.state.bus.publish(Change("edit", interaction=req.interaction, message=message))
        return json_response(self._out(message))

    async def delete(self, req: Request) -> web.Response:
        channel = self._channel(req)
        message = self._message(req, channel)
        mine = message.author_id == self.state.world.application.bot.id
        if not mine and not self._bot_permissions(channel) & Perm.MANAGE_MESSAGES:
            raise ApiError(403, "Missing Permissions", 50013)
        message.deleted = True
        self.state.bus.publish(Change("delete", interaction=req.interaction, message=message))
        return web.Response(status=204)

    async def typing(self, req: Request) -> web.Response:
        channel = self._channel(req, sending=True)
        self.state.bus.publish(Change("typing", detail=str(channel.id)))
        return web.Response(status=204)

    # -- threads ----------------------------------------------------------------------------------

    async def start_thread(self, req: Request) -> web.Response:
        """Start Thread from Message: a public thread with the message's id, answered 201."""
        channel = self._channel(req)
        if channel.type != ChannelType.TEXT:
            raise ApiError(400, "Cannot execute action on this channel type", 50024)
        message = self._message(req, channel)
        if not self._bot_permissions(channel) & Perm.CREATE_PUBLIC_THREADS:
            raise ApiError(403, "Missing Permissions", 50013)
        if self.state.world.channel(message.id) is not None:
            raise ApiError(400, "A thread has already been created for this message", 160004)
        body = req.json if isinstance(req.json, dict) else {}
        name, archive, slowmode = _thread_options(body)
        thread = self.state.world.add_thread(
            channel,
            name,
            owner=self.state.world.application.bot,
            thread_id=message.id,
            auto_archive_duration=archive or DEFAULT_AUTO_ARCHIVE,
            rate_limit_per_user=slowmode,
        )
        self.state.bus.publish(Change("thread", message=message, detail=f"{thread.id} {thread.name}"))
        return json_response(payloads.channel(thread), status=201)

    # -- helpers ----------------------------------------------------------------------------------

    def _channel(self, req: Request, needed: int = 0, *, sending: bool = False) -> Channel:
        """The channel of the path, if the bot sees it (and has ``needed`` there, and may send
        there with ``sending``)."""
        raw = req.params["channel"]
        channel = self.state.world.channel(int(raw)) if raw.isdigit() else None
        if channel is None:
            raise ApiError(404, "Unknown Channel", 10003)
        if sending:
            needed |= Perm.SEND_MESSAGES_IN_THREADS if channel.is_thread else Perm.SEND_MESSAGES
        allowed = self._bot_permissions(channel)
        if not allowed & Perm.VIEW_CHANNEL:
            raise ApiError(403, "Missing Access", 50001)
        if allowed & needed != needed:
            raise ApiError(403, "Missing Permissions", 50013)
        return channel

    def _message(self, req: Request, channel: Channel) -> MessageRecord:
        raw = req.params["message"]
        message = self.state.messages.get(int(raw)) if raw.isdigit() else None
        if message is None or message.deleted or message.ephemeral or message.channel_id != channel.id:
            raise ApiError(404, "Unknown Message", 10008)
        if message.interaction_id is not None:
            req.interaction = self.state.interactions[message.interaction_id]
        return message

    def _reference(self, channel: Channel, reference: Any) -> MessageRecord | None:
        """The message a reply refers to; None for no reply (or a lost one Discord may drop)."""
        if not isinstance(reference, dict):
            return None
        if int(reference.get("type") or 0) != 0:
            raise FormError("message_reference.type", "BASE_TYPE_CHOICES", "The loopback server only replies")
        raw = str(reference.get("message_id", ""))
        found = self.state.messages.get(int(raw)) if raw.isdigit() else None
        in_channel = str(reference.get("channel_id") or channel.id) == str(channel.id)
        if (
            found is None
            or found.deleted
            or found.ephemeral
            or found.channel_id != channel.id
            or not in_channel
        ):
            if reference.get("fail_if_not_exists") is False:
                return None
            raise FormError("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
        if not self._bot_permissions(channel) & Perm.READ_MESSAGE_HISTORY:
            raise ApiError(403, "Missing Permissions", 50013)
        return found

    def _bot_permissions(self, channel: Channel) -> int:
        world = self.state.world
        return world.permissions(world.member(world.guilds[channel.guild_id], world.application.bot), channel)

    def _out(self, message: MessageRecord) -> dict[str, Any]:
        data = render(self.state, message)
        if self.state.content_intent():
            return data
        return mentions.redact(data, self.state.world.application.bot.id)


def _limit(raw: str | None) -> int:
    """History's ``limit``: 1-100, 50 when absent (Discord refuses others with 50035)."""
    if raw is None:
        return 50
    try:
        limit = int(raw)
    except ValueError:
        raise FormError("limit", "NUMBER_TYPE_COERCE", f'Value "{raw}" is not int.') from None
    if limit < 1:
        raise FormError("limit", "NUMBER_TYPE_MIN", "int value should be greater than or equal to 1.")
    if limit > HISTORY_LIMIT:
        message = f"int value should be less than or equal to {HISTORY_LIMIT}."
        raise FormError("limit", "NUMBER_TYPE_MAX", message)
    return limit


def _thread_options(body: dict[str, Any]) -> tuple[str, int | None, int]:
    """``name``, ``auto_archive_duration`` and ``rate_limit_per_user`` of a thread start, checked as
    Discord checks them (the contract check says the same where it is on)."""
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise FormError("name", "BASE_TYPE_REQUIRED", "This field is required")
    if len(name) > THREAD_NAME_MAX:
        raise FormError("name", "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {THREAD_NAME_MAX} in length.")
    archive = body.get("auto_archive_duration")
    if archive is not None and archive not in AUTO_ARCHIVE_MINUTES:
        allowed = ", ".join(map(str, AUTO_ARCHIVE_MINUTES))
        raise FormError("auto_archive_duration", "BASE_TYPE_CHOICES", f"Value must be one of {{{allowed}}}.")
    slowmode = body.get("rate_limit_per_user")
    if slowmode is not None and (
        not isinstance(slowmode, int) or isinstance(slowmode, bool) or not 0 <= slowmode <= SLOWMODE_MAX_S
    ):
        message = f"int value should be between 0 and {SLOWMODE_MAX_S}."
        raise FormError("rate_limit_per_user", "NUMBER_TYPE_MAX", message)
    return name.strip(), archive, slowmode or 0


def _page(messages: list[MessageRecord], query: dict[str, str], limit: int) -> list[MessageRecord]:
    """The page ``before``/``after``/``around`` a message id selects, oldest first (Discord answers
    newest first): the ``limit`` closest to that id, or the latest ``limit``."""
    for key in ("before", "after", "around"):
        if str(query.get(key, "")).isdigit():
            pivot = int(query[key])
            break
    else:
        return messages[-limit:]
    older = [m for m in messages if m.id < pivot]
    newer = [m for m in messages if m.id > pivot]
    if key == "before":
        return older[-limit:]
    if key == "after":
        return newer[:limit]
    at = [m for m in messages if m.id == pivot]
    half = (limit - len(at)) // 2
    return (older[-half:] if half else []) + at + newer[: limit - len(at) - min(half, len(older))]
