"""Members talk to the bot in plain messages: @mentions, replies to its answers, its own threads and
channels that listen to everything (the rules: ``domain.listening``).

Every answer is a chat answer, streamed with its buttons, through the same moderation as a
command (lock, cooldown, limit, blocklist in and out, audit):
- an @mention is answered as a Discord reply, in the member's own conversation (the memory of
  ``/chat say``); with the channel's ``threads`` on, it opens a thread from the message instead,
  named from its first words, and answers there;
- a reply to one of the bot's answers goes on from that answer;
- in a thread the bot opened, and in a channel set to ``listen: all``, the conversation is the
  channel's recent messages, members' and the bot's own, each with its author's name.
Text files attached to the message are read with it (``core.attachments``). Other bots are
ignored unless the channel allows ``bot_turns`` of them in a row; the bot never answers itself.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from cogs.character import Characters, cast_of
from cogs.chat import chain_history, conversation_key, member_history, remember
from core import replies
from core.answers import decode_request
from core.attachments import read_files
from core.streaming import MessageSurface
from domain.listening import Why, addressed, bot_may_answer, thread_name
from domain.settings import ChannelSettings
from model_service import ChatTurn, GenerationRequest
from model_service.params import check_text
from model_service.types import MAX_HISTORY_TURNS, MAX_PROMPT_CHARS
from storage.types import ConversationKey, ReplyRecord, StoreUnavailable

if TYPE_CHECKING:
    from core.transcord import Transcord

log = logging.getLogger(__name__)

UNREADABLE = (
    "I can only read messages that mention me here: reply with the @ mention on (Discord's default), "
    "mention me, or use /chat say."
)
HISTORY_MESSAGES = 30  # the recent messages read as the conversation in a thread or a listening channel
FOOTER_LINE = re.compile(r"^-# .*$", re.MULTILINE)  # the bot's footers and notices: not what it said


class Talk(commands.Cog):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or message.author.id == me.id or message.guild is None:
            return
        cast = cast_of(self.bot)
        if cast is not None and cast.speakers.owns(message):
            return  # a character's own words, through the bot's webhook
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return  # "X started a thread", pins, joins: nothing was said
        channel = message.channel
        own_thread = isinstance(channel, discord.Thread) and channel.owner_id == me.id
        mentioned = me in message.mentions
        reference = message.reference.message_id if message.reference else None
        if not (mentioned or own_thread or reference or self.bot.intents.message_content):
            return  # most messages of a busy server: decided before any database read
        try:
            settings = await self.bot.settings_for(message)
            answered = await self.bot.store.replies.reply_by_message(reference) if reference else None
        except StoreUnavailable as exc:
            # Whether the channel listens is stored too: a member who @mentioned the bot is told why
            # nothing comes; any other message is left alone.
            log.warning("message %s not answered: the database can't be reached (%s)", message.id, exc)
            if mentioned:
                await MessageSurface(message).fail(exc)
            return
        why = addressed(
            listen=settings.listen,
            mentioned=mentioned,
            replied_to_answer=answered is not None,
            own_thread=own_thread,
        )
        if why is None:
            return
        if message.author.bot and not await self._bot_may_answer(message, settings.bot_turns):
            return
        if (
            cast is not None
            and why in (Why.mention, Why.reply)
            and await self._as_character(cast, message, why)
        ):
            return
        surface = MessageSurface(message)
        try:
            await self._answer(message, why, settings, answered, surface)
        except Exception as exc:
            if replies.is_unexpected(exc):
                log.error("answering message %s failed", message.id, exc_info=exc)
            elif replies.discord_busy(exc):
                log.warning("answering message %s: %s", message.id, exc)
            await surface.fail(exc)

    async def _answer(
        self,
        message: discord.Message,
        why: Why,
        settings: ChannelSettings,
        answered: ReplyRecord | None,
        surface: MessageSurface,
    ) -> None:
        files = await read_files(message.attachments)
        said = self._said(message)
        if not said and not files.texts:
            if why in (Why.thread, Why.channel) and not message.attachments:
                return  # nothing to read: an unmentioned message without the Message Content intent
            # Without the privileged intent Discord sends no content unless the bot is mentioned.
            raise replies.UserFacingError(UNREADABLE, icon="ℹ️")
        check_text("message", said or "…", limit=MAX_PROMPT_CHARS)
        text = files.into(said, MAX_PROMPT_CHARS)
        cap = self.bot.config.service.max_new_tokens_cap
        key = conversation_key(message)
        author = message.author.display_name
        if why is Why.reply:
            assert answered is not None
            history = chain_history(decode_request(answered.request, max_new_tokens_cap=cap), answered.text)
        elif why is Why.mention:
            if settings.threads == "on" and isinstance(message.channel, discord.TextChannel):
                thread = await self._open_thread(message, said)
                if thread is not None:
                    surface.post_in = thread
                    key = ConversationKey(thread.id)
            history = await member_history(self.bot.store, key, settings.chat_memory_minutes)
        else:
            history = await self._channel_history(message)
        shared = why in (Why.thread, Why.channel) or key.shared
        request = GenerationRequest(
            prompt=text,
            params=settings.generation_params(max_new_tokens_cap=cap),
            mode="chat",
            system_prompt=settings.persona or None,
            model=settings.model,
            history=history,
            author=author if shared else None,
        )
        reply = ReplyRecord(
            id=message.id,
            channel_id=surface.channel_id,
            requester_id=message.author.id,
            kind="chat",
            request="",
            header=files.notice(),
        )
        done = await self.bot.answers.write(
            message, surface, reply, request, texts=(text,), show_thinking=settings.thinking == "spoiler"
        )
        if why in (Why.reply, Why.mention):  # elsewhere the channel itself is the memory
            await remember(self.bot.store, key, message.author.id, author, text, done)

    async def _as_character(self, cast: Characters, message: discord.Message, why: Why) -> bool:
        """A reply to a character's message, or a mention starting with a character's name: that
        character answers, through the webhook. False if no character is addressed."""
        assert message.guild is not None
        said = self._said(message)
        character = await cast.replied_to(message)
        if character is None and why is Why.mention:
            hit = await cast.addressed(message.guild.id, said)
            if hit is not None:
                character, said = hit
        if character is None:
            return False
        files = await read_files(message.attachments)
        try:
            if not said and not files.texts:
                raise replies.UserFacingError(f"What do you want to say to {character.name}?", icon="ℹ️")
            check_text("message", said or "…", limit=MAX_PROMPT_CHARS)
            text = files.into(said, MAX_PROMPT_CHARS)
            await cast.speak(
                message, message.channel, character, text, reply_id=message.id, asker=message.author
            )
        except Exception as exc:
            if replies.is_unexpected(exc):
                log.error("answering message %s as %s failed", message.id, character.name, exc_info=exc)
            await MessageSurface(message).fail(exc)
        return True

    def _said(self, message: discord.Message) -> str:
        """The message's text: the bot's own mention taken out, other mentions as names."""
        text = message.content
        for user in message.mentions:
            name = "" if user.id == getattr(self.bot.user, "id", None) else f"@{user.display_name}"
            text = re.sub(rf"<@!?{user.id}>", name, text)
        return text.strip()

    async def _open_thread(self, message: discord.Message, said: str) -> discord.Thread | None:
        try:
            return await message.create_thread(name=thread_name(said), auto_archive_duration=1440)
        except discord.HTTPException as exc:  # no Create Public Threads here: answer in place
            log.warning(
                "could not open a thread from message %s (%s); answering in the channel", message.id, exc
            )
            return None

    async def _channel_history(self, message: discord.Message) -> tuple[ChatTurn, ...]:
        """The channel's recent messages before this one, oldest first, each attributed."""
        me = self.bot.user
        turns: list[ChatTurn] = []
        try:
            async for earlier in message.channel.history(limit=HISTORY_MESSAGES, before=message):
                if earlier.author.id == getattr(me, "id", None):
                    said = FOOTER_LINE.sub("", earlier.content).strip()
                    if said:
                        turns.append(ChatTurn("assistant", said))
                elif said := self._said(earlier):  # blank without the Message Content intent
                    turns.append(ChatTurn("user", said, earlier.author.display_name))
        except discord.HTTPException as exc:  # no Read Message History here: this message alone
            log.warning("could not read channel %s's history (%s)", message.channel.id, exc)
        opened = await self._opening(message.channel)
        if opened is not None and not (turns and turns[-1].text == opened.text):
            turns.append(opened)
        return tuple(reversed(turns))[-MAX_HISTORY_TURNS:]

    async def _opening(self, channel: discord.abc.Messageable) -> ChatTurn | None:
        """The message a thread was opened from (it lies in the parent channel, under the
        thread's own id), as the conversation's first turn."""
        if not isinstance(channel, discord.Thread) or not isinstance(channel.parent, discord.TextChannel):
            return None
        try:
            starter = channel.starter_message or await channel.parent.fetch_message(channel.id)
        except discord.HTTPException:
            return None  # not opened from a message, or it is gone
        said = self._said(starter)
        return ChatTurn("user", said, starter.author.display_name) if said else None

    async def _bot_may_answer(self, message: discord.Message, bot_turns: int) -> bool:
        if bot_turns <= 0:
            return False
        me = getattr(self.bot.user, "id", None)
        try:
            recent = [
                # A command's response is the bot's too, but not a turn in a talk between bots.
                (m.author.bot, m.author.id == me and m.interaction_metadata is None)
                async for m in message.channel.history(limit=2 * bot_turns + 2, before=message)
            ]
        except discord.HTTPException:
            return False  # can't tell how long the bots have gone on: don't add to it
        return bot_may_answer(recent, bot_turns)


async def setup(bot: Transcord) -> None:
    await bot.add_cog(Talk(bot))
