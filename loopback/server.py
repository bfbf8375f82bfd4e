"""LoopbackDiscord: a Discord-compatible REST v10 + gateway server on 127.0.0.1, for tests and the playground."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

from aiohttp import web

from loopback import payloads
from loopback.channel_messages import ChannelMessages
from loopback.channel_webhooks import ChannelWebhooks
from loopback.commands import CommandRegistry
from loopback.contract import Contract, Violation
from loopback.conversation import Conversation, send_message_create
from loopback.faults import FaultRule
from loopback.gateway import MESSAGE_CONTENT, Gateway, Session
from loopback.interactions import InteractionRecord
from loopback.invocation import Invoker
from loopback.records import CallRecord, Change, MessageRecord
from loopback.rest import API_PREFIX, Router
from loopback.routes import Routes
from loopback.sharding import IDENTIFY_WINDOW, IdentifyRecord, Sharding
from loopback.state import ServerState
from loopback.webhooks import Webhooks
from loopback.wire import Snowflakes
from loopback.world import Channel, ChannelType, Guild, Member, Overwrite, Perm, Role, User, World

log = logging.getLogger("loopback")

MODERATOR_PERMISSIONS = Perm.MANAGE_CHANNELS | Perm.MANAGE_MESSAGES | Perm.MANAGE_THREADS
# The default guild's id timestamp is a multiple of lcm(1..8): it sits on shard 0 for any
# shard_count from 1 to 8, even one set after the world was built.
DEFAULT_GUILD_SHARD_MODULUS = 840


def check_loopback(host: str) -> None:
    """Refuse any address that is not loopback: this server has no authentication worth the name."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"LoopbackDiscord only binds loopback addresses, not {host!r}")


class LoopbackDiscord(Invoker, Conversation):
    """A fake Discord with a configurable world, recording everything the bot does.

    With ``default_world`` (the default) it holds one guild "Test Guild" with a channel ``general``,
    a thread ``side-story`` under it, a "Moderator" role with Manage Channels (and Messages, Threads),
    and three members besides the bot: ``owner``, ``moderator`` and a plain ``member``.

    With ``check_contract`` (the default) every REST call is checked against Discord's published
    OpenAPI spec (:mod:`loopback.contract`) and answered 400 where Discord would refuse it;
    ``contract_violations`` lists those calls.

    Tests act as users through :meth:`invoke` (slash commands), :meth:`click` (buttons on the
    bot's messages) and :meth:`post_message` (messages, replies and attached files, by members or
    other bots: ``add_member(name, bot=True)``), and read back what the bot did from the returned
    records; a thread the bot starts from a message is ``world.channel(message.id)``.

    Sharding (:mod:`loopback.sharding`): ``GET /gateway/bot`` recommends ``shard_count`` shards;
    with more than one, an IDENTIFY must carry ``shard: [id, shard_count]`` (else close 4011, or
    4010 for a bad one), and each session gets only its shard's guilds and their events. IDENTIFYs
    are limited to one per bucket (``shard_id % max_concurrency``) per ``identify_window`` seconds;
    a too-early one gets Invalid Session. ``enforce_identify_limit=None`` enforces that only while
    ``shard_count > 1``. :attr:`identifies` logs every IDENTIFY. The default guild is on shard 0.
    """

    def __init__(
        self,
        *,
        token: str = "loopback-bot-token",
        app_name: str = "Transcord",
        default_world: bool = True,
        compress_gateway: bool = True,
        heartbeat_interval_ms: int = 41250,
        response_deadline: float | None = 3.0,
        check_contract: bool = True,
        shard_count: int = 1,
        max_concurrency: int = 1,
        identify_window: float = IDENTIFY_WINDOW,
        enforce_identify_limit: bool | None = None,
        session_start_total: int = 1000,
    ) -> None:
        ids = Snowflakes()
        self.world = World(ids, app_name=app_name)
        self.state = ServerState(
            ids=ids,
            world=self.world,
            token=token,
            commands=CommandRegistry(ids, self.world.application.id),
            sharding=Sharding(
                shard_count,
                max_concurrency,
                identify_window=identify_window,
                enforce_identify_limit=enforce_identify_limit,
                session_start_total=session_start_total,
            ),
            response_deadline=response_deadline,
            contract=Contract.bundled() if check_contract else None,
        )
        self.gateway = Gateway(
            self.state, heartbeat_interval_ms=heartbeat_interval_ms, compress=compress_gateway
        )
        self.router = Router(self.state)
        Routes(self.state, lambda: self.gateway_url).install(self.router)
        Webhooks(self.state).install(self.router)
        self.channel_webhooks = ChannelWebhooks(self.state)
        self.channel_webhooks.install(self.router)
        ChannelMessages(self.state).install(self.router)
        self.world.listen(
            lambda name, subject: self.gateway.dispatch(name, payloads.event(name, subject, self.world))
        )
        self.state.message_listeners.append(
            lambda m, shard: send_message_create(self.state, self.gateway, m, shard)
        )
        self.state.content_intent = lambda: self.gateway.has_intent(MESSAGE_CONTENT)
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._tls = False
        self.guild: Guild | None = None
        self.general: Channel | None = None
        self.thread: Channel | None = None
        self.moderator_role: Role | None = None
        self.owner: Member | None = None
        self.moderator: Member | None = None
        self.member: Member | None = None
        if default_world:
            self._build_default_world()

    def _build_default_world(self) -> None:
        guild_id = self.state.ids.next_on_shard(0, DEFAULT_GUILD_SHARD_MODULUS)
        self.guild = self.world.add_guild("Test Guild", guild_id=guild_id)
        self.owner = self.world.member(self.guild, self.world.users[self.guild.owner_id])
        self.general = self.add_channel("general", topic="Say hello")
        self.thread = self.add_thread(self.general, "side-story")
        self.moderator_role = self.add_role("Moderator", MODERATOR_PERMISSIONS)
        self.moderator = self.add_member("moderator", [self.moderator_role])
        self.member = self.add_member("member")

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> Self:
        """Bind and serve; with ``ssl_context``, over TLS (https:// and wss://), as Discord does."""
        check_loopback(host)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self.router.handle)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/", self.gateway.handle)  # Discord's own gateway is wss://gateway.discord.gg/
        app.router.add_get("/attachments/{channel}/{file}/{name}", self._attachment)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        self._tls = ssl_context is not None
        await site.start()
        self._host, self._port = host, self._runner.addresses[0][1]
        self.state.base_url = self.url
        self.gateway.url = self.gateway_url
        log.info("loopback Discord on %s (gateway %s)", self.url, self.gateway_url)
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        await self.gateway.drop(1001)
        await asyncio.sleep(0.05)
        await self._runner.cleanup()
        self._runner = None
        log.info("loopback Discord stopped")

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{'https' if self._tls else 'http'}://{host}:{self._port}"

    @property
    def api_base(self) -> str:
        return self.url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/gateway"

    ws_url = gateway_url

    @property
    def contract_violations(self) -> list[Violation]:
        return self.state.contract_violations

    @property
    def token(self) -> str:
        return self.state.token

    @property
    def application_id(self) -> int:
        return self.world.application.id

    @property
    def bot_user(self) -> User:
        return self.world.application.bot

    # -- sharding ---------------------------------------------------------------------------------

    @property
    def sharding(self) -> Sharding:
        return self.state.sharding

    @property
    def shard_count(self) -> int:
        """What ``GET /gateway/bot`` recommends and, above 1, what every IDENTIFY must use."""
        return self.state.sharding.shard_count

    @shard_count.setter
    def shard_count(self, value: int) -> None:
        self.state.sharding.shard_count = value

    @property
    def max_concurrency(self) -> int:
        """IDENTIFY buckets: ``shard_id % max_concurrency``, one IDENTIFY per bucket per window."""
        return self.state.sharding.max_concurrency

    @max_concurrency.setter
    def max_concurrency(self, value: int) -> None:
        self.state.sharding.max_concurrency = value

    def shard_of(self, guild: Guild | int | None) -> int:
        """The shard Discord sends ``guild``'s events to (None, a DM: shard 0)."""
        return self.state.sharding.shard_of(guild.id if isinstance(guild, Guild) else guild)

    def sessions_by_shard(self) -> dict[int, list[Session]]:
        """Gateway sessions (resumable ones included) by shard id."""
        return self.gateway.sessions_by_shard()

    @property
    def identifies(self) -> list[IdentifyRecord]:
        """Every authenticated IDENTIFY, oldest first: when, which shard and bucket, what it got."""
        return self.state.sharding.log

    # -- building the world (``guild`` defaults to the default guild) -----------------------------

    def add_guild(
        self, name: str, *, owner: User | None = None, locale: str = "en-US", shard: int | None = None
    ) -> Guild:
        """A new guild; with ``shard``, one whose id maps to that shard of :attr:`shard_count`."""
        guild_id = None
        if shard is not None:
            if not 0 <= shard < self.shard_count:
                raise ValueError(f"shard must be in [0, {self.shard_count}), got {shard}")
            guild_id = self.state.ids.next_on_shard(shard, self.shard_count)
        return self.world.add_guild(name, owner=owner, locale=locale, guild_id=guild_id)

    def add_channel(
        self,
        name: str,
        *,
        guild: Guild | None = None,
        topic: str | None = None,
        nsfw: bool = False,
        overwrites: list[Overwrite] | None = None,
    ) -> Channel:
        return self.world.add_channel(
            self._guild(guild),
            name,
            type=ChannelType.TEXT,
            topic=topic,
            nsfw=nsfw,
            overwrites=overwrites or (),
        )

    def add_thread(
        self, parent: Channel, name: str, *, owner: User | None = None, private: bool = False
    ) -> Channel:
        return self.world.add_thread(parent, name, owner=owner, private=private)

    def add_role(
        self, name: str, permissions: int = 0, *, guild: Guild | None = None, color: int = 0
    ) -> Role:
        return self.world.add_role(self._guild(guild), name, int(permissions), color=color)

    def add_member(
        self,
        user: User | str,
        roles: list[Role] | tuple[Role, ...] = (),
        *,
        guild: Guild | None = None,
        nick: str | None = None,
        bot: bool = False,
    ) -> Member:
        """``user`` (or a new user of that name) joins the guild; with ``bot`` a new user is a bot
        account, whose messages arrive with ``author.bot`` true."""
        return self.world.add_member(self._guild(guild), user, roles, nick=nick, bot=bot)

    def _guild(self, guild: Guild | None) -> Guild:
        if guild is not None:
            return guild
        if self.guild is not None:
            return self.guild
        if self.world.guilds:
            return next(iter(self.world.guilds.values()))
        raise ValueError("no guild yet: add one with add_guild() first")

    # -- what was recorded ------------------------------------------------------------------------

    @property
    def calls(self) -> list[CallRecord]:
        return self.state.calls

    @property
    def unmatched_calls(self) -> list[CallRecord]:
        """Calls no route answers: the bot used an endpoint this server (and maybe Discord) lacks."""
        return [c for c in self.state.calls if c.route is None and c.fault is None]

    def calls_to(self, method: str | None = None, path_contains: str = "") -> list[CallRecord]:
        return [
            c for c in self.state.calls if (method is None or c.method == method) and path_contains in c.path
        ]

    @property
    def interactions(self) -> list[InteractionRecord]:
        return list(self.state.interactions.values())

    def synced_commands(self, guild: Guild | None = None) -> list[dict[str, Any]]:
        """Commands synced globally, or for ``guild``."""
        return self.state.commands.get(guild.id if guild else None)

    def channel_messages(self, channel: Channel) -> list[MessageRecord]:
        """Non-ephemeral, undeleted messages in a channel, oldest first."""
        return [m for m in self.state.channel_log.get(channel.id, []) if not m.deleted]

    # -- waiting and watching ---------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Change], Any]) -> Callable[[], None]:
        """Call ``callback(change)`` for every change; returns the unsubscribe function."""
        return self.state.bus.subscribe(callback)

    async def changes(self) -> AsyncIterator[Change]:
        async for change in self.state.bus.stream():
            yield change

    def watch(self, task: asyncio.Task[Any]) -> None:
        """Make every wait fail fast if ``task`` (the bot's ``start()``) ends."""
        self.state.bus.watch(task)

    def unwatch(self, task: asyncio.Task[Any]) -> None:
        self.state.bus.unwatch(task)

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
    ) -> None:
        await self.state.bus.wait_until(predicate, timeout, lambda: what)

    async def wait_connected(self, timeout: float = 10.0, *, shard: int | None = None) -> None:
        """Wait until a bot is identified or resumed on a live gateway connection (on ``shard``)."""
        what = "a ready gateway connection" + (f" on shard {shard}" if shard is not None else "")
        await self.wait_for(lambda: self.gateway.connected(shard), timeout, what)

    def grant_command(self, name: str, *to: Role | Member | Guild) -> None:
        """What a server admin does in Server Settings -> Integrations: let these roles, members
        or the whole guild (@everyone) see and use ``/name`` whatever its default permissions."""
        for target in to:
            guild_id = target.id if isinstance(target, Guild) else target.guild_id
            self.state.command_grants.setdefault((guild_id, name), set()).add(target.id)

    # -- faults -----------------------------------------------------------------------------------

    def inject_429(
        self,
        method: str | None = None,
        path_contains: str = "",
        *,
        count: int | None = 1,
        retry_after: float = 0.3,
        is_global: bool = False,
    ) -> FaultRule:
        rule = FaultRule(
            "429", method, path_contains, count, status=429, retry_after=retry_after, is_global=is_global
        )
        return self.state.faults.add(rule)

    def inject_ban(
        self, method: str | None = None, path_contains: str = "", *, count: int | None = 1
    ) -> FaultRule:
        """429s as Cloudflare's edge sends them to a banned IP: discord.py does not retry those."""
        return self.state.faults.add(FaultRule("ban", method, path_contains, count, status=429))

    def inject_error(
        self, status: int = 500, method: str | None = None, path_contains: str = "", *, count: int | None = 1
    ) -> FaultRule:
        if not 500 <= status <= 599:
            raise ValueError(f"inject_error takes a 5xx status, got {status}")
        return self.state.faults.add(FaultRule("error", method, path_contains, count, status=status))

    def inject_delay(
        self, seconds: float, method: str | None = None, path_contains: str = "", *, count: int | None = None
    ) -> FaultRule:
        return self.state.faults.add(FaultRule("delay", method, path_contains, count, delay=seconds))

    def clear_faults(self) -> None:
        self.state.faults.clear()

    async def drop_gateway(self, code: int | None = 4000, *, shard: int | None = None) -> None:
        """Close the bot's gateway connections (``shard``'s only, if given; ``None`` code: cut them
        without a close frame); it should RESUME."""
        await self.gateway.drop(code, shard=shard)

    def refuse_gateway(self, count: int) -> None:
        """Answer the next ``count`` gateway connection attempts with a 503 instead of a websocket."""
        self.gateway.refusals = count

    def send_reconnect(self, *, shard: int | None = None) -> None:
        self.gateway.send_reconnect(shard=shard)

    def invalidate_session(self, resumable: bool = False, *, shard: int | None = None) -> None:
        self.gateway.invalidate_session(resumable, shard=shard)

    def send_raw_dispatch(self, event: str, data: Any, *, shard: int | None = None) -> int:
        """A DISPATCH with any payload at all, intents ignored (fault tests), to the shard its
        ``guild_id`` maps to (or ``shard``); returns how many sessions got it."""
        return self.gateway.dispatch(event, data, respect_intents=False, shard=shard)

    # -- attachments ------------------------------------------------------------------------------

    async def _attachment(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file"]
        file = self.state.files.get(int(file_id)) if file_id.isdigit() else None
        if file is None:
            raise web.HTTPNotFound()
        # Set as a header: a stored type may carry parameters ("text/plain; charset=utf-8").
        return web.Response(
            body=file.data, headers={"Content-Type": file.content_type or "application/octet-stream"}
        )
