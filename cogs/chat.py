"""/chat say and /chat reset: a conversation with the instruct model that remembers.

In a thread, everyone shares one conversation (each turn carries its author's name); in a
channel, each member has their own, forgotten after the channel's ``chat_memory_minutes`` of
silence. An @mention of the bot goes on in the same conversation, and a Discord reply to one of
its answers from that answer (``cogs.talk``). Turns are stored (``ConversationStore``), so a
conversation survives a restart. Each request carries the newest turns that fit the model's
context; the footer says how many older ones were left out. A text file may come with the
message (``file``): it is read as part of it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.character import cast_of, character_autocomplete
from core import render, replies
from core.attachments import read_files
from core.options import TEXT_OPTION_LIMIT
from core.streaming import InteractionSurface
from domain.errors import UserFacingError
from model_service import ChatTurn, GenerationRequest
from model_service.params import check_text
from model_service.types import MAX_HISTORY_TURNS, MAX_PROMPT_CHARS
from storage.types import ConversationKey, ReplyRecord

if TYPE_CHECKING:
    from core.transcord import Transcord
    from storage.protocols import Storage

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


async def member_history(store: Storage, key: ConversationKey, minutes: int) -> tuple[ChatTurn, ...]:
    """The stored conversation's newest turns: a thread's whole, a member's of the last ``minutes``."""
    if minutes == 0 and not key.shared:
        return ()  # this channel keeps no memory
    since = None if key.shared else time.time() - minutes * 60
    turns = await store.conversations.recent_turns(key, since=since, limit=MAX_HISTORY_TURNS)
    return tuple(ChatTurn(t.role, t.text, t.author if key.shared else None) for t in turns)


async def remember(
    store: Storage, key: ConversationKey, asker_id: int, author: str, message: str, done: ReplyRecord
) -> None:
    """Store an exchange once answered: what was shown (redacted) is what the model sees next time."""
    if done.text.strip():  # a stopped reply too: it is what the member saw
        turn = await store.conversations.add_exchange(
            key, asker_id=asker_id, author=author, message=message, reply=done.text
        )
        await store.replies.save_reply(replace(done, turn_id=turn))


class Chat(
    commands.GroupCog, group_name="chat", group_description="Talk with the instruct model; it remembers"
):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="say", description="Say something to the model; it remembers the conversation")
    @app_commands.describe(
        message="What you want to say or ask",
        file="A text file to read with it",
        character="One of this server's characters answers instead, through a webhook",
    )
    @app_commands.autocomplete(character=character_autocomplete)
    async def say(
        self,
        interaction: discord.Interaction,
        message: app_commands.Range[str, 1, TEXT_OPTION_LIMIT],
        file: discord.Attachment | None = None,
        character: str | None = None,
    ) -> None:
        check_text("message", message, limit=MAX_PROMPT_CHARS)
        files = await read_files([file] if file else [])
        said, message = message, files.into(message, MAX_PROMPT_CHARS)
        if character is not None:
            await self._to_character(interaction, character, said, message)
            return
        settings = await self.bot.settings_for(interaction)
        key = conversation_key(interaction)
        author = interaction.user.display_name
        request = GenerationRequest(
            prompt=message,
            params=settings.generation_params(max_new_tokens_cap=self.bot.config.service.max_new_tokens_cap),
            mode="chat",
            system_prompt=settings.persona or None,
            model=settings.model,
            history=await member_history(self.bot.store, key, settings.chat_memory_minutes),
            author=author if key.shared else None,
        )
        quoted = render.escape(said)
        quoted = "\n".join(f"> {line}" for line in quoted.splitlines()[:5]) or "> …"
        reply = ReplyRecord(
            id=interaction.id,
            channel_id=interaction.channel_id or 0,
            requester_id=interaction.user.id,
            kind="chat",
            request="",
            header=f"{quoted}\n{files.listing()}{files.notice()}",
        )
        done = await self.bot.answers.write(
            interaction,
            InteractionSurface(interaction),
            reply,
            request,
            texts=(message,),
            show_thinking=settings.thinking == "spoiler",
        )
        await remember(self.bot.store, key, interaction.user.id, author, message, done)

    async def _to_character(
        self, interaction: discord.Interaction, name: str, said: str, message: str
    ) -> None:
        """The member's words in the channel (the command's reply), then the character's answer
        through the webhook."""
        cast = cast_of(self.bot)
        if interaction.guild_id is None or cast is None:
            raise UserFacingError("Characters live in servers: use /chat say without `character` here.")
        found = await self.bot.store.characters.character(interaction.guild_id, name)
        if found is None:
            raise UserFacingError(
                f"There is no character named “{render.escape(name)}” here; see `/character list`."
            )
        quoted = "\n".join(f"> {line}" for line in render.escape(said).splitlines()[:5]) or "> …"
        await interaction.response.send_message(
            f"To **{render.escape(found.name)}**:\n{quoted}", allowed_mentions=replies.NO_MENTIONS
        )
        channel = interaction.channel
        assert isinstance(channel, discord.abc.Messageable)  # a slash command's channel takes messages
        await cast.speak(
            interaction, channel, found, message, reply_id=interaction.id, asker=interaction.user
        )

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
