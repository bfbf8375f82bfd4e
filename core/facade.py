"""The only way cogs reach a model: :class:`ModeratedModels`, which puts every call through moderation.

A cog opens a model command with ``async with bot.models.command(source, *texts) as model``
and asks ``model.service`` (``stream``, ``fill_mask`` or a task such as ``classify``); there is
no other handle on the service that runs a model, so a new command cannot forget the guard. If
the moderation layer could not load, every model command is refused (fail closed) with a message
saying so.

:class:`Moderator` is that layer: each channel's rules, cached and written through to the store,
the token budgets that hold for the member, and the :class:`Gate` that admits or refuses a
request. The service a command gets counts the tokens its generations write (:class:`Metered`);
when the command ends, they are spent against the member's budgets, whatever the cog did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import discord

from core import replies
from core.gate import Gate
from domain import quotas
from domain.errors import UserFacingError
from domain.quotas import Budget, ScopeKey, Standing
from domain.rules import Blocklist, ChannelRules
from model_service import (
    GenerationRequest,
    GenerationResult,
    ModelServiceAPI,
    ServiceStatus,
    TextStream,
)
from model_service.api import TaskStream
from model_service.types import (
    RewriteRequest,
    TaskModels,
)

if TYPE_CHECKING:
    from storage import RulesStore
    from storage.protocols import LimitStore

log = logging.getLogger("transcord.moderation")
R = TypeVar("R")

RESTARTING_REFUSAL = "The bot is restarting; please try again in a minute."
MODERATION_DOWN = (
    "Moderation could not be loaded, so model commands are off here until a server admin "
    "fixes it (the bot's log says why)."
)


# Where a model command comes from: a slash command or button, or a member's message (a reply).
Source = discord.Interaction | discord.Message


def _user_id(source: Source) -> int:
    return source.user.id if isinstance(source, discord.Interaction) else source.author.id


def _guild_id(source: Source) -> int | None:
    if isinstance(source, discord.Interaction):
        return source.guild_id
    return source.guild.id if source.guild is not None else None


def _role_ids(source: Source) -> set[int]:
    member = source.user if isinstance(source, discord.Interaction) else source.author
    return {role.id for role in getattr(member, "roles", ())}  # a DM's user has none


def channel_chain(source: Source) -> list[int]:
    """The channels whose rules apply here: the parent channel first, then the thread itself."""
    channel_id = (source.channel_id if isinstance(source, discord.Interaction) else source.channel.id) or 0
    parent_id = getattr(source.channel, "parent_id", None)
    if parent_id is not None and parent_id != channel_id:
        return [parent_id, channel_id]
    return [channel_id]


class Moderator:
    """Channel rules (a write-through cache of the store) and the gate model commands pass."""

    def __init__(self, store: RulesStore, limits: LimitStore) -> None:
        self.store = store
        self.gate = Gate(limits)
        self._rules: dict[int, ChannelRules] = {}

    async def check(self) -> None:
        """Read the rules once: raises if the moderation tables cannot be read."""
        await self.store.channel_rules(0)

    async def rules(self, channel_id: int) -> ChannelRules:
        """The channel's rules as stored now (another bot process may have changed them); kept
        for :meth:`blocklist_now`, which redacts replies as they are written."""
        rules = self._rules[channel_id] = await self.store.channel_rules(channel_id)
        return rules

    async def set_rules(self, channel_id: int, actor_id: int, **changes: int | bool) -> ChannelRules:
        rules = await self.store.set_channel_rules(channel_id, actor_id=actor_id, **changes)  # type: ignore[arg-type]  # the /mod command's keywords, each a rule named there
        self._rules[channel_id] = rules
        return rules

    def blocklist_now(self, chain: list[int]) -> Blocklist:
        blocklist = Blocklist()
        for channel_id in chain:
            blocklist |= self._rules.get(channel_id, ChannelRules()).blocklist
        return blocklist

    async def budgets(self, source: Source) -> tuple[list[Budget], list[ScopeKey]]:
        """The token budgets that hold for the member here (server first, then channel, thread),
        and the scopes that count the member's tokens: those with any budget, so a scope counts
        from the moment a moderator sets one there. None in a DM."""
        guild_id = _guild_id(source)
        if guild_id is None:
            return [], []
        chain = channel_chain(source)
        scopes: list[ScopeKey] = [("guild", guild_id), *(("channel", c) for c in chain)]
        every = await self.store.token_budgets(guild_id, chain)
        counted = [key for key in scopes if any(budget.key == key for budget in every)]
        return quotas.in_force(every, _role_ids(source), scopes), counted

    async def standings(self, source: Source) -> list[Standing]:
        """Each budget that holds for the member here and what they used of it (for ``/quota``)."""
        budgets, _ = await self.budgets(source)
        return await self.gate.standings(budgets, _user_id(source))

    @contextlib.asynccontextmanager
    async def guard(
        self, source: Source, texts: tuple[str, ...], generated: Callable[[], int] = lambda: 0
    ) -> AsyncIterator[Callable[[str], str]]:
        """Admit the request or raise the refusal; yields the redaction for everything it writes.
        When it ends, ``generated()`` tokens are spent against the member's budgets here."""
        chain = channel_chain(source)
        scopes = [(channel_id, await self.rules(channel_id)) for channel_id in chain]
        budgets, counted = await self.budgets(source)
        user_id = _user_id(source)
        admission = await self.gate.admit(scopes, user_id, texts, budgets)
        try:
            async with self.gate.renewing(admission.ticket):
                # The blocklist as it is at each edit: a phrase blocked mid-reply is hidden from then on.
                yield lambda text: self.blocklist_now(chain).redact(text)
        finally:
            try:
                await self.gate.release(admission)
            finally:
                await self.gate.spend(counted, user_id, generated())


class Metered:
    """The model service as one command sees it: what passes through is the service's own, and
    the tokens its generations write are counted (a stream's once it has ended, stopped ones
    included), for the member's budgets. A stream that failed has no result: its tokens go uncounted.
    """

    def __init__(self, service: ModelServiceAPI) -> None:
        self._service = service
        self._streams: list[TextStream] = []
        self._tokens = 0

    def stream(self, request: GenerationRequest, *, timeout: float | None = None) -> TextStream:
        stream = self._service.stream(request, timeout=timeout)
        self._streams.append(stream)
        return stream

    async def generate(self, request: GenerationRequest, *, timeout: float | None = None) -> GenerationResult:
        result = await self._service.generate(request, timeout=timeout)
        self._tokens += result.generated_tokens
        return result

    async def rewrite(self, request: RewriteRequest) -> TaskStream:
        stream = await self._service.rewrite(request)
        self._streams.append(stream)
        return stream

    def __getattr__(self, name: str) -> Any:
        # The rest of ModelServiceAPI writes no tokens: the service's own methods, unchanged.
        return getattr(self._service, name)

    def generated_tokens(self) -> int:
        return self._tokens + sum(s.result.generated_tokens for s in self._streams if s.result is not None)


@dataclass(frozen=True)
class ModelCall:
    """One admitted model command: the service to ask, and the redaction of what it writes."""

    service: ModelServiceAPI
    redact: Callable[[str], str]


class ModeratedModels:
    """The moderated model facade cogs get: model commands pass moderation, or do not run."""

    def __init__(self, service: ModelServiceAPI) -> None:
        self._service = service
        self.moderator: Moderator | None = None
        self.moderation_error: str | None = "moderation has not been loaded yet"
        self.closing = False
        self.inflight: set[asyncio.Task[object]] = set()

    async def load_moderation(self, store: RulesStore, limits: LimitStore) -> None:
        """Build the moderation layer; if it cannot load, model commands stay refused (and say why)."""
        moderator = Moderator(store, limits)
        try:
            await moderator.check()
        except Exception as exc:
            self.moderator, self.moderation_error = None, f"{type(exc).__name__}: {exc}"
            log.exception("moderation could not be loaded: every model command is refused until it is")
            return
        self.moderator, self.moderation_error = moderator, None

    @contextlib.asynccontextmanager
    async def command(self, source: Source, *texts: str) -> AsyncIterator[ModelCall]:
        """Run a model command: refused while restarting or unmoderated, guarded, tracked for shutdown.

        ``source`` is the interaction or message that asked; ``texts`` are what the user sent
        (prompts); moderation may refuse them by raising.
        """
        if self.closing:
            raise UserFacingError(RESTARTING_REFUSAL)
        if self.moderator is None:
            raise UserFacingError(MODERATION_DOWN, icon="🛡️")
        task = asyncio.current_task()
        assert task is not None
        # Tracked until the whole command ends, not just its model call: what it does after (saving
        # the reply, the conversation, giving its slot back) must finish before the store closes.
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        metered = Metered(self._service)
        async with self.moderator.guard(source, texts, metered.generated_tokens) as redact:
            yield ModelCall(cast(ModelServiceAPI, metered), redact)

    async def answer(
        self,
        interaction: discord.Interaction,
        texts: tuple[str, ...],
        ask: Callable[[ModelServiceAPI], Awaitable[R]],
        render: Callable[[R], str],
    ) -> None:
        """A model command answered with one reply: ``ask`` the service through moderation, then
        show ``render`` of what it said, redacted (split over messages when long)."""
        async with self.command(interaction, *texts) as call:
            result = await replies.answer_soon(interaction, ask(call.service))
            await replies.send_long(interaction, call.redact(render(result)))

    # -- what runs no model: no moderation needed --------------------------------------------------

    def model_names(self) -> list[str]:
        return self._service.model_names()

    def status(self) -> ServiceStatus:
        return self._service.status()

    def tasks(self) -> tuple[TaskModels, ...]:
        return self._service.tasks()
