"""Interaction endpoints: the initial callback, ``@original`` and follow-ups, as Discord answers them.

Rules kept from Discord because a bot gets them wrong in ways a user notices:
- the first callback must come within 3 s (``ServerState.response_deadline``), else 10062 Unknown
  interaction; a second callback is 40060 "Interaction has already been acknowledged";
- the first follow-up after a defer fills the "thinking…" message, with the defer's ephemerality;
- content over 2000 characters, too many or too large embeds and empty messages are refused.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from aiohttp import web

from loopback.interactions import InteractionRecord
from loopback.messages import EmptyMessage, mark_edited, new_version, render
from loopback.records import EPHEMERAL, LOADING, Change, MessageRecord, Version
from loopback.rest import ApiError, Request, Router
from loopback.state import ServerState
from loopback.wire import json_response

log = logging.getLogger("loopback.webhooks")

ORIGINAL = "@original"


class ChannelHooks(Protocol):
    """What a channel's webhooks (``loopback.channel_webhooks``, which imports this module) answer."""

    def find(self, webhook_id: str, token: str) -> Any: ...
    async def execute(self, hook: Any, req: Request) -> web.Response: ...
    async def get_message(self, hook: Any, req: Request) -> web.Response: ...
    async def edit_message(self, hook: Any, req: Request) -> web.Response: ...
    async def delete_message(self, hook: Any, req: Request) -> web.Response: ...


class Webhooks:
    def __init__(self, state: ServerState) -> None:
        self.state = state

    def install(self, r: Router) -> None:
        r.add("POST", "/interactions/{interaction}/{token}/callback", self.callback, auth=False)
        r.add("POST", "/webhooks/{app}/{token}", self.followup, auth=False)
        r.add("GET", "/webhooks/{app}/{token}/messages/{message}", self.get_message, auth=False)
        r.add("PATCH", "/webhooks/{app}/{token}/messages/{message}", self.edit_message, auth=False)
        r.add("DELETE", "/webhooks/{app}/{token}/messages/{message}", self.delete_message, auth=False)

    # -- initial response -------------------------------------------------------------------------

    async def callback(self, req: Request) -> web.Response:
        record = (
            self.state.interactions.get(int(req.params["interaction"]))
            if req.params["interaction"].isdigit()
            else None
        )
        if record is None or record.token != req.params["token"]:
            raise ApiError(404, "Unknown interaction", 10062)
        req.interaction = record
        deadline = self.state.response_deadline
        if (
            record.callback_type is None
            and deadline is not None
            and time.monotonic() - record.sent_at > deadline
        ):
            log.warning("%s answered after the %.1f s deadline: Unknown interaction", record.label, deadline)
            raise ApiError(404, "Unknown interaction", 10062)
        if record.callback_type is not None:
            raise ApiError(400, "Interaction has already been acknowledged.", 40060)
        body = req.json if isinstance(req.json, dict) else {}
        kind = body.get("type")
        if not isinstance(kind, int):  # the spec check says so first, where it runs
            raise ApiError(400, "Invalid Form Body", 50035)
        data = body.get("data") or {}
        message = self._initial_message(record, kind, data, req)
        record.callback_type, record.callback_data, record.callback_at = kind, data, time.monotonic()
        if kind in (6, 7) and message is not None:
            # A component's (deferred) update: @original is the clicked message from now on.
            record.original = message
            record.response_version = len(message.versions) - 1
        elif message is not None:
            record.original = message
            self._log(message)
        if kind in (4, 7):  # a defer carries no message body
            record.payloads.append(data)
        self.state.bus.publish(Change("callback", interaction=record, message=message))
        if req.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        return json_response(self._callback_response(record, kind, message))

    def _initial_message(
        self, record: InteractionRecord, kind: Any, data: dict[str, Any], req: Request
    ) -> MessageRecord | None:
        if kind in (4, 5) and record.type == 4:
            raise ApiError(400, "An autocomplete interaction must be answered with type 8", 50035)
        if kind == 4:
            version = self._version(data, req, previous=None)
        elif kind == 5:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            version = Version("", (), (), (), flags, data.get("allowed_mentions"), time.monotonic())
        elif kind == 8 and record.type == 4:
            record.choices = list(data.get("choices") or [])
            return None
        elif kind in (6, 7) and record.type in (3, 5):
            return self._update_target(record, kind, data, req)
        elif kind == 9 and record.type in (2, 3):
            return None
        else:
            raise ApiError(400, f"Interaction response type {kind} is not valid here", 50035)
        return self._new_message(record, "original", version)

    def _update_target(
        self, record: InteractionRecord, kind: int, data: dict[str, Any], req: Request
    ) -> MessageRecord | None:
        """Type 6 leaves the clicked message as it is; type 7 gives it a new version at once."""
        target = record.target
        if target is None or target.deleted:
            if kind == 6 and record.type == 5:
                return None  # a modal not opened from a message: nothing to update, nothing to break
            raise ApiError(404, "Unknown Message", 10008)
        if kind == 7:
            target.versions.append(self._version(data, req, previous=target.latest))
            mark_edited(target)
        return target

    def _callback_response(
        self, record: InteractionRecord, kind: int, message: MessageRecord | None
    ) -> dict[str, Any]:
        """The InteractionCallbackResponse body that discord.py 2.5+ parses after ``with_response``."""
        interaction: dict[str, Any] = {"id": str(record.id), "type": record.type}
        resource: dict[str, Any] = {"type": kind}
        if message is not None and kind != 6:
            interaction.update(
                response_message_id=str(message.id),
                response_message_loading=message.loading,
                response_message_ephemeral=message.ephemeral,
            )
            if kind in (4, 7):
                resource["message"] = render(self.state, message)
        return {"interaction": interaction, "resource": resource}

    # -- follow-ups and @original -----------------------------------------------------------------

    def _record(self, req: Request) -> InteractionRecord:
        record = self.state.by_token.get(req.params["token"])
        if record is None or req.params["app"] != str(self.state.world.application.id):
            raise ApiError(404, "Unknown Webhook", 10015)
        req.interaction = record
        return record

    def _message(self, record: InteractionRecord, message_id: str) -> MessageRecord:
        if message_id == ORIGINAL:
            message = record.original
        else:
            message = next((m for m in record.messages if str(m.id) == message_id), None)
        if message is None or message.deleted:
            raise ApiError(404, "Unknown Message", 10008)
        return message

    def _channel_webhook(self, req: Request) -> tuple[ChannelHooks, Any] | None:
        """A channel webhook (``loopback.channel_webhooks``) these id and token name, if any."""
        hooks: ChannelHooks | None = self.state.channel_webhooks
        if hooks is None or req.params["app"] == str(self.state.world.application.id):
            return None
        hook = hooks.find(req.params["app"], req.params["token"])
        return (hooks, hook) if hook is not None else None

    async def followup(self, req: Request) -> web.Response:
        if (found := self._channel_webhook(req)) is not None:
            return await found[0].execute(found[1], req)
        record = self._record(req)
        if record.callback_type is None:
            raise ApiError(404, "Unknown Webhook", 10015)
        body = req.json if isinstance(req.json, dict) else {}
        original = record.original
        if original is not None and original.loading and not original.deleted:
            # Discord: the first follow-up after a defer replaces the "thinking…" message and keeps
            # the defer's ephemerality, whatever flags it carries.
            version = self._version(body, req, previous=original.latest, flags=original.flags & EPHEMERAL)
            original.versions.append(version)
            message = original
        else:
            message = self._new_message(record, "followup", self._version(body, req, previous=None))
            self._log(message)
        record.followups.append(message)
        record.payloads.append(body)
        self.state.bus.publish(Change("followup", interaction=record, message=message))
        return json_response(render(self.state, message))

    async def get_message(self, req: Request) -> web.Response:
        if (found := self._channel_webhook(req)) is not None:
            return await found[0].get_message(found[1], req)
        record = self._record(req)
        return json_response(render(self.state, self._message(record, req.params["message"])))

    async def edit_message(self, req: Request) -> web.Response:
        if (found := self._channel_webhook(req)) is not None:
            return await found[0].edit_message(found[1], req)
        record = self._record(req)
        message = self._message(record, req.params["message"])
        body = req.json if isinstance(req.json, dict) else {}
        was_loading = message.loading
        message.versions.append(self._version(body, req, previous=message.latest))
        if not was_loading:
            mark_edited(message)
        record.payloads.append(body)
        self.state.bus.publish(Change("edit", interaction=record, message=message))
        return json_response(render(self.state, message))

    async def delete_message(self, req: Request) -> web.Response:
        if (found := self._channel_webhook(req)) is not None:
            return await found[0].delete_message(found[1], req)
        record = self._record(req)
        message = self._message(record, req.params["message"])
        message.deleted = True
        self.state.bus.publish(Change("delete", interaction=record, message=message))
        return web.Response(status=204)

    # -- helpers ----------------------------------------------------------------------------------

    def _version(
        self, body: dict[str, Any], req: Request, *, previous: Version | None, flags: int | None = None
    ) -> Version:
        try:
            return new_version(body, req.files, previous=previous, flags=flags)
        except EmptyMessage:
            raise ApiError(400, "Cannot send an empty message", 50006) from None

    def _new_message(self, record: InteractionRecord, kind: str, version: Version) -> MessageRecord:
        payload = record.payload
        message = MessageRecord(
            id=self.state.ids.next(),
            channel_id=int(payload["channel_id"]),
            guild_id=int(payload["guild_id"]) if payload.get("guild_id") else None,
            author_id=self.state.world.application.bot.id,
            kind=kind,
            versions=[version],
            interaction_id=record.id,
            # Discord shows a component's new response as a reply to the message clicked.
            reference_id=record.target.id if kind == "original" and record.target is not None else None,
        )
        self.state.messages[message.id] = message
        return message

    def _log(self, message: MessageRecord) -> None:
        """Non-ephemeral messages become part of the channel's history (and reach the gateway)."""
        if not message.ephemeral:
            self.state.log_message(message)
