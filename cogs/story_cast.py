"""A story's cast as it speaks: the narrator and the server's characters, each through the
channel's webhook under its own name and face (``core.webhooks``), with no mentions.

The rules (who is in the cast, who speaks when, what each is asked) are in ``domain.stories``;
this module looks the cast up, says who left, posts their lines and deletes them again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from cogs.character import cast_of
from core import streaming
from core.facade import ModelCall
from core.webhooks import Speakable, Speakers, WebhookSurface
from domain.characters import Character, name_key
from domain.errors import UserFacingError
from domain.stories import (
    NARRATOR,
    NARRATOR_NAME,
    STORYTELLER,
    next_speakers,
    opener,
    unknown_cast_message,
    unknown_names,
)
from model_service import GenerationRequest
from storage.types import CastMember, Story, StoryTurn

if TYPE_CHECKING:
    from core.transcord import Transcord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lineup:
    """A story's cast as it stands now: everyone in speaking order (keys: character ids, or
    NARRATOR), those still there, and those found gone just now."""

    order: tuple[int, ...]
    present: dict[int, Character]
    left: dict[int, str]  # those gone: their names as the story knew them
    left_now: tuple[CastMember, ...] = ()

    def roster(self) -> list[str]:
        """Everyone in speaking order, those gone marked so."""
        return [self.present[k].name if k in self.present else f"{self.left[k]} (left)" for k in self.order]


def narrator(guild_id: int) -> Character:
    """The narrator speaks like a character (its name, a drawn face) but is none of the server's."""
    return Character(id=NARRATOR, guild_id=guild_id, name=NARRATOR_NAME, persona=STORYTELLER)


def speaker_of(turn: StoryTurn) -> str | None:
    """Who a line is attributed to in a prompt: None for the story's prose (the narrator's, or the
    bot's in a story without a cast), else the player's or the character's name."""
    if turn.character_id == NARRATOR or (turn.character_id is None and turn.kind != "player"):
        return None
    return turn.author_name


def last_cast_speaker(turns: Sequence[StoryTurn]) -> int | None:
    return next((t.character_id for t in reversed(turns) if t.character_id is not None), None)


class Cast:
    """The story cog's side of the cast: finding it, lining it up, letting it speak."""

    def __init__(self, bot: Transcord) -> None:
        self.bot = bot

    def speakers(self) -> Speakers:
        cog = cast_of(self.bot)
        if cog is None:
            raise UserFacingError("Characters are not available right now, so a story cannot have a cast.")
        return cog.speakers

    async def choose(self, guild_id: int, names: Sequence[str], *, with_narrator: bool) -> list[Character]:
        """The server's characters named for a cast, in the order named; unknown names refused,
        naming each of them."""
        known = await self.bot.store.characters.characters(guild_id)
        if missing := unknown_names(names, [c.name for c in known]):
            raise UserFacingError(unknown_cast_message(missing))
        by_key = {name_key(c.name): c for c in known}
        chosen = [by_key[name_key(name)] for name in names]
        if with_narrator and any(name_key(c.name) == name_key(NARRATOR_NAME) for c in chosen):
            raise UserFacingError(
                f"The story has its own {NARRATOR_NAME} already: to let your character "
                f"“{NARRATOR_NAME}” narrate instead, start it with `narrator: False`."
            )
        return chosen

    async def check_channel(self, channel: object) -> Speakable:
        """The channel, if the cast can speak there (the bot's webhook found or made now)."""
        here = _speakable(channel)
        await self.speakers().webhook(here)
        return here

    async def lineup(self, story: Story, *, record: bool = True) -> Lineup:
        """The cast now. A character deleted since is gone from it; with ``record`` it is marked so
        (once) and reported in ``left_now``, for the channel to be told (a turn's reply does)."""
        guild_id = story.guild_id or 0
        order: list[int] = [NARRATOR] if story.narrator else []
        present: dict[int, Character] = {NARRATOR: narrator(guild_id)} if story.narrator else {}
        left: dict[int, str] = {}
        left_now: list[CastMember] = []
        for member in await self.bot.store.stories.story_cast(story.id):
            order.append(member.character_id)
            character = None
            if member.left_at is None:
                character = await self.bot.store.characters.character_by_id(member.character_id)
            if character is not None and character.guild_id == guild_id:
                present[member.character_id] = character
                continue
            left[member.character_id] = member.name
            if (
                record
                and member.left_at is None
                and await self.bot.store.stories.leave_cast(story.id, member.character_id)
            ):
                left_now.append(member)
        return Lineup(tuple(order), present, left, tuple(left_now))

    def opening_voice(self, lineup: Lineup) -> Character | None:
        key = opener(lineup.order, lineup.present)
        return None if key is None else lineup.present[key]

    def voices_after(self, story: Story, lineup: Lineup, turns: Sequence[StoryTurn]) -> list[Character]:
        keys = next_speakers(lineup.order, lineup.present, last_cast_speaker(turns), story.cast_turns)
        return [lineup.present[key] for key in keys]

    async def speak(
        self,
        channel: object,
        voice: Character,
        request: GenerationRequest,
        model: ModelCall,
    ) -> tuple[str, int | None]:
        """Stream ``voice``'s line into a webhook message of its own; the text as posted and the
        message's id. An error after the message was posted is shown in it, and raised."""
        surface = WebhookSurface(self.speakers(), _speakable(channel), voice)
        try:
            result, message_id = await streaming.stream_reply(
                surface,
                model.service.stream(request),
                header="",
                interval=self.bot.config.stream_edit_interval_s,
                transform=model.redact,
            )
        except Exception as exc:
            await surface.fail(exc)
            raise
        return model.redact(result.text), message_id

    async def unsay(self, channel: object, turns: Sequence[StoryTurn]) -> int:
        """Delete the webhook messages of cast lines taken out of a story; how many went."""
        shown = [t.message_id for t in turns if t.message_id is not None and t.character_id is not None]
        if not shown or not isinstance(channel, discord.TextChannel | discord.Thread):
            return 0
        try:
            webhook, thread = await self.speakers().webhook(channel)
        except UserFacingError:  # out of reach now: the lines are out of the story all the same
            log.warning("could not reach the webhook to delete removed story lines", exc_info=True)
            return 0
        deleted = 0
        for message_id in shown:
            try:
                await webhook.delete_message(message_id, thread=thread or discord.utils.MISSING)
                deleted += 1
            except discord.NotFound:
                pass  # deleted by someone already
            except discord.HTTPException:
                log.warning("could not delete a removed story line's message", exc_info=True)
        return deleted


def _speakable(channel: object) -> Speakable:
    if not isinstance(channel, discord.TextChannel | discord.Thread):
        raise UserFacingError(
            "A story with a cast needs a text channel or a thread: its cast speak through a webhook."
        )
    return channel
