"""What the stores hand back: plain frozen rows, and the storage layer's own errors.

No driver here and no user-facing text: the cogs decide what a user reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from domain.stories import NARRATOR

Scope = Literal["guild", "channel"]  # a thread is a 'channel' with its own id
Source = Literal["thread", "channel", "guild", "default"]
TurnMode = Literal["free", "round-robin"]
TurnKind = Literal["opening", "player", "bot"]
JoinResult = Literal["joined", "already", "full", "closed"]
# Who speaks between the players' turns in a story with a cast ("none": no cast, the bot continues).
CastTurns = Literal["none", "rotation", "all"]
# kind, author id (None: the bot), author name, text; a line the cast spoke adds who spoke (the
# character's id, 0: the narrator) and the webhook message showing it.
NewTurn = (
    tuple[TurnKind, int | None, str, str] | tuple[TurnKind, int | None, str, str, int | None, int | None]
)
NARRATOR_ID = NARRATOR  # the narrator's place where a character's id goes (character ids start at 1)


class SchemaError(RuntimeError):
    """The database was written by a newer Transcord than this one."""


class StoreUnavailable(Exception):
    """The database cannot be reached right now (its server is down or restarting): try later."""


class LimitReached(Exception):
    """A write would pass a stored limit (``what``: e.g. "blocked phrases"; ``limit``: the most)."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"at most {limit} {what}")
        self.what, self.limit = what, limit


@dataclass(frozen=True)
class AuditEntry:
    id: int
    scope: str
    scope_id: int
    actor_id: int
    action: str
    detail: str
    at: float  # Unix time


@dataclass(frozen=True)
class Story:
    id: int
    guild_id: int | None
    channel_id: int
    starter_id: int
    premise: str
    turn_mode: TurnMode
    max_players: int
    status: Literal["open", "ended"]
    created_at: float
    turn_timeout_s: float = 0.0  # round-robin: a turn passes after this long (0: never)
    turn_tokens: int = 120  # the most tokens the bot writes for each of its turns
    cast_turns: CastTurns = "none"  # who speaks between the players' turns ("none": no cast)
    narrator: bool = False  # the narrator is in the cast (speaking first)

    @property
    def has_cast(self) -> bool:
        return self.cast_turns != "none"


@dataclass(frozen=True)
class CastMember:
    """A character in a story's cast, in speaking order; ``left_at`` set once it was deleted."""

    position: int
    character_id: int
    name: str  # as it was when the story started (what the story says when it leaves)
    left_at: float | None = None


@dataclass(frozen=True)
class StorySkip:
    """A round-robin turn that passed: skipped by the player, a moderator, or the timer (``by_id`` None)."""

    skipped_id: int
    by_id: int | None
    at: float


@dataclass(frozen=True)
class StoryPlayer:
    user_id: int
    name: str
    joined_at: float


@dataclass(frozen=True)
class StoryTurn:
    seq: int
    kind: TurnKind
    author_id: int | None
    author_name: str
    text: str
    created_at: float
    character_id: int | None = None  # who of the cast spoke it (NARRATOR_ID: the narrator)
    message_id: int | None = None  # the webhook message showing a cast line


@dataclass(frozen=True)
class ConversationKey:
    """Whose conversation: a thread's (``owner_id`` 0, shared) or one member's in a channel."""

    channel_id: int
    owner_id: int = 0

    @property
    def shared(self) -> bool:
        return self.owner_id == 0


@dataclass(frozen=True)
class ConversationTurn:
    role: Literal["user", "assistant"]
    text: str
    author: str | None  # who said a user turn (the display name), for shared conversations
    asker_id: int
    created_at: float


ReplyKind = Literal["generate", "chat"]


@dataclass(frozen=True)
class ReplyRecord:
    """A generated reply as its buttons and Discord replies need it after a restart.

    ``request`` is the request it ran, serialised by the cogs (storage does not read it);
    ``text`` what was shown; ``finish_reason`` None while it is being written.
    """

    id: int  # what asked: the interaction id of the command, or the member's message id
    channel_id: int
    requester_id: int
    kind: ReplyKind
    request: str
    header: str
    text: str = ""
    generated_tokens: int = 0
    finish_reason: str | None = None
    message_id: int | None = None  # the bot's message showing it, once sent
    turn_id: int | None = None  # the conversation turn a /chat reply is
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class UnfinishedReply:
    """A reply being written, with what edits it should its process die before it ends.

    A slash command's or a button's reply is edited through its interaction (``application_id``
    and ``interaction_token``, which Discord honours for 15 minutes after ``began_at``); a reply to
    a member's message is the bot's own message ``message_id`` in ``channel_id``. ``shown`` is what
    the reply showed before its new text (its header, and the text a Continue carries on).
    """

    reply_id: int
    owner: str  # the process writing it
    guild_id: int | None  # None in DMs
    channel_id: int
    began_at: float  # Unix time the interaction was created (or the reply began)
    shown: str = ""
    application_id: int | None = None
    interaction_token: str | None = field(default=None, repr=False)  # a secret while it lives
    message_id: int | None = None


@dataclass(frozen=True)
class Quota:
    """A channel's limits on model commands, as ``LimitStore.take`` checks them (0: none)."""

    scope_id: int
    cooldown_s: int = 0
    max_inflight: int = 0


class CoolingDown(Exception):
    """The member used a model command in this channel less than ``per`` seconds ago."""

    def __init__(self, scope_id: int, per: int, retry_after: float) -> None:
        super().__init__(f"cooling down in {scope_id} for {retry_after:.1f} s more")
        self.scope_id, self.per, self.retry_after = scope_id, per, retry_after


class ScopeBusy(Exception):
    """The channel already has ``limit`` model commands in flight."""

    def __init__(self, scope_id: int, limit: int) -> None:
        super().__init__(f"{scope_id} has {limit} requests in flight")
        self.scope_id, self.limit = scope_id, limit
