"""Sharding: GET /gateway/bot, IDENTIFY's shard and buckets, each session getting only its shard's guilds.

Raw websocket tests check the protocol; real discord.py clients (one AutoShardedBot running both
shards, and two clients each running one, as two bot processes would) check what the library does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from loopback import Guild, IdentifyOutcome, LoopbackDiscord, point_discord_at
from loopback.gateway import Session
from tests.fixtures.loopback_bot import run_bot

pytestmark = pytest.mark.timeout(40)

GUILDS_INTENT = 1
READY, TOO_SOON = IdentifyOutcome.READY, IdentifyOutcome.TOO_SOON


# -- a raw gateway client ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def raw_gateway(server: LoopbackDiscord) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A websocket past HELLO, speaking plain JSON."""
    async with aiohttp.ClientSession() as http, http.ws_connect(server.gateway_url + "?v=10") as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["op"] == 10
        yield ws


async def identify(
    ws: aiohttp.ClientWebSocketResponse, server: LoopbackDiscord, shard: Any = None
) -> dict[str, Any] | int:
    """Send IDENTIFY (``shard=None``: without the field); the first frame back, or the close code."""
    data: dict[str, Any] = {"token": server.token, "intents": GUILDS_INTENT, "properties": {}}
    if shard is not None:
        data["shard"] = shard
    await ws.send_json({"op": 2, "d": data})
    msg = await ws.receive(timeout=5)
    if msg.type is aiohttp.WSMsgType.CLOSE:
        return int(msg.data)
    return json.loads(msg.data)


def sent(session: Session, event: str) -> list[dict[str, Any]]:
    return [frame["d"] for frame in session.sent if frame["t"] == event]


def guild_ids(session: Session, event: str = "GUILD_CREATE") -> list[int]:
    return [int(d["id"]) for d in sent(session, event)]


def only_session(server: LoopbackDiscord, shard: int) -> Session:
    [session] = server.sessions_by_shard()[shard]
    return session


# -- test bots --------------------------------------------------------------------------------------


class Where(commands.Cog):
    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: list[discord.Message] = []

    @app_commands.command(name="where", description="Which bot answered, for which guild")
    async def where(self, interaction: discord.Interaction) -> None:
        cached = interaction.guild_id is not None and interaction.client.get_guild(interaction.guild_id)
        await interaction.response.send_message(
            f"{self.name} guild={interaction.guild_id} cached={bool(cached)}"
        )

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not message.author.bot:
            self.messages.append(message)


class Probe:
    """Shared by the test bots: the /where cog, and a record of discord.py's identify hook calls.

    ``discord_wait``: keep discord.py's own hook (5 s before every IDENTIFY but a client's first);
    otherwise identify at once.
    """

    def init_probe(self, name: str, discord_wait: bool) -> None:
        self.where = Where(name)
        self.discord_wait = discord_wait
        self.identify_calls: list[tuple[int | None, bool]] = []

    async def setup_hook(self) -> None:
        assert isinstance(self, commands.Bot | commands.AutoShardedBot)
        await self.add_cog(self.where)
        await self.tree.sync()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        self.identify_calls.append((shard_id, initial))
        if self.discord_wait:
            await super().before_identify_hook(shard_id, initial=initial)  # type: ignore[misc]


def bot_options() -> dict[str, Any]:
    return {
        "command_prefix": commands.when_mentioned,
        "intents": discord.Intents.default(),
        "allowed_mentions": discord.AllowedMentions.none(),
    }


class ShardedBot(Probe, commands.AutoShardedBot):
    def __init__(
        self,
        name: str,
        *,
        shard_count: int | None = None,
        shard_ids: list[int] | None = None,
        discord_wait: bool = False,
    ) -> None:
        super().__init__(shard_count=shard_count, shard_ids=shard_ids, **bot_options())
        self.init_probe(name, discord_wait)


class OneShardBot(Probe, commands.Bot):
    """A plain client on one shard: what ``Bot(shard_id=..., shard_count=...)`` does."""

    def __init__(self, name: str, *, shard_id: int, shard_count: int, discord_wait: bool = False) -> None:
        super().__init__(shard_id=shard_id, shard_count=shard_count, **bot_options())
        self.init_probe(name, discord_wait)


async def sharded_server(**options: Any) -> tuple[LoopbackDiscord, Guild]:
    """A started server with ``shard_count=2``: the default guild on shard 0, "Second Guild" on 1."""
    server = await LoopbackDiscord(shard_count=2, **options).start()
    second = server.add_guild("Second Guild", shard=1)
    server.add_channel("lobby", guild=second)
    server.add_member(server.member.user if server.member else "member", guild=second)
    return server, second


def channel_of(server: LoopbackDiscord, guild: Guild) -> Any:
    return next(c for c in guild.channels.values() if not c.is_thread)


# -- the world and GET /gateway/bot -----------------------------------------------------------------


def test_guilds_can_be_placed_on_a_chosen_shard() -> None:
    server = LoopbackDiscord(shard_count=3)
    for shard in (0, 1, 2, 1):
        guild = server.add_guild(f"g{shard}", shard=shard)
        assert server.shard_of(guild) == shard == (guild.id >> 22) % 3
    with pytest.raises(ValueError, match="shard must be in"):
        server.add_guild("nowhere", shard=3)
    assert server.shard_of(None) == 0  # DMs and guildless events
    assert server.guild is not None
    for count in range(1, 9):  # the default guild stays on shard 0 whatever the count
        server.shard_count = count
        assert server.shard_of(server.guild) == 0


async def test_gateway_bot_reports_shards_and_the_session_start_limit() -> None:
    async with LoopbackDiscord(shard_count=3, max_concurrency=2) as server:
        headers = {"Authorization": f"Bot {server.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:

            async def gateway_bot() -> dict[str, Any]:
                async with http.get(server.api_base + "/gateway/bot") as resp:
                    assert resp.status == 200
                    return await resp.json()

            first = await gateway_bot()
            assert first["url"] == server.gateway_url and first["shards"] == 3
            limit = first["session_start_limit"]
            assert limit["total"] == limit["remaining"] == 1000 and limit["max_concurrency"] == 2
            assert 0 < limit["reset_after"] <= 24 * 3600 * 1000
            async with raw_gateway(server) as ws:
                ready = await identify(ws, server, [1, 3])
                assert isinstance(ready, dict) and ready["t"] == "READY" and ready["d"]["shard"] == [1, 3]
            server.shard_count, server.max_concurrency = 4, 4  # settable while running
            later = await gateway_bot()
            assert later["shards"] == 4 and later["session_start_limit"]["max_concurrency"] == 4
            assert later["session_start_limit"]["remaining"] == 999


# -- IDENTIFY's shard ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shard", "code"),
    [([2, 2], 4010), ([0, 3], 4010), ([-1, 2], 4010), ([0], 4010), ("0,2", 4010), (None, 4011)],
)
async def test_an_identify_with_a_bad_shard_is_closed_as_discord_does(shard: Any, code: int) -> None:
    async with LoopbackDiscord(shard_count=2) as server:
        async with raw_gateway(server) as ws:
            assert await identify(ws, server, shard) == code
        [record] = server.identifies
        assert record.close_code == code and record.session_id is None
        assert not server.gateway.sessions


async def test_an_unsharded_server_accepts_any_shard_count_a_session_picks() -> None:
    # Discord: num_shards only routes traffic; sessions may use another count than recommended.
    async with LoopbackDiscord() as server:
        assert server.guild is not None
        async with raw_gateway(server) as ws:
            ready = await identify(ws, server, [1, 2])
            assert isinstance(ready, dict) and ready["d"]["shard"] == [1, 2]
            assert ready["d"]["guilds"] == []  # the default guild is on shard 0
        async with raw_gateway(server) as ws:
            ready = await identify(ws, server)
            assert isinstance(ready, dict) and "shard" not in ready["d"]
            assert [g["id"] for g in ready["d"]["guilds"]] == [str(server.guild.id)]


async def test_discord_py_gives_up_on_4010_and_4011() -> None:
    async with LoopbackDiscord(shard_count=2) as server:
        restore = point_discord_at(server.api_base, server.gateway_url)
        try:
            for client, code in [
                (discord.Client(intents=discord.Intents.default(), shard_id=0, shard_count=3), 4010),
                (discord.Client(intents=discord.Intents.default()), 4011),
            ]:
                with pytest.raises(discord.ConnectionClosed) as raised:
                    await asyncio.wait_for(client.start(server.token), timeout=10)
                assert raised.value.code == code
                await client.close()
        finally:
            restore()


# -- routing ----------------------------------------------------------------------------------------


async def test_each_session_gets_only_its_shards_guilds_and_events() -> None:
    server, second = await sharded_server(max_concurrency=2)
    try:
        assert server.guild is not None
        async with raw_gateway(server) as ws0, raw_gateway(server) as ws1:
            ready0 = await identify(ws0, server, [0, 2])
            ready1 = await identify(ws1, server, [1, 2])
            assert isinstance(ready0, dict) and isinstance(ready1, dict)
            assert ready0["d"]["guilds"] == [{"id": str(server.guild.id), "unavailable": True}]
            assert ready1["d"]["guilds"] == [{"id": str(second.id), "unavailable": True}]
            s0, s1 = only_session(server, 0), only_session(server, 1)
            assert guild_ids(s0) == [server.guild.id] and guild_ids(s1) == [second.id]
            late = server.add_guild("Late Guild", shard=1)
            channel = server.add_channel("late", guild=second)
            server.send_raw_dispatch("ENTITLEMENT_CREATE", {"id": "1", "sku_id": "2"})  # no guild
            forced = server.send_raw_dispatch("ENTITLEMENT_CREATE", {"id": "3"}, shard=1)
            assert guild_ids(s0) == [server.guild.id] and guild_ids(s1) == [second.id, late.id]
            assert sent(s0, "CHANNEL_CREATE") == [] and guild_ids(s1, "CHANNEL_CREATE") == [channel.id]
            assert [d["id"] for d in sent(s0, "ENTITLEMENT_CREATE")] == ["1"]
            assert forced == 1 and [d["id"] for d in sent(s1, "ENTITLEMENT_CREATE")] == ["3"]
    finally:
        await server.stop()


async def test_identify_buckets_follow_max_concurrency() -> None:
    async with LoopbackDiscord(shard_count=4, max_concurrency=2, identify_window=1.0) as server:
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(raw_gateway(server)) for _ in range(4)]
            first = [await identify(ws, server, [i, 4]) for i, ws in enumerate(sockets)]
            assert [f["t"] if isinstance(f, dict) else f for f in first[:2]] == ["READY", "READY"]
            # Shards 2 and 3 share buckets 0 and 1 with shards 0 and 1: Invalid Session, not resumable.
            assert [f["op"] if isinstance(f, dict) else f for f in first[2:]] == [9, 9]
            assert all(isinstance(f, dict) and f["d"] is False for f in first[2:])
            await asyncio.sleep(1.0)  # the window, from shards 0 and 1's READY
            again = [await identify(ws, server, [i, 4]) for i, ws in list(enumerate(sockets))[2:]]
            assert [f["t"] if isinstance(f, dict) else f for f in again] == ["READY", "READY"]
            assert sorted(server.sessions_by_shard()) == [0, 1, 2, 3]
        log = server.identifies
        assert [(r.shard_id, r.bucket, r.outcome) for r in log] == [
            (0, 0, READY), (1, 1, READY), (2, 0, TOO_SOON), (3, 1, TOO_SOON), (2, 0, READY), (3, 1, READY),
        ]  # fmt: skip


# -- real discord.py clients --------------------------------------------------------------------------


async def test_an_auto_sharded_bot_runs_both_shards_each_with_its_own_guilds() -> None:
    server, second = await sharded_server(max_concurrency=2)
    bot = ShardedBot("auto")  # no shard_count: discord.py asks GET /gateway/bot
    try:
        assert server.guild is not None and server.general is not None
        async with run_bot(bot, server):
            assert len(server.calls_to("GET", "/gateway/bot")) == 1
            assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
            assert {g.id: g.shard_id for g in bot.guilds} == {server.guild.id: 0, second.id: 1}
            assert all(not g.unavailable for g in bot.guilds)
            s0, s1 = only_session(server, 0), only_session(server, 1)
            assert (s0.shard, s1.shard) == ([0, 2], [1, 2])
            assert guild_ids(s0) == [server.guild.id] and guild_ids(s1) == [second.id]

            handle = await server.invoke("where", channel=channel_of(server, second))
            await handle.wait_content(f"auto guild={second.id} cached=True")
            assert [int(d["id"]) for d in sent(s1, "INTERACTION_CREATE")] == [handle.id]
            assert sent(s0, "INTERACTION_CREATE") == []

            said = await server.post_message(channel_of(server, second), "hello shard 1")
            await server.wait_for(lambda: len(bot.where.messages) == 1, what="on_message")
            assert said.id in [int(d["id"]) for d in sent(s1, "MESSAGE_CREATE")]
            assert sent(s0, "MESSAGE_CREATE") == []

            forced = await server.invoke("where", shard=1)  # the default guild is on shard 0
            await forced.wait_content(f"auto guild={server.guild.id} cached=True")
            assert handle.id != forced.id and forced.id in [
                int(d["id"]) for d in sent(s1, "INTERACTION_CREATE")
            ]

            # One shard drops; it RESUMEs its own session and gets what it missed.
            await server.drop_gateway(None, shard=1)
            missed = await server.invoke("where", channel=channel_of(server, second))
            await missed.wait_content(f"auto guild={second.id} cached=True")
            resumes = [e for e in server.gateway.events if e.kind == "resume"]
            assert [e.session_id for e in resumes] == [s1.id] and "replayed" in resumes[0].detail
            assert [r.outcome for r in server.identifies] == [READY, READY]
    finally:
        await server.stop()


@pytest.mark.parametrize("style", ["auto", "plain"])
async def test_two_clients_each_on_its_own_shard_see_only_their_guild(style: str) -> None:
    server, second = await sharded_server(max_concurrency=2)  # buckets 0 and 1: both start at once

    def client(name: str, shard: int) -> ShardedBot | OneShardBot:
        if style == "auto":
            return ShardedBot(name, shard_count=2, shard_ids=[shard])
        return OneShardBot(name, shard_id=shard, shard_count=2)

    first, other = client("first", 0), client("other", 1)
    try:
        assert server.guild is not None
        async with run_bot(first, server), run_bot(other, server):
            assert [g.id for g in first.guilds] == [server.guild.id]
            assert [g.id for g in other.guilds] == [second.id]
            assert first.identify_calls == [(0, True)] and other.identify_calls == [(1, True)]

            mine = await server.invoke("where", channel=channel_of(server, second))
            await mine.wait_content(f"other guild={second.id} cached=True")
            said = await server.post_message(channel_of(server, second), "for the other one")
            await server.wait_for(lambda: len(other.where.messages) == 1, what="on_message")
            assert first.where.messages == [] and other.where.messages[0].id == said.id

            # Sent to shard 1 whatever its guild: the other client answers for a guild it never saw.
            forced = await server.invoke("where", shard=1)
            await forced.wait_content(f"other guild={server.guild.id} cached=False")
            assert sent(only_session(server, 0), "INTERACTION_CREATE") == []
        assert [r.outcome for r in server.identifies] == [READY, READY]
        assert [r.bucket for r in server.identifies] == [0, 1]
    finally:
        await server.stop()


async def test_discord_py_waits_five_seconds_before_its_second_shard() -> None:
    # max_concurrency 1: one bucket. discord.py ignores max_concurrency and sleeps 5 s in
    # before_identify_hook before every IDENTIFY but the first, so its launch is never refused.
    server, _ = await sharded_server(max_concurrency=1)
    bot = ShardedBot("auto", shard_count=2, discord_wait=True)
    try:
        async with run_bot(bot, server):
            assert bot.identify_calls == [(0, True), (1, False)]
            assert sorted(g.id for g in bot.guilds) == sorted(g.id for g in server.world.guilds.values())
        first, then = server.identifies
        assert (first.shard, first.bucket, first.outcome) == ((0, 2), 0, READY)
        assert (then.shard, then.bucket, then.outcome) == ((1, 2), 0, READY)
        assert then.at - first.at >= 5.0 - 0.01
    finally:
        await server.stop()


async def test_two_clients_in_one_bucket_the_second_is_refused_then_identifies_after_five_seconds() -> None:
    # Two bot processes with shard_ids=[0] and [1]: each one's IDENTIFY is its first (no wait),
    # so with max_concurrency 1 the second comes too soon; discord.py re-identifies after 5 s.
    server, second = await sharded_server(max_concurrency=1)
    first = ShardedBot("first", shard_count=2, shard_ids=[0], discord_wait=True)
    other = ShardedBot("other", shard_count=2, shard_ids=[1], discord_wait=True)
    try:
        async with run_bot(first, server), run_bot(other, server):
            assert [g.id for g in other.guilds] == [second.id]
            assert other.identify_calls == [(1, True), (1, False)]
            handle = await server.invoke("where", channel=channel_of(server, second))
            await handle.wait_content(f"other guild={second.id} cached=True")
        log = server.identifies
        assert [(r.shard_id, r.bucket, r.outcome) for r in log] == [
            (0, 0, READY),
            (1, 0, TOO_SOON),
            (1, 0, READY),
        ]
        assert log[2].at - log[0].at >= 5.0 - 0.01
        assert [e.detail for e in server.gateway.events if e.kind == "invalid_session"] == [
            "identify too soon in bucket 0"
        ]
    finally:
        await server.stop()
