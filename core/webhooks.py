"""Characters speak through webhooks: one webhook of the bot's per channel, found or made once.

Discord allows 15 webhooks per channel, so the bot never makes one per character: it lists the
channel's webhooks, reuses the one its application owns, and creates one only where there is none.
A thread has no webhooks of its own: its messages go through the parent channel's webhook with
``thread=``. Each message carries the character's name (``username``) and avatar: an https avatar
as ``avatar_url``; a stored one (an uploaded image or the drawn initial) becomes the webhook's own
avatar, set (PATCH) only when another character spoke last through that webhook, under a lock, so
a message is always sent with its speaker's face. Every message is sent with
``AllowedMentions.none()``.

The webhook belongs to the bot's application, so it may carry the answers' buttons (Discord lets an
application-owned webhook send interactive components).
"""

from __future__ import annotations

import asyncio
import io
import logging

import discord
from discord.utils import MISSING
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from core.replies import NO_MENTIONS
from core.streaming import PostedSurface
from domain.characters import Character, avatar_colour, initial
from domain.errors import UserFacingError

log = logging.getLogger(__name__)

WEBHOOK_NAME = "Transcord characters"
AVATAR_SIZE = 128
AVATAR_MAX_BYTES = 8 * 1024 * 1024  # what is read of an uploaded image
MAX_WEBHOOKS_CODE = 30007  # "Maximum number of webhooks reached (15)"
NEEDS_MANAGE_WEBHOOKS = (
    "Characters speak through a webhook, and I may not manage webhooks in {where}: "
    "grant my role the **Manage Webhooks** permission there."
)
TOO_MANY_WEBHOOKS = (
    "{where} already has Discord's maximum of 15 webhooks, none of them mine: "
    "delete one (Channel settings → Integrations → Webhooks) so characters can speak here."
)


def draw_avatar(name: str) -> bytes:
    """The character's initial in white on a colour of its own, as a PNG."""
    image = Image.new("RGB", (AVATAR_SIZE, AVATAR_SIZE), avatar_colour(name))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=AVATAR_SIZE * 5 // 8)
    draw.text((AVATAR_SIZE / 2, AVATAR_SIZE / 2), initial(name), fill="white", font=font, anchor="mm")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def normalize_avatar(data: bytes) -> bytes:
    """An uploaded image as a small PNG (what is stored), or a UserFacingError if it is none."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = opened.convert("RGBA")
            image.thumbnail((AVATAR_SIZE * 2, AVATAR_SIZE * 2))
            out = io.BytesIO()
            image.save(out, format="PNG")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserFacingError("The avatar must be an image (PNG, JPEG, GIF or WebP).") from exc
    return out.getvalue()


def face(character: Character) -> bytes:
    """The avatar the webhook shows for a character without an https one."""
    return character.avatar or draw_avatar(character.name)


Speakable = discord.TextChannel | discord.Thread


class Speakers:
    """The bot's webhook per channel (cached), and whose face each one shows now."""

    def __init__(self, client: discord.Client) -> None:
        self.client = client
        self._webhooks: dict[int, discord.Webhook] = {}
        self._faces: dict[int, tuple[int, float]] = {}  # webhook id -> (character id, its updated_at)
        self._locks: dict[int, asyncio.Lock] = {}

    def owns(self, message: discord.Message) -> bool:
        """Whether a message was sent through one of the bot's webhooks (its own words)."""
        if message.webhook_id is None:
            return False
        if message.webhook_id in {w.id for w in self._webhooks.values()}:
            return True
        return message.application_id is not None and message.application_id == self.client.application_id

    async def webhook(self, channel: Speakable) -> tuple[discord.Webhook, discord.Thread | None]:
        """The webhook to speak in ``channel`` through, and the thread to name (if it is one)."""
        thread = channel if isinstance(channel, discord.Thread) else None
        parent = thread.parent if thread is not None else channel
        if not isinstance(parent, discord.TextChannel):
            raise UserFacingError("Characters can speak only in text channels and their threads.")
        cached = self._webhooks.get(parent.id)
        if cached is not None:
            return cached, thread
        where = parent.mention
        try:
            hooks = await parent.webhooks()
            mine = next((h for h in hooks if self._is_mine(h)), None)
            if mine is None:
                mine = await parent.create_webhook(name=WEBHOOK_NAME, reason="characters speak through it")
        except discord.Forbidden as exc:
            raise UserFacingError(NEEDS_MANAGE_WEBHOOKS.format(where=where), icon="🔒") from exc
        except discord.HTTPException as exc:
            if exc.code == MAX_WEBHOOKS_CODE:
                raise UserFacingError(TOO_MANY_WEBHOOKS.format(where=where), icon="🔒") from exc
            raise
        self._webhooks[parent.id] = mine
        return mine, thread

    def forget(self, channel_id: int) -> None:
        """Drop a cached webhook (deleted by someone): the next message finds or makes another."""
        self._webhooks.pop(channel_id, None)

    def _is_mine(self, hook: discord.Webhook) -> bool:
        me = self.client.user
        # discord.py's Webhook does not keep the payload's application_id (2.7): its creator, the
        # bot's user, says as much; the id is read where a later discord.py has it.
        app_id = getattr(hook, "application_id", None)
        owned = app_id is not None and app_id == self.client.application_id
        made = hook.user is not None and me is not None and hook.user.id == me.id
        return hook.type is discord.WebhookType.incoming and hook.token is not None and (owned or made)

    async def send(
        self,
        channel: Speakable,
        character: Character,
        content: str,
        view: discord.ui.View | None = None,
    ) -> tuple[discord.WebhookMessage, discord.Webhook, discord.Thread | None]:
        """Post ``content`` as ``character`` in ``channel``."""
        webhook, thread = await self.webhook(channel)

        async def post(avatar_url: str) -> discord.WebhookMessage:
            return await webhook.send(
                content,
                username=character.name,
                avatar_url=avatar_url or MISSING,
                allowed_mentions=NO_MENTIONS,
                thread=thread if thread is not None else MISSING,
                view=view if view is not None else MISSING,
                wait=True,
            )

        if character.avatar_url:
            return await post(character.avatar_url), webhook, thread
        lock = self._locks.setdefault(webhook.id, asyncio.Lock())
        async with lock:  # no other character's face may be put on between the PATCH and the post
            wanted = (character.id, character.updated_at)
            if self._faces.get(webhook.id) != wanted:
                await webhook.edit(avatar=face(character), reason=f"{character.name} speaks")
                self._faces[webhook.id] = wanted
            message = await post("")
        return message, webhook, thread


class WebhookSurface(PostedSurface):
    """A character's answer: posted through the channel's webhook under its name, then edited
    through the same webhook as the text grows."""

    restart_warning = "could not tell a channel that a character stopped for a restart"

    def __init__(self, speakers: Speakers, channel: Speakable, character: Character) -> None:
        self.speakers = speakers
        self.channel = channel
        self.character = character
        self.message: discord.WebhookMessage | None = None
        self._webhook: discord.Webhook | None = None
        self._thread: discord.Thread | None = None

    @property
    def channel_id(self) -> int:
        return self.channel.id

    async def _post(self, content: str, view: discord.ui.View | None = None) -> discord.WebhookMessage:
        message, self._webhook, self._thread = await self.speakers.send(
            self.channel, self.character, content, view
        )
        return message

    async def _post_more(self, text: str) -> None:
        await self._post(text)

    async def show(self, content: str, view: discord.ui.View | None) -> None:
        await self.begin()
        assert self.message is not None and self._webhook is not None
        self.message = await self._webhook.edit_message(
            self.message.id,
            content=content,
            allowed_mentions=NO_MENTIONS,
            view=view if view is not None else MISSING,
            thread=self._thread if self._thread is not None else MISSING,
        )

    async def fail(self, error: BaseException) -> bool:
        """Say what went wrong in the character's message, if one was posted; False if none was."""
        if self.message is None:
            return False
        try:
            await self._fail_in_place(error)
        except discord.HTTPException:
            log.warning("could not deliver an error in a character's message", exc_info=True)
        return True
