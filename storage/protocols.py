"""The storage the cogs depend on: eight small repositories, each a Protocol.

One implementation of each (``storage.repositories``) serves SQLite and PostgreSQL alike, over a
driver (``storage.drivers``); the contract tests (``tests/storage``) run on both. A cog never
sees a driver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from domain.characters import Character
from domain.quotas import Budget
from domain.rules import ChannelRules
from domain.settings import ChannelSettings
from storage.types import (
    AuditEntry,
    CastMember,
    CastTurns,
    ConversationKey,
    ConversationTurn,
    JoinResult,
    NewTurn,
    Quota,
    ReplyRecord,
    Scope,
    Source,
    Story,
    StoryPlayer,
    StorySkip,
    StoryTurn,
    TurnMode,
    UnfinishedReply,
)


@runtime_checkable
class SettingsStore(Protocol):
    """Channel settings per scope (server, channel, thread), falling back to ``defaults``."""

    defaults: ChannelSettings

    async def effective(
        self, guild_id: int | None, channel_id: int, parent_id: int | None = None
    ) -> ChannelSettings:
        """What applies in a channel or thread: per key, the most specific scope wins."""
        ...

    async def explain(
        self, guild_id: int | None, channel_id: int, parent_id: int | None = None
    ) -> dict[str, tuple[object, Source]]:
        """Each effective value with the scope it comes from, for ``/settings show``."""
        ...

    async def scope_values(self, scope: Scope, scope_id: int) -> dict[str, object]:
        """What this scope sets explicitly (not inherited), in declared key order."""
        ...

    async def set_values(
        self,
        scope: Scope,
        scope_id: int,
        values: Mapping[str, object],
        *,
        actor_id: int,
        max_new_tokens_cap: int,
        model_names: Collection[str] | None,
    ) -> dict[str, object]:
        """Validate every value, then write them all in one transaction; returns what was stored."""
        ...

    async def reset(
        self, scope: Scope, scope_id: int, keys: Iterable[str] | None = None, *, actor_id: int
    ) -> list[str]:
        """Drop explicit values so the scope falls back again; returns the keys removed."""
        ...


@runtime_checkable
class MetaStore(Protocol):
    """A key-value table for the bot's own bookkeeping (command hashes, the moderator role)."""

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...


@runtime_checkable
class RulesStore(Protocol):
    """Channel rules, blocked phrases, token budgets, and the audit log of moderator actions and
    settings changes."""

    async def channel_rules(self, channel_id: int) -> ChannelRules:
        """What moderators set for this channel or thread (not its parent's)."""
        ...

    async def set_channel_rules(
        self,
        channel_id: int,
        *,
        actor_id: int,
        locked: bool | None = None,
        cooldown_s: int | None = None,
        max_inflight: int | None = None,
    ) -> ChannelRules:
        """Change some of a channel's rules and log each change, in one transaction."""
        ...

    async def add_blocked_phrase(self, channel_id: int, phrase: str, *, actor_id: int) -> bool:
        """Block a phrase here; False if it already was. Refuses past ``MAX_PHRASES``."""
        ...

    async def remove_blocked_phrase(self, channel_id: int, phrase: str, *, actor_id: int) -> bool:
        """Unblock a phrase here; False if it was not blocked."""
        ...

    async def record_action(
        self, scope: Scope, scope_id: int, *, actor_id: int, action: str, detail: str = ""
    ) -> None:
        """Add an entry to the audit log (moderator actions that change no stored rule)."""
        ...

    async def audit_log(
        self, guild_id: int | None, channel_ids: Sequence[int], *, limit: int = 20
    ) -> list[AuditEntry]:
        """The newest entries about these channels and (with ``guild_id``) the server's defaults."""
        ...

    async def token_budgets(self, guild_id: int, channel_ids: Sequence[int]) -> list[Budget]:
        """The token budgets set for the server and for these channels, every role's included."""
        ...

    async def set_token_budget(self, budget: Budget, *, actor_id: int) -> None:
        """Set (or replace) the budget of its scope and role, and log it, in one transaction."""
        ...

    async def clear_token_budget(
        self, scope: Scope, scope_id: int, *, role_id: int = 0, actor_id: int
    ) -> bool:
        """Remove the budget of this scope and role (0: the plain one), and log it; False if none."""
        ...


@runtime_checkable
class StoryStore(Protocol):
    """Stories, their players, their cast and their turns."""

    async def create_story(
        self,
        *,
        guild_id: int | None,
        channel_id: int,
        starter_id: int,
        starter_name: str,
        premise: str,
        turn_mode: TurnMode,
        max_players: int,
        turn_tokens: int = 120,
        cast_turns: CastTurns = "none",
        narrator: bool = False,
        cast: Sequence[tuple[int, str]] = (),
    ) -> Story | None:
        """Open a story with its starter as the first player and its cast (character id and name,
        in speaking order); None if one is already open here."""
        ...

    async def discard_story(self, story_id: int) -> None:
        """Delete a story that never got going (its opening failed), so the channel is free again."""
        ...

    async def open_story(self, channel_id: int) -> Story | None: ...

    async def story(self, story_id: int) -> Story | None: ...

    async def join_story(self, story_id: int, user_id: int, name: str) -> JoinResult:
        """Add a player, unless the story is closed, full, or has them already."""
        ...

    async def story_players(self, story_id: int) -> list[StoryPlayer]:
        """Players in the order they joined (the round-robin order)."""
        ...

    async def story_turns(self, story_id: int) -> list[StoryTurn]:
        """The story so far, in order, without undone turns."""
        ...

    async def add_story_turns(self, story_id: int, turns: Sequence[NewTurn]) -> list[StoryTurn]:
        """Append turns (a contribution and the bot's continuation) together, numbered in order.

        Returns [] if the story is no longer open: nothing is added to an ended story.
        """
        ...

    async def undo_story_turn(self, story_id: int, *, actor_id: int) -> list[StoryTurn]:
        """Undo the last player contribution and everything after it (the bot's continuation)."""
        ...

    async def remove_story_line(self, story_id: int, seq: int, *, actor_id: int) -> StoryTurn | None:
        """Take line ``seq`` out of an open story and log it; None if the story is not open or has
        no such line (or it was taken out already)."""
        ...

    async def story_cast(self, story_id: int) -> list[CastMember]:
        """The story's cast in speaking order, those who left included (``left_at`` set)."""
        ...

    async def leave_cast(self, story_id: int, character_id: int) -> bool:
        """Mark a cast member as gone (its character was deleted); False if it had left already."""
        ...

    async def end_story(self, story_id: int, *, actor_id: int) -> bool:
        """Archive an open story; False if it was not open (ended meanwhile)."""
        ...

    async def skip_turn(self, story_id: int, skipped_id: int, *, by_id: int | None) -> bool:
        """Record that ``skipped_id``'s round-robin turn passed (``by_id`` None: the turn timer).

        False if the story is not open.
        """
        ...

    async def story_skips(self, story_id: int) -> list[StorySkip]:
        """The turns that passed, oldest first."""
        ...

    async def set_turn_timeout(self, story_id: int, seconds: float, *, actor_id: int) -> bool:
        """Set the story's turn timer (0: none); False if the story is not open."""
        ...

    async def timed_stories(self) -> list[Story]:
        """Open round-robin stories that have a turn timer."""
        ...


@runtime_checkable
class ConversationStore(Protocol):
    """/chat's conversations: turns kept per thread, or per member in a channel."""

    async def recent_turns(
        self, key: ConversationKey, *, since: float | None = None, limit: int = 40
    ) -> list[ConversationTurn]:
        """The newest ``limit`` turns (oldest first), only those written at or after ``since``."""
        ...

    async def add_exchange(
        self, key: ConversationKey, *, asker_id: int, author: str, message: str, reply: str
    ) -> int:
        """A member's message and the reply to it, written together (both or neither).

        Returns the reply turn's id, for :meth:`revise_turn`.
        """
        ...

    async def revise_turn(self, turn_id: int, text: str) -> bool:
        """Replace a reply turn's text (regenerated or continued); False if it is gone (reset)."""
        ...

    async def prune_turns(self, *, before: float) -> int:
        """Forget turns written before ``before`` (Unix time), in every conversation; how many."""
        ...

    async def forget(self, channel_id: int, *, asker_id: int | None = None) -> int:
        """Drop the channel's or thread's conversations (only ``asker_id``'s exchanges, if given).

        Returns the number of turns removed.
        """
        ...


@runtime_checkable
class ReplyStore(Protocol):
    """Generated replies, for their buttons and for Discord replies to them."""

    async def save_reply(self, reply: ReplyRecord) -> None:
        """Insert or replace the reply with this id (``created_at`` kept from the first save)."""
        ...

    async def reply(self, reply_id: int) -> ReplyRecord | None: ...

    async def reply_by_message(self, message_id: int) -> ReplyRecord | None:
        """The reply the bot's message ``message_id`` shows, if it shows one."""
        ...

    async def prune_replies(self, *, before: float) -> int:
        """Forget replies last changed before ``before`` (Unix time); returns how many."""
        ...

    async def begin_writing(self, unfinished: UnfinishedReply) -> None:
        """Note that a reply is being written and how to edit it (replacing any earlier note for it)."""
        ...

    async def end_writing(self, reply_id: int) -> None:
        """The reply is no longer being written (done, failed, or cut off and told so)."""
        ...

    async def unfinished(self, *, began_before: float, owner: str) -> list[UnfinishedReply]:
        """Replies begun before ``began_before`` (Unix time) by processes other than ``owner``
        and never ended: their process died. Oldest first."""
        ...

    async def take_over(self, reply_id: int, *, from_owner: str, owner: str) -> bool:
        """Make ``owner`` the process finishing the reply, if ``from_owner`` still is; False if
        another process took it over first or it ended."""
        ...


@runtime_checkable
class LimitStore(Protocol):
    """Cooldowns, requests in flight, locks and tokens spent, shared by every process on the database.

    Times are the caller's Unix time (``now``), so a test can move its clock.
    """

    async def take(self, quotas: Sequence[Quota], user_id: int, *, now: float, lease_s: float) -> int:
        """Let one request through every quota at once, or refuse it whole.

        Raises :class:`CoolingDown` if the member's cooldown in some scope has not run out (checked
        first: a busy refusal must not cost a cooldown), then :class:`ScopeBusy` if some scope has
        ``max_inflight`` unexpired leases. Else starts the member's cooldowns, takes a lease in each
        scope (expiring after ``lease_s``) and returns the ticket for :meth:`give_back`.
        """
        ...

    async def give_back(self, ticket: int) -> None:
        """End a request's leases (twice is harmless)."""
        ...

    async def renew(self, ticket: int, *, now: float, lease_s: float) -> bool:
        """Extend a ticket's leases to ``now + lease_s`` (its holder is alive); False if gone."""
        ...

    async def inflight(self, scope_id: int, *, now: float) -> int:
        """Requests in flight in the scope (unexpired leases)."""
        ...

    async def reset_cooldowns(self, scope_id: int) -> None:
        """Forget the scope's cooldowns (its period changed: the new one starts fresh)."""
        ...

    async def hold(self, name: str, *, now: float, lease_s: float) -> int | None:
        """Take the lock ``name`` until given back or ``lease_s`` passes; None if someone holds it."""
        ...

    async def spend_tokens(
        self, scopes: Sequence[tuple[Scope, int]], user_id: int, tokens: int, *, now: float
    ) -> None:
        """Add ``tokens`` to the member's count in each scope, in the UTC hour of ``now``.

        Added in the database (two spends at once both count); hours before ``now``'s UTC day
        are deleted, so the counts stay bounded.
        """
        ...

    async def tokens_used(self, scope: Scope, scope_id: int, user_id: int, *, since: float) -> int:
        """Tokens the member's generations wrote in the scope from ``since`` (an hour's start) on."""
        ...


@runtime_checkable
class CharacterStore(Protocol):
    """A server's characters, looked up by name whatever its case; each change in the audit log."""

    async def create_character(
        self,
        guild_id: int,
        name: str,
        persona: str,
        *,
        greeting: str = "",
        avatar_url: str = "",
        avatar: bytes | None = None,
        actor_id: int,
    ) -> Character | None:
        """Add a character; None if the server has one of that name. Refuses past ``MAX_CHARACTERS``."""
        ...

    async def character(self, guild_id: int, name: str) -> Character | None: ...

    async def character_by_id(self, character_id: int) -> Character | None: ...

    async def characters(self, guild_id: int) -> list[Character]:
        """The server's characters, by name."""
        ...

    async def update_character(
        self,
        guild_id: int,
        name: str,
        *,
        actor_id: int,
        new_name: str | None = None,
        persona: str | None = None,
        greeting: str | None = None,
        avatar_url: str | None = None,
        avatar: bytes | None = None,
    ) -> Character | None:
        """Change what is given (an avatar replaces the other kind); None if there is no such
        character. Raises :class:`~domain.characters.NameTaken` if ``new_name`` is another's."""
        ...

    async def delete_character(self, guild_id: int, name: str, *, actor_id: int) -> bool: ...


@dataclass(frozen=True)
class Storage:
    """The repositories of one database, and how to close it."""

    settings: SettingsStore
    meta: MetaStore
    rules: RulesStore
    stories: StoryStore
    conversations: ConversationStore
    replies: ReplyStore
    limits: LimitStore
    characters: CharacterStore
    close: Callable[[], Awaitable[None]]

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
