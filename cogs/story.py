"""/story: collaborative storytelling. Players take turns; the model continues after each one.

Stories, players and turns live in the database, so a story survives a restart. Additions to one
story are serialised by a per-story lock (and numbered inside a write transaction), so two
``/story add`` at the same moment are both kept, in order, each with its own continuation.
The model parts run inside ``bot.models.command``: lock, blocklist, cooldown and limit apply.

A story may have a cast (``/story start cast:``): the narrator (unless ``narrator: False``) and
some of the server's characters, who speak between the players' turns through the channel's
webhook, each under its own name and face, by the story's ``cast_turns`` (``domain.stories``).
Every line is numbered and attributed; a moderator takes one out with ``/story remove``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.story_cast import Cast, Lineup, speaker_of
from core import checks, render, replies, streaming
from core.facade import ModelCall
from core.gate import LEASE_S, renewing
from domain.characters import Character
from domain.stories import CAST_OPTION_MAX, NARRATOR, cast_request, parse_cast, story_request
from model_service import GenerationParams
from storage import NewTurn, Story, StoryPlayer, StorySkip, StoryTurn, TurnMode
from storage.types import StoreUnavailable

if TYPE_CHECKING:
    from core.transcord import Transcord

# How players take turns (an Enum: discord.py refuses any other value on arrival).
Turns = enum.Enum("Turns", {"free": "free", "round-robin": "round-robin"})


class Length(enum.Enum):
    """How much the bot writes on each of its turns in a story."""

    short = 60
    paragraph = 120
    long = 240


PREMISE_LIMIT = 1000
CONTRIBUTION_LIMIT = 1500
MAX_PLAYERS = 25
LINE_MAX = 1_000_000  # /story remove's line number: the story's own numbering, never reused


class CastTurns(enum.Enum):
    """Who of a story's cast speaks between the players' turns (``domain.stories``)."""

    rotation = "rotation"
    all = "all"


log = logging.getLogger(__name__)

# -- pure helpers ------------------------------------------------------------------------------


def next_player(
    story: Story, players: Sequence[StoryPlayer], turns: Sequence[StoryTurn], skips: Sequence[StorySkip] = ()
) -> StoryPlayer | None:
    """Whose turn it is in a round-robin story (None in free mode): the one after whoever had the
    last turn, whether they wrote it or it passed (skipped, or timed out)."""
    if story.turn_mode != "round-robin" or not players:
        return None
    written = next((t for t in reversed(turns) if t.kind == "player"), None)
    passed = skips[-1] if skips else None
    # A skip comes after the turn it follows, so at the same instant the skip is the later one.
    if passed is not None and (written is None or passed.at >= written.created_at):
        last: int | None = passed.skipped_id
    else:
        last = written.author_id if written is not None else None
    ids = [p.user_id for p in players]
    if last is None or last not in ids:
        return players[0]
    return players[(ids.index(last) + 1) % len(players)]


def turn_started_at(story: Story, turns: Sequence[StoryTurn], skips: Sequence[StorySkip]) -> float:
    """When the current turn began: the story's opening, the last turn added, or the last one passed."""
    return max([story.created_at, *(t.created_at for t in turns), *(s.at for s in skips)])


LOCK_POLL_S = 0.2  # how often a turn waiting on another process's turn looks again


def _length_name(tokens: int) -> str:
    named = {length.value: length.name for length in Length}
    return named.get(tokens, f"{tokens}-token")


def transcript(
    story: Story, players: Sequence[StoryPlayer], turns: Sequence[StoryTurn], cast: Sequence[str] = ()
) -> str:
    """The whole story as plain text, for the file posted when it ends: each line under who said
    it (the player, the narrator, the character; the bot's opening of a story without a cast is
    the "Opening")."""
    started = datetime.fromtimestamp(story.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Story #{story.id}",
        f"Premise: {story.premise}",
        f"Turns: {story.turn_mode} · Players: {', '.join(p.name for p in players)}",
    ]
    if story.has_cast:
        lines.append(f"Cast ({story.cast_turns}): {', '.join(cast)}")
    lines += [f"Started: {started}", ""]
    for turn in turns:
        label = "Opening" if turn.kind == "opening" and not story.has_cast else turn.author_name
        lines += [f"[{label}]", turn.text.strip(), ""]
    return "\n".join(lines)


def story_lines(turns: Sequence[StoryTurn]) -> list[str]:
    """Every line of the story, numbered (the number ``/story remove`` takes) and attributed."""
    return [f"`{t.seq}` {_bold_name(t.author_name)}: {t.text.strip()}" for t in turns]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} s"
    minutes = seconds / 60
    return f"{minutes:g} minute" + ("" if minutes == 1 else "s")


def _bold_name(name: str) -> str:
    return f"**{render.escape(name)}**"


# -- the cog -----------------------------------------------------------------------------------


@app_commands.guild_only()
class StoryMode(
    commands.GroupCog, group_name="story", group_description="Write a story together, turn by turn"
):
    # How often the turn timer looks at the open round-robin stories (a class attribute: tests shorten it).
    TIMER_TICK_S = 15.0

    def __init__(self, bot: Transcord) -> None:
        self.bot = bot
        self._locks: dict[int, asyncio.Lock] = {}
        self._timer: asyncio.Task[None] | None = None
        self._timer_wake = asyncio.Event()
        self.cast = Cast(bot)
        super().__init__()

    async def cog_load(self) -> None:
        self._timer = asyncio.create_task(self._turn_timer(), name="story-turn-timer")

    async def cog_unload(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)

    async def _turn_timer(self) -> None:
        """Pass the turn of a round-robin player who let the story's timer run out, with a notice.

        Sleeps until the nearest deadline (at most ``TIMER_TICK_S``); ``/story timer`` wakes it.
        """
        while True:
            wait = self.TIMER_TICK_S
            try:
                wait = min(wait, await self._pass_timed_out_turns())
            except StoreUnavailable as exc:  # the database is away for now: the next tick looks again
                log.warning("the story turn timer could not reach the database (%s); trying again", exc)
            except Exception:  # the timer must outlive one bad tick (a lost message, a locked file)
                log.exception("the story turn timer failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wake.wait(), timeout=max(wait, 0.05))
            self._timer_wake.clear()

    async def _pass_timed_out_turns(self) -> float:
        """Pass every turn whose time is up; returns the seconds until the next deadline."""
        stories = self.bot.store.stories
        nearest = self.TIMER_TICK_S
        for story in await stories.timed_stories():
            turns, skips = await stories.story_turns(story.id), await stories.story_skips(story.id)
            players = await stories.story_players(story.id)
            current = next_player(story, players, turns, skips)
            if current is None:
                continue
            left = turn_started_at(story, turns, skips) + story.turn_timeout_s - time.time()
            if left > 0:
                nearest = min(nearest, left)
                continue
            async with self._held(story.id):
                if not await stories.skip_turn(story.id, current.user_id, by_id=None):
                    continue
            nxt = next_player(story, players, turns, await stories.story_skips(story.id))
            text = (
                f"⏰ {_bold_name(current.name)}'s turn in story #{story.id} timed out after "
                f"{_duration(story.turn_timeout_s)}. Next turn: {_bold_name(nxt.name) if nxt else '—'}."
            )
            channel = self.bot.get_channel(story.channel_id) or await self.bot.fetch_channel(story.channel_id)
            assert isinstance(channel, discord.abc.Messageable)  # a story's channel takes messages
            await channel.send(text, allowed_mentions=replies.NO_MENTIONS)
            nearest = min(nearest, story.turn_timeout_s)  # the next player's turn starts now
        return nearest

    @property
    def bot_name(self) -> str:
        return self.bot.user.display_name if self.bot.user else "Transcord"

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        checks.require_server(interaction)  # hidden from DMs by guild_only; refused there all the same
        return True

    async def _open_story(self, interaction: discord.Interaction) -> Story:
        story = await self.bot.store.stories.open_story(interaction.channel_id or 0)
        if story is None:
            raise replies.UserFacingError("No story is open here. Start one with `/story start`.")
        return story

    @contextlib.asynccontextmanager
    async def _story_lock(self, interaction: discord.Interaction, story_id: int) -> AsyncIterator[None]:
        async def waiting() -> None:
            if not interaction.response.is_done():
                await interaction.response.defer(thinking=True)  # the wait may outlast Discord's 3 s

        async with self._held(story_id, waiting):
            yield

    @contextlib.asynccontextmanager
    async def _held(
        self, story_id: int, waiting: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[None]:
        """The story's turn lock: one turn at a time, in this process (in order) and across every
        bot process on the database (a lease in the limit store; a dead holder's runs out)."""
        local = self._locks.setdefault(story_id, asyncio.Lock())
        limits = self.bot.store.limits
        if local.locked() and waiting is not None:
            await waiting()
            waiting = None
        async with local:
            while (
                ticket := await limits.hold(f"story:{story_id}", now=time.time(), lease_s=LEASE_S)
            ) is None:
                if waiting is not None:
                    await waiting()
                    waiting = None
                await asyncio.sleep(LOCK_POLL_S)  # another process is writing this story's turn
            try:
                async with renewing(limits, ticket):
                    yield
            finally:
                await asyncio.shield(limits.give_back(ticket))

    async def _continue(
        self,
        interaction: discord.Interaction,
        story: Story,
        texts: Sequence[str],
        header: str,
        model: ModelCall,
    ) -> str:
        """Stream the model's continuation of the story into the reply; return it as posted."""
        params, model_name, tokens = await self._turn(interaction, story)
        request = story_request(story.premise, texts, params, model_name, turn_tokens=tokens)
        result, _ = await streaming.stream_reply(
            interaction,
            model.service.stream(request),
            header=model.redact(header),
            interval=self.bot.config.stream_edit_interval_s,
            transform=model.redact,
        )
        return model.redact(result.text)

    async def _turn(
        self, interaction: discord.Interaction, story: Story
    ) -> tuple[GenerationParams, str | None, int]:
        """A turn as the channel's settings make it: the sampling, the model, and the story's own
        turn length (not the channel's ``max_new_tokens``), within the bot's cap."""
        settings = await self.bot.settings_for(interaction)
        cap = self.bot.config.service.max_new_tokens_cap
        return settings.generation_params(max_new_tokens_cap=cap), settings.model, min(story.turn_tokens, cap)

    async def _speak(
        self,
        interaction: discord.Interaction,
        story: Story,
        voice: Character,
        lines: Sequence[tuple[str | None, str]],
        model: ModelCall,
        turn: tuple[GenerationParams, str | None, int],
    ) -> tuple[str, int | None]:
        """One of the cast says its line through the webhook; the text as posted and its message."""
        params, model_name, tokens = turn
        request = cast_request(story.premise, lines, voice, params, model_name, turn_tokens=tokens)
        return await self.cast.speak(interaction.channel, voice, request, model)

    # -- commands ------------------------------------------------------------------------------

    @app_commands.command(name="start", description="Open a story here; the bot writes the opening")
    @app_commands.describe(
        premise="What the story is about, e.g. 'A dragon who is afraid of the dark'",
        turns="free: any player adds at any time; round-robin: players take turns in join order",
        max_players="How many players may join (you included)",
        length="How much the bot writes each turn: short (60 tokens), paragraph (120), long (240)",
        cast="Characters of this server who speak in it, e.g. 'Mira, Bard' (each through a webhook)",
        narrator="With a cast: the Narrator tells the story between the characters (default: yes)",
        cast_turns="rotation: one of the cast speaks after each player's turn, in order; all: every one",
    )
    async def start(
        self,
        interaction: discord.Interaction,
        premise: app_commands.Range[str, 1, PREMISE_LIMIT],
        turns: Turns = Turns.free,
        max_players: app_commands.Range[int, 1, MAX_PLAYERS] = 6,
        length: Length = Length.paragraph,
        cast: app_commands.Range[str, 1, CAST_OPTION_MAX] | None = None,
        narrator: bool = True,
        cast_turns: CastTurns = CastTurns.rotation,
    ) -> None:
        guild_id = checks.require_server(interaction)
        mode: TurnMode = turns.value
        store = self.bot.store
        existing = await store.stories.open_story(interaction.channel_id or 0)
        if existing is not None:
            raise _already_open(existing)
        chosen: list[Character] = []
        if cast is not None:  # checked before the guard: a refused start costs no cooldown
            chosen = await self.cast.choose(guild_id, parse_cast(cast), with_narrator=narrator)
            await self.cast.check_channel(interaction.channel)
        async with self.bot.models.command(interaction, premise) as model:
            story = await store.stories.create_story(
                guild_id=guild_id,
                channel_id=interaction.channel_id or 0,
                starter_id=interaction.user.id,
                starter_name=interaction.user.display_name,
                premise=premise,
                turn_mode=mode,
                max_players=max_players,
                turn_tokens=length.value,
                cast_turns=cast_turns.value if cast is not None else "none",
                narrator=narrator and cast is not None,
                cast=[(c.id, c.name) for c in chosen],
            )
            if story is None:  # another /story start won the race
                existing = await store.stories.open_story(interaction.channel_id or 0)
                raise _already_open(existing)
            lineup = await self.cast.lineup(story) if story.has_cast else None
            with_cast = (
                f"cast ({story.cast_turns}): {', '.join(_bold_name(n) for n in lineup.roster())} · "
                if lineup is not None
                else ""
            )
            header = (
                f"📖 **Story #{story.id}** · {mode} · up to {max_players} players · {length.name} turns · "
                f"{with_cast}started by {interaction.user.mention}\n> {render.escape(premise)}\n"
                "-# join with `/story join`, then add your part with `/story add`\n\n"
            )
            try:
                async with self._story_lock(interaction, story.id):
                    if lineup is None:
                        opening = await self._continue(interaction, story, [], header, model)
                        await store.stories.add_story_turns(
                            story.id, [("opening", None, self.bot_name, opening)]
                        )
                    else:
                        await self._open_with_cast(interaction, story, lineup, header.rstrip(), model)
            except BaseException:
                # No opening, no story: the channel is free for another try.
                await asyncio.shield(store.stories.discard_story(story.id))
                raise

    async def _open_with_cast(
        self, interaction: discord.Interaction, story: Story, lineup: Lineup, header: str, model: ModelCall
    ) -> None:
        """The story's header as the command's reply, then the first of the cast opens it."""
        await replies.send_long(interaction, header)
        interaction.extras["visible_text"] = replies.fit(header)  # an error after it is added below
        voice = self.cast.opening_voice(lineup)
        assert voice is not None  # a new cast is all there
        turn = await self._turn(interaction, story)
        text, message_id = await self._speak(interaction, story, voice, [], model, turn)
        await self.bot.store.stories.add_story_turns(
            story.id, [("opening", None, voice.name, text, voice.id, message_id)]
        )

    @app_commands.command(name="join", description="Join the story told here")
    async def join(self, interaction: discord.Interaction) -> None:
        story = await self._open_story(interaction)
        result = await self.bot.store.stories.join_story(
            story.id, interaction.user.id, interaction.user.display_name
        )
        if result != "joined":
            messages = {
                "already": f"You are already in story #{story.id}.",
                "full": f"Story #{story.id} is full ({story.max_players} players).",
                "closed": f"Story #{story.id} has ended.",
            }
            raise replies.UserFacingError(messages[result], icon="ℹ️")
        players = await self.bot.store.stories.story_players(story.id)
        text = f"👋 {interaction.user.mention} joined story #{story.id} ({len(players)}/{story.max_players} players)."
        if story.turn_mode == "round-robin":
            text += " Turn order: " + " → ".join(_bold_name(p.name) for p in players) + "."
        await replies.send_long(interaction, text)

    @app_commands.command(name="add", description="Add your part to the story; the bot continues it")
    @app_commands.describe(text="What happens next, in your words")
    async def add(
        self, interaction: discord.Interaction, text: app_commands.Range[str, 1, CONTRIBUTION_LIMIT]
    ) -> None:
        story = await self._open_story(interaction)
        store = self.bot.store
        # Checked before the guard (a refused turn costs no cooldown) and again under the lock.
        _check_turn(
            interaction.user,
            story,
            await store.stories.story_players(story.id),
            await store.stories.story_turns(story.id),
            await store.stories.story_skips(story.id),
        )
        async with self.bot.models.command(interaction, text) as model:
            if not interaction.response.is_done():
                await interaction.response.defer(thinking=True)
            async with self._story_lock(interaction, story.id):
                current = await store.stories.story(story.id)
                if current is None or current.status != "open":
                    raise replies.UserFacingError(f"Story #{story.id} ended before your turn could be added.")
                turns = await store.stories.story_turns(story.id)
                players = await store.stories.story_players(story.id)
                _check_turn(
                    interaction.user, current, players, turns, await store.stories.story_skips(story.id)
                )
                name = interaction.user.display_name
                header = f"✍️ {_bold_name(name)}: {render.escape(text)}\n"
                if current.has_cast:
                    await self._cast_round(interaction, current, turns, (name, text), header, model)
                    return
                texts = [*(t.text for t in turns), text]
                continuation = await self._continue(interaction, current, texts, header, model)
                added: list[NewTurn] = [
                    ("player", interaction.user.id, name, text),
                    ("bot", None, self.bot_name, continuation),
                ]
                await store.stories.add_story_turns(story.id, added)

    async def _cast_round(
        self,
        interaction: discord.Interaction,
        story: Story,
        turns: Sequence[StoryTurn],
        said: tuple[str, str],
        header: str,
        model: ModelCall,
    ) -> None:
        """A player's turn in a story with a cast: their words as the command's reply, then the cast
        speak by the story's rules, each through the webhook. Stored together once at least one of
        the cast has spoken (or none is left to): a turn nobody answered can be tried again."""
        lineup = await self.cast.lineup(story)
        voices = self.cast.voices_after(story, lineup, turns)
        notes = [
            f"-# 🎭 {_bold_name(gone.name)} is no longer one of this server's characters: "
            f"story #{story.id} goes on without them."
            for gone in lineup.left_now
        ]
        if not voices:
            notes.append("-# Nobody of the cast is left to speak: the players carry the story on.")
        shown = "\n".join([header.rstrip(), *notes])
        await replies.send_long(interaction, shown)
        interaction.extras["visible_text"] = replies.fit(shown)
        name, text = said
        added: list[NewTurn] = [("player", interaction.user.id, name, text)]
        lines = [(speaker_of(t), t.text) for t in turns] + [(name, text)]
        turn = await self._turn(interaction, story)  # one read of the settings for the whole round
        try:
            for voice in voices:
                line, message_id = await self._speak(interaction, story, voice, lines, model, turn)
                added.append(("bot", None, voice.name, line, voice.id, message_id))
                lines.append((None if voice.id == NARRATOR else voice.name, line))
        except Exception:
            if len(added) > 1:  # what was said stays said
                await self.bot.store.stories.add_story_turns(story.id, added)
            raise
        await self.bot.store.stories.add_story_turns(story.id, added)

    @app_commands.command(name="show", description="The story so far, each line numbered and attributed")
    @app_commands.describe(public="Show it to the whole channel instead of only to you")
    async def show(self, interaction: discord.Interaction, public: bool = False) -> None:
        story = await self._open_story(interaction)
        players = await self.bot.store.stories.story_players(story.id)
        turns = await self.bot.store.stories.story_turns(story.id)
        head = (
            f"📖 **Story #{story.id}** · {story.turn_mode} · {_length_name(story.turn_tokens)} turns · "
            f"{len(players)}/{story.max_players} players: " + ", ".join(_bold_name(p.name) for p in players)
        )
        if story.has_cast:
            roster = (await self.cast.lineup(story, record=False)).roster()  # a turn's reply says who left
            head += f"\n🎭 cast ({story.cast_turns}): " + ", ".join(_bold_name(n) for n in roster)
        lines = [head, f"> {render.escape(story.premise)}", "", *story_lines(turns)]
        skips = await self.bot.store.stories.story_skips(story.id)
        if (nxt := next_player(story, players, turns, skips)) is not None:
            lines += ["", f"-# next turn: {render.escape(nxt.name)}"]
        await replies.send_long(interaction, "\n".join(lines), ephemeral=not public)

    @app_commands.command(
        name="skip", description="Pass the current round-robin turn (that player or a moderator)"
    )
    async def skip(self, interaction: discord.Interaction) -> None:
        story = await self._open_story(interaction)
        stories = self.bot.store.stories
        no_turn = replies.UserFacingError(
            f"Story #{story.id} has free turns: anyone may add at any time, there is no turn to skip.",
            icon="ℹ️",
        )
        if story.turn_mode == "free":
            raise no_turn  # known without waiting for the turn in progress
        async with self._story_lock(interaction, story.id):
            players = await stories.story_players(story.id)
            turns, skips = await stories.story_turns(story.id), await stories.story_skips(story.id)
            current = next_player(story, players, turns, skips)
            if current is None:
                raise no_turn
            if current.user_id != interaction.user.id and not await self.bot.is_moderator(interaction):
                raise app_commands.CheckFailure(
                    f"Only {current.name}, whose turn it is, or a moderator can skip it."
                )
            await stories.skip_turn(story.id, current.user_id, by_id=interaction.user.id)
            nxt = next_player(story, players, turns, await stories.story_skips(story.id))
        who = "their own" if current.user_id == interaction.user.id else f"{_bold_name(current.name)}'s"
        text = f"⏭️ {interaction.user.mention} skipped {who} turn in story #{story.id}."
        if nxt is not None:
            text += f" Next turn: {_bold_name(nxt.name)}."
        await replies.send_long(interaction, text)

    @app_commands.command(
        name="timer", description="Pass a round-robin turn after this many minutes (moderators)"
    )
    @app_commands.describe(minutes="Minutes a player has for their turn; 0 turns the timer off")
    async def timer(
        self, interaction: discord.Interaction, minutes: app_commands.Range[float, 0, 1440]
    ) -> None:
        if not await self.bot.is_moderator(interaction):
            raise app_commands.CheckFailure(
                "Setting the turn timer needs Manage Channels or the moderator role."
            )
        story = await self._open_story(interaction)
        if story.turn_mode != "round-robin":
            raise replies.UserFacingError(
                f"Story #{story.id} has free turns; a turn timer is for round-robin stories.", icon="ℹ️"
            )
        await self.bot.store.stories.set_turn_timeout(story.id, minutes * 60, actor_id=interaction.user.id)
        self._timer_wake.set()
        text = (
            f"⏰ In story #{story.id}, a turn now passes after {_duration(minutes * 60)} without a word."
            if minutes
            else f"⏰ Story #{story.id} has no turn timer now."
        )
        await replies.send_long(interaction, text)

    @app_commands.command(
        name="undo", description="Remove the last player's turn and its continuation (moderators)"
    )
    async def undo(self, interaction: discord.Interaction) -> None:
        if not await self.bot.is_moderator(interaction):
            raise app_commands.CheckFailure("Undoing a turn needs Manage Channels or the moderator role.")
        story = await self._open_story(interaction)
        async with self._story_lock(interaction, story.id):
            undone = await self.bot.store.stories.undo_story_turn(story.id, actor_id=interaction.user.id)
        if not undone:
            raise replies.UserFacingError(
                f"Nothing to undo: no player has added to story #{story.id} yet.", icon="ℹ️"
            )
        after = "what the cast said after it" if story.has_cast else "the bot's continuation of it"
        text = (
            f"↩️ {interaction.user.mention} removed {_bold_name(undone[0].author_name)}'s last turn "
            f"from story #{story.id}, and {after}."
        )
        if story.has_cast:
            await self.cast.unsay(interaction.channel, undone)
        nxt = next_player(
            story,
            await self.bot.store.stories.story_players(story.id),
            await self.bot.store.stories.story_turns(story.id),
            await self.bot.store.stories.story_skips(story.id),
        )
        if nxt is not None:
            text += f" Next turn: {_bold_name(nxt.name)}."
        await replies.send_long(interaction, text)

    @app_commands.command(
        name="remove", description="Take one line out of the story, by its number in /story show (moderators)"
    )
    @app_commands.describe(line="The line's number, as /story show numbers it")
    async def remove(
        self, interaction: discord.Interaction, line: app_commands.Range[int, 1, LINE_MAX]
    ) -> None:
        if not await self.bot.is_moderator(interaction):
            raise app_commands.CheckFailure("Removing a line needs Manage Channels or the moderator role.")
        story = await self._open_story(interaction)
        async with self._story_lock(interaction, story.id):
            removed = await self.bot.store.stories.remove_story_line(
                story.id, line, actor_id=interaction.user.id
            )
        if removed is None:
            raise replies.UserFacingError(
                f"Story #{story.id} has no line {line}: `/story show` numbers its lines.", icon="ℹ️"
            )
        deleted = await self.cast.unsay(interaction.channel, [removed])
        text = (
            f"🗑️ {interaction.user.mention} removed line {line} ({_bold_name(removed.author_name)}'s) "
            f"from story #{story.id}."
        )
        if deleted:
            text += " Its message is deleted too."
        await replies.send_long(interaction, text)

    @app_commands.command(
        name="end", description="End the story and post it as a file (its starter or a moderator)"
    )
    async def end(self, interaction: discord.Interaction) -> None:
        story = await self._open_story(interaction)
        if interaction.user.id != story.starter_id and not await self.bot.is_moderator(interaction):
            raise app_commands.CheckFailure("Only the story's starter or a moderator can end it.")
        async with self._story_lock(interaction, story.id):  # lets a continuation being written finish
            ended = await self.bot.store.stories.end_story(story.id, actor_id=interaction.user.id)
        self._locks.pop(story.id, None)
        if not ended:
            raise replies.UserFacingError(f"Story #{story.id} has already ended.", icon="ℹ️")
        players = await self.bot.store.stories.story_players(story.id)
        turns = await self.bot.store.stories.story_turns(story.id)
        contributions = sum(t.kind == "player" for t in turns)
        content = (
            f"📕 {interaction.user.mention} ended story #{story.id}: {contributions} "
            f"turn{'s' if contributions != 1 else ''} by {len(players)} player{'s' if len(players) != 1 else ''}. "
            "The whole story is attached."
        )
        roster = (await self.cast.lineup(story, record=False)).roster() if story.has_cast else []
        data = transcript(story, players, turns, roster).encode("utf-8")
        file = discord.File(io.BytesIO(data), filename=f"story-{story.id}.txt")
        if interaction.response.is_done():
            await interaction.followup.send(content, file=file, allowed_mentions=replies.NO_MENTIONS)
        else:
            await interaction.response.send_message(content, file=file, allowed_mentions=replies.NO_MENTIONS)


def _already_open(story: Story | None) -> replies.UserFacingError:
    which = f" (#{story.id}, started by <@{story.starter_id}>)" if story else ""
    return replies.UserFacingError(
        f"A story is already open here{which}. Join it with `/story join`; its starter or a "
        "moderator can close it with `/story end`.",
        icon="📖",
    )


def _check_turn(
    user: discord.abc.User,
    story: Story,
    players: Sequence[StoryPlayer],
    turns: Sequence[StoryTurn],
    skips: Sequence[StorySkip],
) -> None:
    if not any(p.user_id == user.id for p in players):
        room = "" if len(players) < story.max_players else f" (it is full: {story.max_players} players)"
        raise replies.UserFacingError(
            f"You are not playing in story #{story.id}{room}. Join with `/story join` first.", icon="ℹ️"
        )
    nxt = next_player(story, players, turns, skips)
    if nxt is not None and nxt.user_id != user.id:
        raise replies.UserFacingError(
            f"It's {_bold_name(nxt.name)}'s turn (round-robin). Wait for them to add theirs.", icon="⏳"
        )


async def setup(bot: Transcord) -> None:
    await bot.add_cog(StoryMode(bot))
