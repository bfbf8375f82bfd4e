"""Channel webhooks: list, create and modify them (the bot, with Manage Webhooks), execute one
and edit its messages (by its token), as Discord answers them.

Rules kept from Discord because a bot gets them wrong in ways a user notices:
- listing and creating a channel's webhooks needs Manage Webhooks there (403 50013);
- a channel has at most 15 webhooks (400 30007 "Maximum number of webhooks reached (15)");
- a thread has no webhooks: its messages go through the parent's webhook with ``thread_id``;
- a webhook's name (and an execute's ``username``) may not contain "discord" or "clyde" (50035);
- interactive components are kept only for an application-owned webhook, with ``with_components``;
- a webhook edits only the messages it sent (10008 Unknown Message otherwise).
A webhook message's author is the webhook under the ``username`` and ``avatar_url`` it was sent
with (else the webhook's own name and avatar at that moment), as Discord shows it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from loopback.messages import EmptyMessage, mark_edited, new_version, render
from loopback.records import EPHEMERAL, Change, MessageRecord
from loopback.rest import ApiError, Request, Router
from loopback.state import ServerState
from loopback.wire import FormError, json_response
from loopback.world import Channel, Perm

MAX_PER_CHANNEL = 15
REFUSED_NAMES = ("discord", "clyde")


@dataclass(eq=False)
class WebhookRecord:
    id: int
    channel_id: int
    guild_id: int
    name: str
    token: str
    application_id: int | None
    creator_id: int
    avatar: str | None = None  # hash of the avatar image
    avatar_data: bytes | None = None


def webhook_author(webhook: WebhookRecord, body: dict[str, Any]) -> dict[str, Any]:
    """The author a webhook message shows: the execute's username and avatar, or the webhook's."""
    return {
        "id": str(webhook.id),
        "username": body.get("username") or webhook.name,
        "discriminator": "0000",
        "global_name": None,
        "avatar": webhook.avatar,
        "avatar_url": body.get("avatar_url"),  # the override as sent (Discord proxies it)
        "bot": True,
    }


class ChannelWebhooks:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.webhooks: dict[int, WebhookRecord] = {}
        state.channel_webhooks = self

    def install(self, r: Router) -> None:
        r.add("GET", "/channels/{channel}/webhooks", self.list_)
        r.add("POST", "/channels/{channel}/webhooks", self.create)
        r.add("PATCH", "/webhooks/{webhook}", self.modify)
        r.add("GET", "/webhooks/{webhook}", self.get)

    def find(self, webhook_id: str, token: str) -> WebhookRecord | None:
        hook = self.webhooks.get(int(webhook_id)) if webhook_id.isdigit() else None
        return hook if hook is not None and hook.token == token else None

    # -- the bot's endpoints ----------------------------------------------------------------------

    async def list_(self, req: Request) -> web.Response:
        channel = self._channel(req)
        return json_response([self._out(h) for h in self.webhooks.values() if h.channel_id == channel.id])

    async def create(self, req: Request) -> web.Response:
        channel = self._channel(req)
        body = req.json if isinstance(req.json, dict) else {}
        name = _name(body.get("name"), "name")
        if sum(1 for h in self.webhooks.values() if h.channel_id == channel.id) >= MAX_PER_CHANNEL:
            raise ApiError(400, "Maximum number of webhooks reached (15)", 30007)
        app = self.state.world.application
        hook = WebhookRecord(
            id=self.state.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            name=name,
            token=secrets.token_urlsafe(32),
            application_id=app.id,
            creator_id=app.bot.id,
        )
        self._set_avatar(hook, body)
        self.webhooks[hook.id] = hook
        self.state.bus.publish(Change("webhook", detail=f"created {hook.id} in {channel.id}"))
        return json_response(self._out(hook))

    async def modify(self, req: Request) -> web.Response:
        hook = self.webhooks.get(int(req.params["webhook"])) if req.params["webhook"].isdigit() else None
        if hook is None:
            raise ApiError(404, "Unknown Webhook", 10015)
        channel = self.state.world.channel(hook.channel_id)
        assert channel is not None
        self._require(channel)
        body = req.json if isinstance(req.json, dict) else {}
        if "name" in body:
            hook.name = _name(body["name"], "name")
        self._set_avatar(hook, body)
        self.state.bus.publish(Change("webhook", detail=f"modified {hook.id}"))
        return json_response(self._out(hook))

    async def get(self, req: Request) -> web.Response:
        hook = self.webhooks.get(int(req.params["webhook"])) if req.params["webhook"].isdigit() else None
        if hook is None:
            raise ApiError(404, "Unknown Webhook", 10015)
        return json_response(self._out(hook))

    # -- by token (called from loopback.webhooks for ids that are no application's) ---------------

    async def execute(self, hook: WebhookRecord, req: Request) -> web.Response:
        body = req.json if isinstance(req.json, dict) else {}
        if body.get("username") is not None:
            _name(body["username"], "username")
        channel_id = hook.channel_id
        thread_id = req.query.get("thread_id")
        if thread_id:
            thread = self.state.world.channel(int(thread_id)) if thread_id.isdigit() else None
            if thread is None or not thread.is_thread or thread.parent_id != hook.channel_id:
                raise ApiError(400, "Unknown Channel", 10003)
            channel_id = thread.id
        body = self._components(hook, req, body)
        try:
            version = new_version(body, req.files, previous=None)
        except EmptyMessage:
            raise ApiError(400, "Cannot send an empty message", 50006) from None
        message = MessageRecord(
            id=self.state.ids.next(),
            channel_id=channel_id,
            guild_id=hook.guild_id,
            author_id=hook.id,
            kind="webhook",
            versions=[replace(version, flags=version.flags & ~EPHEMERAL)],
            webhook_author=webhook_author(hook, body),
            application_id=hook.application_id,
        )
        self.state.log_message(message)
        self.state.bus.publish(Change("message", message=message))
        if req.query.get("wait", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        return json_response(render(self.state, message))

    async def edit_message(self, hook: WebhookRecord, req: Request) -> web.Response:
        message = self._message(hook, req)
        body = self._components(hook, req, req.json if isinstance(req.json, dict) else {})
        try:
            message.versions.append(new_version(body, req.files, previous=message.latest))
        except EmptyMessage:
            raise ApiError(400, "Cannot send an empty message", 50006) from None
        mark_edited(message)
        self.state.bus.publish(Change("edit", message=message))
        return json_response(render(self.state, message))

    async def get_message(self, hook: WebhookRecord, req: Request) -> web.Response:
        return json_response(render(self.state, self._message(hook, req)))

    async def delete_message(self, hook: WebhookRecord, req: Request) -> web.Response:
        message = self._message(hook, req)
        message.deleted = True
        self.state.bus.publish(Change("delete", message=message))
        return web.Response(status=204)

    # -- helpers ----------------------------------------------------------------------------------

    def _message(self, hook: WebhookRecord, req: Request) -> MessageRecord:
        raw = req.params["message"]
        message = self.state.messages.get(int(raw)) if raw.isdigit() else None
        if message is None or message.deleted or message.author_id != hook.id:
            raise ApiError(404, "Unknown Message", 10008)
        return message

    def _components(self, hook: WebhookRecord, req: Request, body: dict[str, Any]) -> dict[str, Any]:
        """Interactive components only from an application-owned webhook asked ``with_components``."""
        if "components" not in body:
            return body
        allowed = hook.application_id is not None and req.query.get("with_components", "").lower() in (
            "1",
            "true",
        )
        return body if allowed else {k: v for k, v in body.items() if k != "components"}

    def _channel(self, req: Request) -> Channel:
        raw = req.params["channel"]
        channel = self.state.world.channel(int(raw)) if raw.isdigit() else None
        if channel is None:
            raise ApiError(404, "Unknown Channel", 10003)
        if channel.is_thread:
            raise ApiError(400, "Cannot execute action on this channel type", 50024)
        self._require(channel)
        return channel

    def _require(self, channel: Channel) -> None:
        world = self.state.world
        allowed = world.permissions(
            world.member(world.guilds[channel.guild_id], world.application.bot), channel
        )
        if not allowed & Perm.VIEW_CHANNEL:
            raise ApiError(403, "Missing Access", 50001)
        if not allowed & Perm.MANAGE_WEBHOOKS:
            raise ApiError(403, "Missing Permissions", 50013)

    def _set_avatar(self, hook: WebhookRecord, body: dict[str, Any]) -> None:
        if "avatar" not in body:
            return
        raw = body["avatar"]
        if raw is None:
            hook.avatar, hook.avatar_data = None, None
            return
        if not isinstance(raw, str) or not raw.startswith("data:image/") or ";base64," not in raw:
            raise FormError("avatar", "IMAGE_INVALID", "Invalid image data")
        data = base64.b64decode(raw.split(";base64,", 1)[1])
        hook.avatar, hook.avatar_data = hashlib.md5(data).hexdigest(), data

    def _out(self, hook: WebhookRecord) -> dict[str, Any]:
        bot = self.state.world.application.bot
        return {
            "id": str(hook.id),
            "type": 1,
            "guild_id": str(hook.guild_id),
            "channel_id": str(hook.channel_id),
            "name": hook.name,
            "avatar": hook.avatar,
            "token": hook.token,
            "application_id": str(hook.application_id) if hook.application_id else None,
            "user": {
                "id": str(bot.id),
                "username": bot.name,
                "discriminator": "0",
                "avatar": None,
                "bot": True,
                "global_name": None,
            },
        }


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 80:
        raise FormError(field, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 80 in length.")
    lowered = value.lower()
    for word in REFUSED_NAMES:
        if word in lowered:
            raise FormError(field, "USERNAME_INVALID_CONTAINS", f'Username cannot contain "{word}"')
    return value
