"""A day in the life: the whole bot under a steady crowd and scheduled faults, with nothing lost and
nothing stuck.

    scripts/test-postgres .venv/bin/python -m benchmarks.soak [--minutes 30 | --quick] [--rate 20]
        [--mix generate=5,chat=3,...] [--report docs/soak.md]

Two bot processes (``python bot.py``, SHARD_COUNT=2, one shard each) on one fresh PostgreSQL schema,
reached through a TCP relay the soak can cut, with llama-server in a process of its own as their
remote engine; two guilds on the loopback Discord (one per shard) with several channels and a
thread each. Simulated members send commands (/generate, /chat say, /config set, /settings show,
/mod blocklist add, /story add, /fill, /tokenize, /next), press the replies' buttons, reply to
the bot's answers and @mention it, at ``--rate`` a minute in the ``--mix`` given, for
``--minutes``. Meanwhile faults come one after another (see :data:`FAULTS`): gateway drops
(RESUME, and a fresh IDENTIFY), 429s and 5xx on edits and follow-ups, PostgreSQL gone, a bot
process killed with SIGKILL and started again, llama-server killed and started again, busy
neighbours on the CPU. ``--quick``: 3 minutes, fewer and shorter faults.

At the end it waits for every reply to settle, then reports how each request ended (answered,
refused with a message, failed, never answered, left on "thinking…", answered but never final),
duplicate answers, acknowledged writes the database does not hold, each bot process's memory and
descriptors over time, time to first text and to final before, during and after each fault, time
to recover from each, and the tracebacks in the bots' logs. A table, then one JSON line; a
Markdown report and a PNG chart at ``--report``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from app.environment import DEFAULT_MODEL_GGUF
from benchmarks.measure import cpu, loadavg
from benchmarks.rival import free_port
from benchmarks.shards import TOKEN, bot_env, fresh_schema
from benchmarks.soak_faults import BotProcess, Engine, Neighbours, Relay
from benchmarks.soak_ledger import (
    ANSWERED,
    THINKING,
    UNANSWERED,
    Fault,
    Outcome,
    Sample,
    Shown,
    Stored,
    View,
    Write,
    by_phase,
    classify,
    counts,
    growth,
    lost_writes,
    read_proc,
    tags_in,
    tracebacks,
)
from benchmarks.soak_report import render_table, write_report
from benchmarks.workloads import DEFAULT_MODEL_DIR, PROMPTS
from loopback import Channel, InteractionRecord, LoopbackDiscord, Member, MessageRecord
from loopback.server import MODERATOR_PERMISSIONS

log = logging.getLogger("benchmarks.soak")

DEFAULT_MIX = {
    "generate": 5,
    "chat": 3,
    "mention": 2,
    "reply": 1,
    "button": 1,
    "settings": 1,
    "show": 1,
    "rule": 1,
    "story": 2,
    "fill": 1,
    "tokenize": 1,
    "next": 1,
}
NEEDS_FOOTER = {"generate", "chat", "mention", "reply", "button", "probe"}
TAG = re.compile(r"sk\d{5}x")
START_S = 180.0
SETTLE_QUIET_S = 5.0


# -- the world --------------------------------------------------------------------------------------


@dataclass
class Place:
    guild: int  # shard
    channel: Channel
    members: list[Member]
    moderator: Member


@dataclass
class Request:
    n: int
    kind: str
    shard: int
    sent: float  # time.monotonic()
    user: Member
    channel: Channel
    record: InteractionRecord | None = None
    posted: MessageRecord | None = None  # a member's message (mentions, replies)
    write: Write | None = None
    shard_down: bool = False
    outcome: Outcome | None = None
    error: str = ""


@dataclass
class Soak:
    server: LoopbackDiscord
    places: list[Place]
    stories: dict[int, Place]
    probes: dict[int, Place]
    bots: list[BotProcess]
    engine: Engine
    relay: Relay
    neighbours: Neighbours
    mix: dict[str, int]
    max_new_tokens: int
    began: float = field(default_factory=time.monotonic)
    requests: list[Request] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    setting_busy: set[int] = field(default_factory=set)
    story_players: dict[int, list[Member]] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    rng: random.Random = field(default_factory=lambda: random.Random(28))
    down: set[int] = field(default_factory=set)  # shards with no process right now

    def now(self) -> float:
        return time.monotonic() - self.began

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- members acting -----------------------------------------------------------------------------

    def _request(self, kind: str, place: Place, user: Member) -> Request:
        request = Request(len(self.requests), kind, place.guild, time.monotonic(), user, place.channel)
        request.shard_down = place.guild in self.down
        self.requests.append(request)
        return request

    def _tag(self, request: Request) -> str:
        return f"sk{request.n:05d}x"

    async def act(self) -> None:
        kinds = list(self.mix)
        kind = self.rng.choices(kinds, weights=[self.mix[k] for k in kinds])[0]
        place = self.rng.choice(self.places)
        user = self.rng.choice(place.members)
        try:
            await getattr(self, f"_do_{kind}")(place, user)
        except Exception as exc:  # a soak's own failure to send counts, but never stops the soak
            log.warning("sending %s failed: %r", kind, exc)

    async def _invoke(
        self, kind: str, place: Place, user: Member, command: str, options: dict[str, Any]
    ) -> Request:
        request = self._request(kind, place, user)
        try:
            request.record = await self.server.invoke(command, options, channel=place.channel, user=user)
        except Exception as exc:
            request.error = repr(exc)
        return request

    async def _do_generate(self, place: Place, user: Member) -> None:
        prompt = self.rng.choice(PROMPTS)
        await self._invoke(
            "generate", place, user, "generate", {"prompt": prompt, "max_new_tokens": self.max_new_tokens}
        )

    async def _do_chat(self, place: Place, user: Member) -> None:
        request = self._request("chat", place, user)
        tag = self._tag(request)
        request.write = self._write("turn", (place.channel.id,), tag, request.sent)
        message = f"{tag} {self.rng.choice(PROMPTS)}"
        try:
            request.record = await self.server.invoke(
                "chat say", {"message": message}, channel=place.channel, user=user
            )
        except Exception as exc:
            request.error = repr(exc)

    async def _do_mention(self, place: Place, user: Member, reply_to: MessageRecord | None = None) -> None:
        request = self._request("reply" if reply_to else "mention", place, user)
        tag = self._tag(request)
        request.write = self._write("turn", (place.channel.id,), tag, request.sent)
        bot = self.server.bot_user.id
        text = f"{tag} {self.rng.choice(PROMPTS)}"
        content = text if reply_to is not None else f"<@{bot}> {text}"
        try:
            request.posted = await self.server.post_message(
                place.channel, content, user=user, reply_to=reply_to
            )
        except Exception as exc:
            request.error = repr(exc)

    async def _do_reply(self, place: Place, user: Member) -> None:
        done = self._answered(place, {"generate", "chat"})
        if done is None or done.record is None or done.record.original is None:
            await self._do_mention(place, user)
            return
        await self._do_mention(place, user, reply_to=done.record.original)

    async def _do_button(self, place: Place, user: Member) -> None:
        done = self._answered(place, {"generate", "chat"})
        if done is None or done.record is None or done.record.original is None:
            await self._do_generate(place, user)
            return
        message = done.record.original
        wanted = self.rng.choice([":again:", ":more:"])
        ids = [c for c in _custom_ids(message.latest.components) if ":stop:" not in c[0] and not c[1]]
        pick = [c for c, _ in ids if wanted in c] or [c for c, _ in ids]
        if not pick:
            await self._do_generate(place, user)
            return
        request = self._request("button", place, done.user)
        try:
            request.record = await self.server.click(message, pick[0], user=done.user)
        except Exception as exc:
            request.error = repr(exc)

    async def _do_settings(self, place: Place, user: Member) -> None:
        channel = place.channel
        if channel.id in self.setting_busy:  # one write to a setting at a time, so their order is known
            await self._do_show(place, user)
            return
        self.setting_busy.add(channel.id)
        request = self._request("settings", place, place.moderator)
        value = round(0.3 + 0.01 * (request.n % 60), 2)
        request.write = self._write("setting", (channel.id, "temperature"), value, request.sent)
        try:
            request.record = await self.server.invoke(
                "config set", {"temperature": value}, channel=channel, user=place.moderator
            )
            await request.record.wait_final(120, quiet=3.0)
        except Exception as exc:
            request.error = repr(exc)
        finally:
            self.setting_busy.discard(channel.id)

    async def _do_show(self, place: Place, user: Member) -> None:
        await self._invoke("show", place, user, "settings show", {})

    async def _do_rule(self, place: Place, user: Member) -> None:
        request = self._request("rule", place, place.moderator)
        tag = self._tag(request)
        request.write = self._write("rule", (place.channel.id,), tag, request.sent)
        try:
            request.record = await self.server.invoke(
                "mod blocklist add", {"phrase": tag}, channel=place.channel, user=place.moderator
            )
        except Exception as exc:
            request.error = repr(exc)

    async def _do_story(self, place: Place, user: Member) -> None:
        story = self.stories[place.guild]
        players = self.story_players.get(place.guild) or story.members
        user = self.rng.choice(players)
        request = self._request("story", story, user)
        tag = self._tag(request)
        request.write = self._write("story", (story.channel.id,), tag, request.sent)
        try:
            request.record = await self.server.invoke(
                "story add", {"text": f"{tag} and then the wind rose."}, channel=story.channel, user=user
            )
        except Exception as exc:
            request.error = repr(exc)

    async def _do_fill(self, place: Place, user: Member) -> None:
        await self._invoke("fill", place, user, "fill", {"text": "The capital of France is [MASK]."})

    async def _do_tokenize(self, place: Place, user: Member) -> None:
        await self._invoke("tokenize", place, user, "tokenize", {"text": self.rng.choice(PROMPTS)})

    async def _do_next(self, place: Place, user: Member) -> None:
        await self._invoke("next", place, user, "next", {"prompt": self.rng.choice(PROMPTS)})

    def _write(self, kind: str, key: tuple[Any, ...], value: Any, sent: float) -> Write:
        write = Write(kind, key, value, sent)
        self.writes.append(write)
        return write

    def _answered(self, place: Place, kinds: set[str]) -> Request | None:
        """A recent answered request of ``kinds`` in ``place``, whose reply a member may act on."""
        recent = [
            r
            for r in self.requests[-200:]
            if r.kind in kinds
            and r.channel is place.channel
            and r.record is not None
            and _has_footer(r.record)
        ]
        return self.rng.choice(recent) if recent else None

    # -- outcomes -----------------------------------------------------------------------------------

    def view(self, request: Request) -> View:
        if request.record is not None:
            return view_of_record(request.record)
        if request.posted is not None:
            return view_of_replies(self.server, request.posted)
        return View(False)

    def settle(self) -> None:
        for request in self.requests:
            request.outcome = classify(
                self.view(request), request.sent, needs_footer=request.kind in NEEDS_FOOTER
            )
            if request.write is not None:
                request.write.acked = request.outcome.status == ANSWERED and request.outcome.final

    def all_ended(self) -> bool:
        """Every request was answered in full, refused or failed (none still being written)."""
        for request in self.requests:
            outcome = classify(self.view(request), request.sent, needs_footer=request.kind in NEEDS_FOOTER)
            if outcome.status == THINKING or (outcome.status == ANSWERED and not outcome.final):
                return False
        return True

    def thinking(self) -> int:
        return sum(1 for r in self.requests if self.view(r).thinking)

    # -- probes: how long until each shard answers again ----------------------------------------------

    async def probe(self, shard: int, timeout: float) -> float | None:
        """Seconds from now until a /generate on ``shard`` is answered in full, trying every 2 s."""
        place = self.probes[shard]
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            request = self._request("probe", place, place.members[0])
            try:
                request.record = await self.server.invoke(
                    "generate",
                    {"prompt": "Hello", "max_new_tokens": 4},
                    channel=place.channel,
                    user=place.members[0],
                )
                await request.record.wait_for(lambda r: _has_footer(r) or _ended(r), 15)
                if _has_footer(request.record):
                    return time.monotonic() - start
            except Exception:
                pass
            await asyncio.sleep(2.0)
        return None

    # -- watching the processes -------------------------------------------------------------------------

    async def sample(self, period: float) -> None:
        while True:
            for bot in self.bots:
                if bot.alive and bot.process is not None:
                    read = read_proc(bot.process.pid)
                    if read is not None:
                        key = f"shard {bot.shard} pid {bot.process.pid}"
                        self.samples.setdefault(key, []).append(Sample(self.now(), *read))
            await asyncio.sleep(period)


def _custom_ids(components: Sequence[dict[str, Any]]) -> list[tuple[str, bool]]:
    found: list[tuple[str, bool]] = []
    for component in components:
        if "custom_id" in component:
            found.append((str(component["custom_id"]), bool(component.get("disabled"))))
        found += _custom_ids(component.get("components") or [])
    return found


def _has_footer(record: InteractionRecord) -> bool:
    from benchmarks.soak_ledger import FOOTER

    return any(FOOTER.search(m.content) for m in record.messages if not m.deleted)


def _ended(record: InteractionRecord) -> bool:
    """Answered in full, or refused or failed with a message in place (not a partial answer)."""
    outcome = classify(view_of_record(record), record.sent_at, needs_footer=True)
    return outcome.final or outcome.status not in (ANSWERED, UNANSWERED, THINKING)


def view_of_record(record: InteractionRecord) -> View:
    messages = []
    for message in record.messages:
        versions = (
            message.versions[record.response_version :] if message is record.original else message.versions
        )
        states = [Shown(v.at, v.text, v.loading) for v in versions]
        if message.deleted and states:
            states.append(Shown(states[-1].at, "", deleted=True))
        messages.append(tuple(states))
    return View(record.responded, tuple(messages))


def view_of_replies(server: LoopbackDiscord, posted: MessageRecord) -> View:
    bot = server.bot_user.id
    found = [m for m in server.replies_to(posted) if m.author_id == bot]
    thread = server.world.channel(posted.id)
    if thread is not None:
        found += [m for m in server.channel_messages(thread) if m.author_id == bot]
    messages = []
    for message in found:
        states = [Shown(v.at, v.text, v.loading) for v in message.versions]
        if message.deleted and states:
            states.append(Shown(states[-1].at, "", deleted=True))
        messages.append(tuple(states))
    return View(bool(found), tuple(messages))


# -- faults --------------------------------------------------------------------------------------------


async def gateway_resume(soak: Soak, length: float) -> str:
    await soak.server.drop_gateway(4000, shard=0)
    await soak.server.wait_connected(60, shard=0)
    return "shard 0's gateway closed with 4000; the bot RESUMEs"


async def gateway_identify(soak: Soak, length: float) -> str:
    soak.server.invalidate_session(False, shard=1)
    await asyncio.sleep(1.0)
    await soak.server.wait_connected(60, shard=1)
    return "shard 1's session invalidated (not resumable); the bot IDENTIFYs afresh"


async def rest_errors(soak: Soak, length: float) -> str:
    faults = soak.server.state.faults
    end = time.monotonic() + length
    while time.monotonic() < end:
        faults.rules[:] = [r for r in faults.rules if not r.exhausted]
        soak.server.inject_429("PATCH", "/messages/", count=2, retry_after=0.5)
        soak.server.inject_429("POST", "/webhooks/", count=1, retry_after=0.5)
        soak.server.inject_error(500, "PATCH", "/messages/", count=1)
        soak.server.inject_error(502, "POST", "/webhooks/", count=1)
        await asyncio.sleep(1.0)
    soak.server.clear_faults()
    return "each second: two 429s and a 500 on edits, a 429 and a 502 on follow-ups"


async def database_gone(soak: Soak, length: float) -> str:
    await soak.relay.close()
    await asyncio.sleep(length)
    await soak.relay.open()
    return f"PostgreSQL unreachable for {length:.0f} s (every connection cut, new ones refused)"


async def shard_killed(soak: Soak, length: float) -> str:
    bot = soak.bots[1]
    soak.down.add(1)
    await bot.kill()
    await asyncio.sleep(min(length, 5.0))
    before = len(soak.server.identifies)
    await bot.start()
    try:
        await soak.server.wait_for(
            lambda: (
                any(r.shard_id == 1 and r.session_id for r in soak.server.identifies[before:])
                and soak.server.gateway.connected(1)
            ),
            START_S,
            "shard 1's new process",
        )
    finally:
        soak.down.discard(1)
    return "shard 1's process killed with SIGKILL, started again 5 s later"


async def engine_killed(soak: Soak, length: float) -> str:
    soak.engine.kill()
    await asyncio.sleep(min(length, 5.0))
    await soak.engine.start()
    return "llama-server killed with SIGKILL, started again 5 s later on the same port"


async def cpu_taken(soak: Soak, length: float) -> str:
    count = os.cpu_count() or 2
    soak.neighbours.start(count)
    try:
        await asyncio.sleep(length)
    finally:
        soak.neighbours.stop()
    return f"{count} busy processes (one per core) for {length:.0f} s"


FaultStep = Callable[[Soak, float], Awaitable[str]]
FAULTS: dict[str, FaultStep] = {
    "gateway RESUME": gateway_resume,
    "gateway IDENTIFY": gateway_identify,
    "REST 429/5xx": rest_errors,
    "PostgreSQL gone": database_gone,
    "shard kill -9": shard_killed,
    "engine kill -9": engine_killed,
    "CPU neighbours": cpu_taken,
}
QUICK_FAULTS = ("gateway RESUME", "REST 429/5xx", "PostgreSQL gone", "shard kill -9", "engine kill -9")


async def run_faults(
    soak: Soak, names: Sequence[str], first_at: float, spacing: float, length: float
) -> None:
    for i, name in enumerate(names):
        await asyncio.sleep(max(0.0, first_at + i * spacing - soak.now()))
        start = soak.now()
        log.info("fault: %s", name)
        try:
            detail = await FAULTS[name](soak, length)
        except Exception as exc:
            detail = f"the fault itself failed: {exc!r}"
            log.warning("fault %s failed: %r", name, exc)
        end = soak.now()
        recovered = await asyncio.gather(soak.probe(0, 120), soak.probe(1, 120))
        known = [r for r in recovered if r is not None]
        soak.faults.append(
            Fault(name, start, end, detail, max(known) if len(known) == len(recovered) else None)
        )
        log.info("fault %s over after %.1f s; recovered in %s s", name, end - start, recovered)


async def load(soak: Soak, rate_per_min: float, until: float) -> None:
    while soak.now() < until:
        soak.spawn(soak.act())
        await asyncio.sleep(soak.rng.expovariate(rate_per_min / 60.0))


# -- setting up ------------------------------------------------------------------------------------------


def build_world(
    server: LoopbackDiscord, channels: int, members: int
) -> tuple[list[Place], dict[int, Place], dict[int, Place]]:
    assert server.guild is not None and server.moderator is not None and server.general and server.thread
    second = server.add_guild("Second Guild", shard=1)
    role = server.add_role("Moderator", MODERATOR_PERMISSIONS, guild=second)
    moderators = {0: server.moderator, 1: server.add_member("moderator-b", [role], guild=second)}
    guilds = {0: server.guild, 1: second}
    crowd = {g: [server.add_member(f"m{g}-{i}", guild=guilds[g]) for i in range(members)] for g in (0, 1)}
    places: list[Place] = []
    for g in (0, 1):
        chans = [server.add_channel(f"talk-{g}-{i}", guild=guilds[g]) for i in range(channels)]
        chans.append(server.add_thread(chans[0], f"thread-{g}"))
        places += [Place(g, c, crowd[g], moderators[g]) for c in chans]
    stories = {
        g: Place(g, server.add_channel(f"story-{g}", guild=guilds[g]), crowd[g], moderators[g])
        for g in (0, 1)
    }
    probes = {
        g: Place(g, server.add_channel(f"probe-{g}", guild=guilds[g]), crowd[g][:1], moderators[g])
        for g in (0, 1)
    }
    return places, stories, probes


async def open_stories(soak: Soak) -> None:
    for g, place in soak.stories.items():
        starter = place.members[0]
        started = await soak.server.invoke(
            "story start",
            {"premise": "A lighthouse keeper and a storm", "turns": "free", "max_players": 12, "length": 60},
            channel=place.channel,
            user=starter,
        )
        await started.wait_for(_has_footer, 180)
        players = [starter]
        for member in place.members[1:6]:
            joined = await soak.server.invoke("story join", channel=place.channel, user=member)
            await joined.wait_final(60, quiet=1.0)
            players.append(member)
        soak.story_players[g] = players


async def stored(schema_url: str) -> Stored:
    parts = urlsplit(schema_url)
    schema = dict(q.split("=", 1) for q in parts.query.split("&") if "=" in q).get("search_path", "public")
    plain = urlunsplit(
        parts._replace(query="&".join(q for q in parts.query.split("&") if not q.startswith("search_path=")))
    )
    conn = await asyncpg.connect(plain, server_settings={"search_path": schema})
    try:
        out = Stored()
        for row in await conn.fetch("SELECT scope_id, key, value FROM settings WHERE scope = 'channel'"):
            out.settings[(int(row["scope_id"]), row["key"])] = row["value"]
        rules = [r["phrase"] for r in await conn.fetch("SELECT phrase FROM blocked_phrases")]
        turns = [
            r["text"] for r in await conn.fetch("SELECT text FROM conversation_turns WHERE role = 'user'")
        ]
        story = [r["text"] for r in await conn.fetch("SELECT text FROM story_turns WHERE kind = 'player'")]
        out.tags = {"rule": tags_in(rules, TAG), "turn": tags_in(turns, TAG), "story": tags_in(story, TAG)}
        return out
    finally:
        await conn.close()


# -- the run --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    minutes: float
    rate: float
    mix: dict[str, int]
    faults: tuple[str, ...]
    fault_s: float
    warm_up_s: float
    max_new_tokens: int
    channels: int
    members: int
    slots: int
    threads: int
    window_s: float
    drain_s: float


async def run(settings: Settings, database: str, work: Path) -> dict[str, Any]:
    gguf = DEFAULT_MODEL_DIR.parent / DEFAULT_MODEL_GGUF
    if not gguf.exists():
        raise SystemExit(f"{gguf} is missing: run `make setup` first")
    relay = await Relay.before(database)
    engine = Engine(
        gguf, free_port(), slots=settings.slots, threads=settings.threads, log=work / "engine.txt"
    )
    neighbours = Neighbours()
    await engine.start()
    try:
        async with (
            fresh_schema(database) as schema,
            LoopbackDiscord(token=TOKEN, shard_count=2, max_concurrency=2) as server,
        ):
            places, stories, probes = build_world(server, settings.channels, settings.members)
            env = {
                **bot_env(server, relay.route(schema), engine.url, settings.max_new_tokens),
                "SHUTDOWN_GRACE_S": "2",
            }
            bots = [BotProcess(i, work / f"shard-{i}", env) for i in (0, 1)]
            soak = Soak(
                server,
                places,
                stories,
                probes,
                bots,
                engine,
                relay,
                neighbours,
                settings.mix,
                settings.max_new_tokens,
            )
            try:
                return await _soak(soak, settings, schema)
            finally:
                neighbours.stop()
                for bot in bots:
                    await bot.stop()
    finally:
        engine.stop()
        await relay.close()


async def _soak(soak: Soak, settings: Settings, schema: str) -> dict[str, Any]:
    server = soak.server
    for bot in soak.bots:
        await bot.start()

    def ready() -> bool:
        for bot in soak.bots:
            if not bot.alive:
                raise RuntimeError(f"a bot process exited; see {bot.runs[-1]}")
        return all(server.gateway.connected(i) for i in (0, 1))

    await server.wait_for(ready, START_S, "both shard processes")
    log.info("both shards up; opening the stories")
    await open_stories(soak)
    for g in (0, 1):
        if await soak.probe(g, 120) is None:
            raise RuntimeError(f"shard {g} never answered a /generate")
    soak.requests.clear()  # the set-up is not the soak
    soak.writes[:] = [w for w in soak.writes if False]
    soak.began = time.monotonic()
    total = settings.minutes * 60
    sampler = asyncio.create_task(soak.sample(5.0))
    spacing = (total - settings.warm_up_s) / max(1, len(settings.faults))
    faults = asyncio.create_task(
        run_faults(soak, settings.faults, settings.warm_up_s, spacing, settings.fault_s)
    )
    log.info(
        "soak: %.1f min at %.0f requests/min; faults %s", settings.minutes, settings.rate, settings.faults
    )
    await load(soak, settings.rate, total)
    log.info("load over after %.0f s; waiting for the faults' recovery and every reply to settle", soak.now())
    await faults
    drain_start = time.monotonic()
    while time.monotonic() - drain_start < settings.drain_s:
        if not soak.tasks and server.quiet_for() >= SETTLE_QUIET_S and soak.all_ended():
            break
        await asyncio.sleep(1.0)
    await asyncio.sleep(3.0)  # writes that follow an answer (a conversation's turns) land
    soak.settle()
    sampler.cancel()
    db = await stored(schema)
    return figures(soak, settings, db)


def figures(soak: Soak, settings: Settings, db: Stored) -> dict[str, Any]:
    requests = [r for r in soak.requests if r.kind != "probe"]
    outcomes = [r.outcome for r in requests if r.outcome is not None]
    down = [r for r in requests if r.shard_down and r.outcome and r.outcome.status == UNANSWERED]
    tally = dict(counts(o.status for o in outcomes))
    never_final = sum(
        1 for r in requests if r.outcome and r.outcome.status == ANSWERED and not r.outcome.final
    )
    lost = lost_writes(soak.writes, db)
    timed = [
        (r.sent - soak.began, r.outcome.first_text_s, r.outcome.final_s)
        for r in requests
        if r.outcome and r.outcome.status == ANSWERED and r.kind in NEEDS_FOOTER
    ]
    logs = {
        str(p): tracebacks(p.read_text(errors="replace")) for bot in soak.bots for p in bot.runs if p.exists()
    }
    memory = {key: growth(samples, settings.warm_up_s) for key, samples in soak.samples.items()}
    by_kind: dict[str, dict[str, int]] = {}
    for r in requests:
        if r.outcome:
            by_kind.setdefault(r.kind, dict(counts([])))[r.outcome.status] += 1
    return {
        "cpu": cpu(),
        "cores": os.cpu_count(),
        "loadavg_end": loadavg(),
        "settings": {k: v for k, v in settings.__dict__.items()},
        "sent": len(requests),
        "send_errors": sum(1 for r in requests if r.error),
        "answered": tally[ANSWERED],
        "refused": tally["refused"],
        "failed": tally["failed"],
        "unanswered": tally[UNANSWERED],
        "unanswered_shard_down": len(down),
        "thinking": tally[THINKING],
        "never_final": never_final,
        "duplicates": sum(o.duplicates for o in outcomes),
        "writes_acked": sum(1 for w in soak.writes if w.acked),
        "writes_lost": len(lost),
        "lost": [_lost(w, soak) for w in lost][:20],
        "by_kind": by_kind,
        "latency": by_phase(timed, soak.faults, settings.window_s),
        "overall_first": _q([t[1] for t in timed if t[1] is not None]),
        "overall_final": _q([t[2] for t in timed if t[2] is not None]),
        "faults": [f.__dict__ for f in soak.faults],
        "memory": memory,
        "samples": {k: [s.__dict__ for s in v] for k, v in soak.samples.items()},
        "timed": timed,
        "tracebacks": {k: v for k, v in logs.items() if v},
        "traceback_count": sum(len(v) for v in logs.values()),
        "failures": [
            {
                "kind": r.kind,
                "status": r.outcome.status,
                "text": r.outcome.text[-300:],
                "at": round(r.sent - soak.began, 1),
            }
            for r in requests
            if (r.outcome and r.outcome.status in ("failed", THINKING))
            or (r.outcome and r.outcome.status == UNANSWERED and not r.shard_down)
        ][:30],
    }


def _lost(write: Write, soak: Soak) -> dict[str, Any]:
    """A lost write and what its member saw, to tell why."""
    asked = next((r for r in soak.requests if r.write is write), None)
    seen = asked.outcome.text[-300:] if asked and asked.outcome else ""
    at = round(write.sent_at - soak.began, 1)
    return {"kind": write.kind, "key": list(write.key), "value": write.value, "at": at, "shown": seen}


def _q(values: Sequence[float]) -> dict[str, float | None]:
    from benchmarks.soak_ledger import quantiles

    return quantiles(values)


def parse_mix(text: str | None) -> dict[str, int]:
    if not text:
        return dict(DEFAULT_MIX)
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in DEFAULT_MIX:
            raise SystemExit(f"unknown action {name!r} in --mix; known: {', '.join(DEFAULT_MIX)}")
        mix[name.strip()] = int(weight or 1)
    return mix


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="3 minutes, fewer and shorter faults")
    parser.add_argument("--rate", type=float, default=None, help="requests a minute (20; quick 15)")
    parser.add_argument("--mix", default=None, help="weights, e.g. generate=5,chat=3 (the rest 0)")
    parser.add_argument("--faults", default=None, help="comma-separated fault names, or 'none'")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--report", type=Path, default=Path("docs/soak.md"))
    args = parser.parse_args(argv)
    quick = args.quick
    minutes = 3.0 if quick else args.minutes
    if args.faults == "none":
        names: tuple[str, ...] = ()
    elif args.faults:
        names = tuple(n.strip() for n in args.faults.split(","))
        unknown = [n for n in names if n not in FAULTS]
        if unknown:
            raise SystemExit(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
    else:
        names = QUICK_FAULTS if quick else tuple(FAULTS)
    settings = Settings(
        minutes=minutes,
        rate=args.rate or (15.0 if quick else 20.0),
        mix=parse_mix(args.mix),
        faults=names,
        fault_s=15.0 if quick else 60.0,
        warm_up_s=20.0 if quick else 90.0,
        max_new_tokens=args.max_new_tokens,
        channels=3,
        members=8,
        slots=8,
        threads=2,
        window_s=20.0 if quick else 60.0,
        drain_s=180.0,
    )
    database = os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if not database:
        why = os.environ.get("TEST_DATABASE_UNAVAILABLE", "no DATABASE_URL or TEST_DATABASE_URL")
        print(f"benchmarks.soak needs a PostgreSQL server: {why}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("loopback").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="transcord-soak-") as folder:
        work = Path(os.environ.get("SOAK_KEEP", folder))
        work.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(run(settings, database, work))
    print(render_table(report))
    write_report(report, args.report)
    slim = {k: v for k, v in report.items() if k not in ("samples", "timed")}
    print(json.dumps(slim))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
