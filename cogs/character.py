"""/character: a server's characters, who speak through the channel's webhook (``core.webhooks``).

Moderators (Manage Channels or the moderator role) create, edit and delete; everyone lists and
shows. A character's name may not be a member's, a role's or the bot's (of those the bot can see:
without the Server Members intent, the roles, the bot, the moderator and any member Discord
resolves); names and personas are length-limited and checked against the channel's blocklist.
Each change is in the moderation log (``/mod log``).

Talking to a character: ``/chat say character:``, an @mention that starts with its name, or a
Discord reply to one of its messages (``cogs.chat``, ``cogs.talk`` call :meth:`Characters.speak`).
Each character remembers per channel or thread, shared by everyone there: its conversation key is
the channel's with ``owner_id`` the character's id negated, a key space no member's id reaches.
"""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core import checks, render, replies
from core.facade import Moderator, channel_chain
from core.webhooks import AVATAR_MAX_BYTES, Speakers, WebhookSurface, draw_avatar, normalize_avatar
from domain.characters import (
    GREETING_MAX,
    NAME_MAX,
    PERSONA_MAX,
    Character,
    NameTaken,
    addressed_character,
    check_avatar_url,
    check_greeting,
    check_name,
    check_not_taken,
    check_persona,
)
from domain.errors import UserFacingError
from model_service import ChatTurn, GenerationRequest
from model_service.types import MAX_HISTORY_TURNS
from storage.types import ConversationKey, ReplyRecord

if TYPE_CHECKING:
    from core.transcord import Transcord

log = logging.getLogger(__name__)

Source = discord.Interaction | discord.Message


def cast_of(bot: commands.Bot) -> Characters | None:
    """The loaded Characters cog. (Not by isinstance: loading the extension imports this module
    afresh, so a class imported earlier by another cog is another class object.)"""
    cog = bot.get_cog("Characters")
    return cog if cog is not None and hasattr(cog, "speakers") else None  # type: ignore[return-value]  # see above


def character_key(channel_id: int, character: Character) -> ConversationKey:
    """A character's conversation in a channel or thread: shared, apart from every member's."""
    return ConversationKey(channel_id, owner_id=-character.id)


async def character_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    bot: Transcord = interaction.client  # type: ignore[assignment]  # the client of this bot's interactions
    if interaction.guild_id is None:
        return []
    found = await bot.store.characters.characters(interaction.guild_id)
    wanted = current.casefold()
    return [app_commands.Choice(name=c.name, value=c.name) for c in found if wanted in c.name.casefold()][:25]


@app_commands.guild_only()
class Characters(commands.GroupCog, group_name="character", group_description="A server's characters, who speak through webhooks"):  # fmt: skip
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot
        self.speakers = Speakers(bot)
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        checks.require_server(interaction)
        return True

    # -- commands ---------------------------------------------------------------------------------

    @app_commands.command(
        name="create", description="Moderators: make a character that speaks through a webhook"
    )
    @app_commands.describe(
        name=f"Its name (1-{NAME_MAX} characters; no member's, role's or the bot's)",
        persona="Who it is: the instructions it answers by",
        avatar="An image for its avatar (else its initial on a colour)",
        avatar_url="Or an https link to an image",
        greeting="What it said first (the start of every conversation with it)",
    )
    async def create(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, NAME_MAX],
        persona: app_commands.Range[str, 1, PERSONA_MAX],
        avatar: discord.Attachment | None = None,
        avatar_url: str | None = None,
        greeting: app_commands.Range[str, 0, GREETING_MAX] | None = None,
    ) -> None:
        guild_id = await self._require_moderator(interaction)
        name = await self._check_name(interaction, name)
        persona = self._check_text(interaction, "persona", check_persona(persona))
        greeting = self._check_text(interaction, "greeting", check_greeting(greeting or ""))
        picture, url = await self._avatar(avatar, avatar_url)
        made = await self.bot.store.characters.create_character(
            guild_id,
            name,
            persona,
            greeting=greeting,
            avatar_url=url,
            avatar=picture if picture is not None or url else draw_avatar(name),
            actor_id=interaction.user.id,
        )
        if made is None:
            raise UserFacingError(f"This server already has a character named “{render.escape(name)}”.")
        await interaction.response.send_message(
            f"🎭 **{render.escape(made.name)}** is ready: mention me and start with its name, or "
            f"`/chat say character: {render.escape(made.name)}`.",
            allowed_mentions=replies.NO_MENTIONS,
        )

    @app_commands.command(name="list", description="This server's characters")
    async def list_(self, interaction: discord.Interaction) -> None:
        found = await self.bot.store.characters.characters(interaction.guild_id or 0)
        if not found:
            text = "This server has no characters yet; moderators make them with `/character create`."
        else:
            lines = [f"**Characters here** ({len(found)}):"]
            lines += [f"• **{render.escape(c.name)}**: {render.escape(_short(c.persona, 80))}" for c in found]
            text = replies.fit("\n".join(lines))
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=replies.NO_MENTIONS)

    @app_commands.command(name="show", description="A character's persona, greeting and avatar")
    @app_commands.autocomplete(name=character_autocomplete)
    async def show(self, interaction: discord.Interaction, name: str) -> None:
        character = await self._find(interaction, name)
        embed = discord.Embed(title=character.name, description=_short(character.persona, 4000))
        if character.greeting:
            embed.add_field(name="Greeting", value=_short(character.greeting, 1000), inline=False)
        files: list[discord.File] = []
        if character.avatar_url:
            embed.set_thumbnail(url=character.avatar_url)
        elif character.avatar:
            files.append(discord.File(_bytes_io(character.avatar), filename="avatar.png"))
            embed.set_thumbnail(url="attachment://avatar.png")
        await interaction.response.send_message(
            embed=embed, files=files, ephemeral=True, allowed_mentions=replies.NO_MENTIONS
        )

    @app_commands.command(name="edit", description="Moderators: change a character")
    @app_commands.autocomplete(name=character_autocomplete)
    @app_commands.describe(
        name="The character to change",
        new_name="A new name",
        persona="A new persona",
        avatar="A new avatar image",
        avatar_url="Or an https link to one",
        greeting="A new greeting (a single space: none)",
    )
    async def edit(
        self,
        interaction: discord.Interaction,
        name: str,
        new_name: app_commands.Range[str, 1, NAME_MAX] | None = None,
        persona: app_commands.Range[str, 1, PERSONA_MAX] | None = None,
        avatar: discord.Attachment | None = None,
        avatar_url: str | None = None,
        greeting: app_commands.Range[str, 1, GREETING_MAX] | None = None,
    ) -> None:
        guild_id = await self._require_moderator(interaction)
        old = await self._find(interaction, name)
        for channel_id in channel_chain(interaction):
            await self._moderator().rules(channel_id)
        if new_name is not None:
            new_name = await self._check_name(interaction, new_name)
        if persona is not None:
            persona = self._check_text(interaction, "persona", check_persona(persona))
        if greeting is not None:
            greeting = self._check_text(interaction, "greeting", check_greeting(greeting))
        picture, url = await self._avatar(avatar, avatar_url)
        if new_name is not None and picture is None and not url and not old.avatar_url:
            picture = draw_avatar(new_name)  # a drawn initial follows the name
        try:
            edited = await self.bot.store.characters.update_character(
                guild_id,
                old.name,
                actor_id=interaction.user.id,
                new_name=new_name,
                persona=persona,
                greeting=greeting,
                avatar_url=url or None,
                avatar=picture,
            )
        except NameTaken:
            raise UserFacingError(
                f"This server already has a character named “{render.escape(new_name or '')}”."
            ) from None
        if edited is None:
            raise UserFacingError(f"There is no character named “{render.escape(name)}” here.")
        await interaction.response.send_message(
            f"🎭 **{render.escape(edited.name)}** is changed.", allowed_mentions=replies.NO_MENTIONS
        )

    @app_commands.command(name="delete", description="Moderators: delete a character")
    @app_commands.autocomplete(name=character_autocomplete)
    async def delete(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = await self._require_moderator(interaction)
        old = await self._find(interaction, name)
        await self.bot.store.characters.delete_character(guild_id, old.name, actor_id=interaction.user.id)
        await interaction.response.send_message(
            f"🗑️ **{render.escape(old.name)}** is gone.", allowed_mentions=replies.NO_MENTIONS
        )

    # -- speaking ---------------------------------------------------------------------------------

    async def speak(
        self,
        source: Source,
        channel: discord.abc.Messageable,
        character: Character,
        text: str,
        *,
        reply_id: int,
        asker: discord.abc.User,
        header: str = "",
    ) -> ReplyRecord:
        """``character`` answers ``text`` through the channel's webhook, in its own memory here."""
        if not isinstance(channel, discord.TextChannel | discord.Thread):
            raise UserFacingError("Characters can speak only in text channels and their threads.")
        settings = await self.bot.settings_for(source)
        key = character_key(channel.id, character)
        turns = await self.bot.store.conversations.recent_turns(key, limit=MAX_HISTORY_TURNS)
        history = tuple(ChatTurn(t.role, t.text, t.author) for t in turns)
        if not history and character.greeting:
            history = (ChatTurn("assistant", character.greeting),)
        author = getattr(asker, "display_name", asker.name)
        request = GenerationRequest(
            prompt=text,
            params=settings.generation_params(max_new_tokens_cap=self.bot.config.service.max_new_tokens_cap),
            mode="chat",
            system_prompt=f"You are {character.name}. {character.persona}",
            model=settings.model,
            history=history,
            author=author,
        )
        reply = ReplyRecord(
            id=reply_id, channel_id=channel.id, requester_id=asker.id, kind="chat", request="", header=header
        )
        surface = WebhookSurface(self.speakers, channel, character)
        try:
            done = await self.bot.answers.write(
                source, surface, reply, request, texts=(text,), show_thinking=settings.thinking == "spoiler"
            )
        except Exception as exc:
            if await surface.fail(exc):
                if replies.is_unexpected(exc):
                    log.error("%s's answer failed", character.name, exc_info=exc)
                return reply
            raise
        if done.text.strip():
            turn = await self.bot.store.conversations.add_exchange(
                key, asker_id=asker.id, author=author, message=text, reply=done.text
            )
            await self.bot.store.replies.save_reply(replace(done, turn_id=turn))
        return done

    async def addressed(self, guild_id: int, said: str) -> tuple[Character, str] | None:
        """The character a message starts with, and the rest of it."""
        found = await self.bot.store.characters.characters(guild_id)
        hit = addressed_character(said, [c.name for c in found])
        if hit is None:
            return None
        return next(c for c in found if c.name == hit[0]), hit[1]

    async def replied_to(self, message: discord.Message) -> Character | None:
        """The character whose webhook message ``message`` replies to, if it does."""
        ref = message.reference
        target = ref.resolved if ref is not None else None
        if not isinstance(target, discord.Message) or message.guild is None or not self.speakers.owns(target):
            return None
        return await self.bot.store.characters.character(message.guild.id, target.author.name)

    # -- checks -----------------------------------------------------------------------------------

    async def _require_moderator(self, interaction: discord.Interaction) -> int:
        guild_id = checks.require_server(interaction)
        if not await self.bot.is_moderator(interaction):
            raise app_commands.CheckFailure(
                "Creating, changing and deleting characters needs Manage Channels or this server's moderator role."
            )
        return guild_id

    async def _find(self, interaction: discord.Interaction, name: str) -> Character:
        found = await self.bot.store.characters.character(interaction.guild_id or 0, name)
        if found is None:
            raise UserFacingError(
                f"There is no character named “{render.escape(name)}” here; see `/character list`."
            )
        return found

    async def _check_name(self, interaction: discord.Interaction, name: str) -> str:
        for channel_id in channel_chain(interaction):  # the blocklists as stored now
            await self._moderator().rules(channel_id)
        name = check_name(name)
        self._check_text(interaction, "name", name)
        guild = interaction.guild
        members: list[str] = []
        roles: list[str] = []
        bot: list[str] = [self.bot.user.name] if self.bot.user else []
        if guild is not None:
            # Without the members intent, guild.members holds only those Discord sent (the bot, and
            # members seen in events); a member named like the character is also looked up by name.
            people = list(guild.members)
            if isinstance(interaction.user, discord.Member):
                people.append(interaction.user)
            for member in people:
                names = [member.name, member.display_name, member.global_name or ""]
                (bot if member.id == getattr(self.bot.user, "id", None) else members).extend(names)
            roles = [r.name for r in guild.roles]
            if guild.me is not None:
                bot.append(guild.me.display_name)
        check_not_taken(name, members=members, roles=roles, bot=bot)
        return name

    def _moderator(self) -> Moderator:
        moderator = self.bot.models.moderator
        if moderator is None:  # fails closed, as model commands do
            raise UserFacingError("Moderation is not available right now, so characters cannot be changed.")
        return moderator

    def _check_text(self, interaction: discord.Interaction, what: str, text: str) -> str:
        blocked = self._moderator().blocklist_now(channel_chain(interaction)).find(text)
        if blocked is not None:
            raise UserFacingError(
                f"The character's {what} contains a phrase blocked in this channel.", icon="🚫"
            )
        return text

    async def _avatar(
        self, avatar: discord.Attachment | None, avatar_url: str | None
    ) -> tuple[bytes | None, str]:
        """The stored image (an upload, re-encoded: Discord's attachment URLs expire) or the URL."""
        if avatar is not None and avatar_url:
            raise UserFacingError("Give the avatar as an image or as a link, not both.")
        if avatar_url:
            return None, check_avatar_url(avatar_url)
        if avatar is None:
            return None, ""
        if avatar.size > AVATAR_MAX_BYTES:
            raise UserFacingError("The avatar image is too large (8 MB at most).")
        try:
            data = await avatar.read()
        except discord.HTTPException as exc:
            raise UserFacingError("I could not download the avatar image; try again.") from exc
        return normalize_avatar(data), ""


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bytes_io(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


async def setup(bot: Transcord) -> None:
    await bot.add_cog(Characters(bot))
