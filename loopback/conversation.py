"""Members talking in channels: their messages, replies and files reach the bot as MESSAGE_CREATE.

Every message that joins a channel's history (a member's, the bot's own posts and its public
interaction responses, as on Discord) is sent to each gateway session with the intent for it
(GUILD_MESSAGES in a guild), as that session may read it: without MESSAGE_CONTENT, content,
embeds, attachments and components arrive blank unless the message mentions the bot.

A member may be another bot's account (``add_member(name, bot=True)``): its messages arrive with
``author.bot`` true, as Discord marks them.
"""

from __future__ import annotations

import asyncio
import mimetypes
import time
from collections.abc import Iterable
from typing import Any

from loopback import mentions
from loopback.commands import InvalidInvocation
from loopback.gateway import DIRECT_MESSAGES, GUILD_MESSAGES, MESSAGE_CONTENT, Gateway, Session
from loopback.messages import ATTACHMENTS_MAX, CONTENT_MAX, gateway_message
from loopback.records import Change, FileRecord, MessageRecord, Version
from loopback.state import ServerState
from loopback.world import Channel, Member, Perm, User, World

UPLOAD_MAX_BYTES = 10 * 1024 * 1024  # what a member without Nitro may attach to one message
# (filename, data) or (filename, data, content type): None guesses it from the name.
Upload = tuple[str, bytes] | tuple[str, bytes, str | None]


def send_message_create(
    state: ServerState, gateway: Gateway, message: MessageRecord, shard: int | None = None
) -> int:
    """MESSAGE_CREATE to each session that wants it, shaped by its MESSAGE_CONTENT intent: those of
    the message's guild's shard (shard 0 for a DM), or of ``shard``."""
    data = gateway_message(state, message)
    app_user = state.world.application.bot.id

    def as_seen(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        return payload if session.intents & MESSAGE_CONTENT else mentions.redact(payload, app_user)

    intent = GUILD_MESSAGES if message.guild_id is not None else DIRECT_MESSAGES
    return gateway.dispatch("MESSAGE_CREATE", data, intent=intent, shape=as_seen, shard=shard)


class Conversation:
    """Mixed into :class:`~loopback.server.LoopbackDiscord`: members' messages, replies, and waits."""

    state: ServerState
    world: World
    member: Member | None

    async def post_message(
        self,
        channel: Channel,
        content: str,
        *,
        user: User | Member | None = None,
        reply_to: MessageRecord | None = None,
        mention_reply_author: bool = True,
        strict: bool = True,
        shard: int | None = None,
        attachments: Iterable[Upload] = (),
    ) -> MessageRecord:
        """``user`` (default: the plain member) says ``content`` in ``channel``, maybe as a reply,
        maybe with files.

        A reply with ``mention_reply_author`` (the client's "@ on", its default) mentions the
        replied message's author; ``<@id>`` in the content mentions that user. With ``strict``
        (the default) what the client would not send raises :class:`InvalidInvocation`. The
        MESSAGE_CREATE goes to the guild's shard, or with ``shard`` to that shard's sessions.

        ``attachments`` are ``(filename, data)`` or ``(filename, data, content_type)``: they become
        Discord attachment objects whose ``url`` this server serves (a message with files needs no
        text). A user may be a bot account (``add_member(..., bot=True)``).
        """
        world = self.world
        guild = world.guilds[channel.guild_id]
        speaker = user or self.member
        if speaker is None:
            raise ValueError("no user given and no default member")
        member = world.member(guild, speaker)
        files = tuple(self._upload(*upload) for upload in attachments)
        if strict:
            _check_post(world, member, channel, content, reply_to, files)
        self.state.files.update((f.id, f) for f in files)
        allowed = {"parse": list(mentions.PARSE_ALL), "replied_user": mention_reply_author}
        message = MessageRecord(
            id=self.state.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author_id=member.id,
            kind="member",
            versions=[Version(content, (), files, (), 0, allowed, time.monotonic())],
            reference_id=reply_to.id if reply_to is not None else None,
        )
        self.state.log_message(message, shard=shard)
        self.state.bus.publish(Change("message", message=message))
        await asyncio.sleep(0)
        return message

    def _upload(self, filename: str, data: bytes, content_type: str | None = None) -> FileRecord:
        if content_type is None:
            content_type = mimetypes.guess_type(filename)[0]
            if content_type is not None and content_type.startswith("text/"):
                content_type += "; charset=utf-8"  # as Discord labels the text files it stores
        return FileRecord(self.state.ids.next(), filename, bytes(data), content_type)

    def message(self, message_id: int) -> MessageRecord:
        """Any message the server holds (ephemeral and deleted ones too), by id."""
        return self.state.messages[message_id]

    def replies_to(self, message: MessageRecord) -> list[MessageRecord]:
        """Undeleted messages replying to ``message`` (a component's responses included), oldest first."""
        return [m for m in self.state.messages.values() if m.reference_id == message.id and not m.deleted]

    async def wait_reply(
        self,
        message: MessageRecord,
        *,
        by: User | Member | None = None,
        timeout: float = 10.0,
        quiet: float = 0.3,
    ) -> MessageRecord:
        """The first reply to ``message`` by ``by`` (default: the bot), once its replies settled.

        Settled: none of that author's replies to it got a new version for ``quiet`` seconds (a
        reply edited as text streams in is returned in its final state).
        """
        author = (by or self.world.application.bot).id

        def replies() -> list[MessageRecord]:
            return [m for m in self.replies_to(message) if m.author_id == author]

        def describe() -> str:
            since = message.versions[0].at
            calls = [f"{c.method} {c.path} -> {c.status}" for c in self.state.calls if c.at >= since]
            return (
                f"no reply by user {author} to message {message.id} {message.content!r}; calls since: {calls}"
            )

        bus = self.state.bus
        deadline = time.monotonic() + timeout
        while True:
            found = replies()
            if not found:  # none yet, or the one there was deleted
                left = max(deadline - time.monotonic(), 0.0)
                await bus.wait_until(lambda: bool(replies()), left, describe)
                continue
            last = max(v.at for m in found for v in m.versions)
            idle = time.monotonic() - last
            if idle >= quiet:
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replies to message {message.id} never settled: {found!r}")
            bus.check_watched()
            await asyncio.sleep(quiet - idle)

    def quiet_for(self) -> float:
        """Seconds since anything last happened on the server (a REST call, a message, a change)."""
        return time.monotonic() - self.state.bus.last_at

    async def wait_idle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until nothing happened on the server (no REST call, no change) for ``quiet`` s:
        how a test tells the bot chose not to answer."""
        bus = self.state.bus
        deadline = time.monotonic() + timeout
        while True:
            idle = time.monotonic() - bus.last_at
            if idle >= quiet:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server never went quiet for {quiet:g}s")
            bus.check_watched()
            await asyncio.sleep(quiet - idle)


def _check_post(
    world: World,
    member: Member,
    channel: Channel,
    content: str,
    reply_to: MessageRecord | None,
    files: tuple[FileRecord, ...] = (),
) -> None:
    perms = world.permissions(member, channel)
    needed = Perm.SEND_MESSAGES_IN_THREADS if channel.is_thread else Perm.SEND_MESSAGES
    who = member.user.name
    if not (perms & Perm.VIEW_CHANNEL and perms & needed):
        raise InvalidInvocation(f"{who} may not send messages in #{channel.name}")
    if not content.strip() and not files:
        raise InvalidInvocation("the client sends no empty message")
    if files and not perms & Perm.ATTACH_FILES:
        raise InvalidInvocation(f"{who} may not attach files in #{channel.name}")
    if len(files) > ATTACHMENTS_MAX:
        raise InvalidInvocation(f"{len(files)} files: the client attaches at most {ATTACHMENTS_MAX}")
    size = sum(len(f.data) for f in files)
    if size > UPLOAD_MAX_BYTES:
        raise InvalidInvocation(f"{size} bytes of files: the client uploads at most {UPLOAD_MAX_BYTES}")
    if len(content) > CONTENT_MAX:
        raise InvalidInvocation(f"{len(content)} characters: the client sends at most {CONTENT_MAX}")
    if reply_to is None:
        return
    if reply_to.channel_id != channel.id:
        raise InvalidInvocation(f"message {reply_to.id} is in another channel: a reply stays in its channel")
    if reply_to.deleted or reply_to.ephemeral:
        raise InvalidInvocation(f"message {reply_to.id} cannot be replied to (deleted or ephemeral)")
    if not perms & Perm.READ_MESSAGE_HISTORY:
        raise InvalidInvocation(f"{who} cannot reply in #{channel.name} without Read Message History")
