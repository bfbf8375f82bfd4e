"""/chat say and /chat reset: a conversation with the instruct model that remembers.

In a thread, everyone shares one conversation (each turn carries its author's name); in a
channel, each member has their own, forgotten after the channel's ``chat_memory_minutes`` of
silence. A Discord reply to one of the bot's answers (of /chat or /generate) continues from that answer,
with no command: Discord gives the bot the text of messages that mention it, and a reply does
unless the member turns the mention off. Turns are stored (``ConversationStore``), so a
conversation survives a restart. Each
request carries the newest turns that fit the model's context; the footer says how many older
ones were left out.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core import replies
from core.answers import decode_request
from core.options import TEXT_OPTION_LIMIT
from core.streaming import InteractionSurface, MessageSurface
from model_service import ChatTurn, GenerationRequest
from model_service.params import check_text
from model_service.types import MAX_HISTORY_TURNS, MAX_PROMPT_CHARS
from storage.types import ConversationKey, ReplyRecord

if TYPE_CHECKING:
    from core.transcord import Transcord

log = logging.getLogger(__name__)


def conversation_key(source: discord.Interaction | discord.Message) -> ConversationKey:
    """A thread's shared conversation, or this member's own in a channel (or a DM)."""
    if isinstance(source, discord.Interaction):
        channel_id, user_id = source.channel_id or 0, source.user.id
    else:
        channel_id, user_id = source.channel.id, source.author.id
    if isinstance(source.channel, discord.Thread):
        return ConversationKey(channel_id)
    return ConversationKey(channel_id, owner_id=user_id)


def chain_history(answered: GenerationRequest, text: str) -> tuple[ChatTurn, ...]:
    """The conversation up to and including an answer: its own history, what was asked, what it said."""
    asked = ChatTurn("user", answered.prompt, answered.author)
    return (*answered.history, asked, ChatTurn("assistant", text))[-MAX_HISTORY_TURNS:]


MENTION = re.compile(r"<@!?[0-9]+>")
UNREADABLE = (
    "I can only read replies that mention me: reply with the @ mention on (Discord's default), "
    "or use /chat say."
)


class Chat(
    commands.GroupCog, group_name="chat", group_description="Talk with the instruct model; it remembers"
):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot
        super().__init__()

    async def _history(self, key: ConversationKey, minutes: int) -> tuple[ChatTurn, ...]:
        if minutes == 0 and not key.shared:
            return ()  # this channel keeps no memory
        since = None if key.shared else time.time() - minutes * 60
        turns = await self.bot.store.conversations.recent_turns(key, since=since, limit=MAX_HISTORY_TURNS)
        return tuple(ChatTurn(t.role, t.text, t.author if key.shared else None) for t in turns)

    @app_commands.command(name="say", description="Say something to the model; it remembers the conversation")
    @app_commands.describe(message="What you want to say or ask")
    async def say(
        self, interaction: discord.Interaction, message: app_commands.Range[str, 1, TEXT_OPTION_LIMIT]
    ) -> None:
        check_text("message", message, limit=MAX_PROMPT_CHARS)
        settings = await self.bot.settings_for(interaction)
        key = conversation_key(interaction)
        author = interaction.user.display_name
        request = GenerationRequest(
            prompt=message,
            params=settings.generation_params(max_new_tokens_cap=self.bot.config.service.max_new_tokens_cap),
            mode="chat",
            system_prompt=settings.persona or None,
            model=settings.model,
            history=await self._history(key, settings.chat_memory_minutes),
            author=author if key.shared else None,
        )
        quoted = discord.utils.escape_markdown(message)
        quoted = "\n".join(f"> {line}" for line in quoted.splitlines()[:5]) or "> …"
        reply = ReplyRecord(
            id=interaction.id,
            channel_id=interaction.channel_id or 0,
            requester_id=interaction.user.id,
            kind="chat",
            request="",
            header=f"{quoted}\n",
        )
        done = await self.bot.answers.write(
            interaction, InteractionSurface(interaction), reply, request, texts=(message,)
        )
        await self._remember(key, interaction.user.id, author, message, done)

    # -- a Discord reply to one of the bot's answers ---------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """A member replied to one of the bot's answers: continue from that answer."""
        if message.author.bot or message.guild is None or message.reference is None:
            return
        answered_id = message.reference.message_id
        answered = await self.bot.store.replies.reply_by_message(answered_id) if answered_id else None
        if answered is None:
            return  # a reply to something else, or to an answer no longer stored
        surface = MessageSurface(message)
        try:
            await self._continue_from(message, answered, surface)
        except Exception as exc:
            if replies.is_unexpected(exc):
                log.error("a reply to answer %s failed", answered.id, exc_info=exc)
            await surface.fail(exc)

    async def _continue_from(
        self, message: discord.Message, answered: ReplyRecord, surface: MessageSurface
    ) -> None:
        text = MENTION.sub("", message.content).strip()
        if not text:
            # Without the privileged intent Discord sends no content unless the bot is mentioned.
            raise replies.UserFacingError(UNREADABLE, icon="ℹ️")
        check_text("message", text, limit=MAX_PROMPT_CHARS)
        cap = self.bot.config.service.max_new_tokens_cap
        before = decode_request(answered.request, max_new_tokens_cap=cap)
        settings = await self.bot.settings_for(message)
        key = conversation_key(message)
        author = message.author.display_name
        request = GenerationRequest(
            prompt=text,
            params=settings.generation_params(max_new_tokens_cap=cap),
            mode="chat",
            system_prompt=settings.persona or None,
            model=settings.model,
            history=chain_history(before, answered.text),
            author=author if key.shared else None,
        )
        reply = ReplyRecord(
            id=message.id,
            channel_id=message.channel.id,
            requester_id=message.author.id,
            kind="chat",
            request="",
            header="",
        )
        done = await self.bot.answers.write(message, surface, reply, request, texts=(text,))
        await self._remember(key, message.author.id, author, text, done)

    async def _remember(
        self, key: ConversationKey, asker_id: int, author: str, message: str, done: ReplyRecord
    ) -> None:
        if done.text.strip():  # a stopped reply too: it is what the member saw
            # What was shown (redacted) is what the model sees next time.
            turn = await self.bot.store.conversations.add_exchange(
                key, asker_id=asker_id, author=author, message=message, reply=done.text
            )
            await self.bot.store.replies.save_reply(replace(done, turn_id=turn))

    @app_commands.command(name="reset", description="Start the conversation over")
    @app_commands.describe(everyone="Moderators: forget every conversation in this channel or thread")
    async def reset(self, interaction: discord.Interaction, everyone: bool = False) -> None:
        channel_id = interaction.channel_id or 0
        if everyone:
            if not await self.bot.is_moderator(interaction):
                raise app_commands.CheckFailure(
                    "Forgetting everyone's conversation needs the Manage Channels permission or this "
                    "server's moderator role; without `everyone`, /chat reset forgets your own."
                )
            removed = await self.bot.store.conversations.forget(channel_id)
            where = "thread" if isinstance(interaction.channel, discord.Thread) else "channel"
            await self.bot.store.rules.record_action(
                "channel",
                channel_id,
                actor_id=interaction.user.id,
                action="chat reset",
                detail=f"{removed} turns",
            )
            text = f"🧹 Every conversation in this {where} is forgotten ({removed // 2} exchanges)."
            await interaction.response.send_message(text, allowed_mentions=replies.NO_MENTIONS)
            return
        removed = await self.bot.store.conversations.forget(channel_id, asker_id=interaction.user.id)
        text = (
            f"🧹 Your conversation here is forgotten ({removed // 2} exchanges); the next /chat say starts over."
            if removed
            else "There was nothing of yours to forget here."
        )
        await interaction.response.send_message(text, ephemeral=True)


async def setup(bot: Transcord) -> None:
    await bot.add_cog(Chat(bot))
