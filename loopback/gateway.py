"""The gateway half: HELLO, heartbeats, IDENTIFY -> READY + GUILD_CREATE, RESUME with replay, and faults.

A :class:`Session` outlives its websocket: dispatches sent while the bot is disconnected are kept
and replayed when it RESUMEs, as Discord does. Each connection writes through one queue, so frames
go out in exactly the order they were produced (zlib-stream compression needs that too).

Sessions are sharded as on Discord (:mod:`loopback.sharding`): each gets the guilds of its own
``[shard_id, num_shards]`` (a session without one is shard 0 of 1), and guildless events go to shard 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from loopback import payloads
from loopback.records import Change
from loopback.sharding import IdentifyOutcome, guild_of, shard_for
from loopback.state import ServerState

log = logging.getLogger("loopback.gateway")

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE, RESUME, RECONNECT = 0, 1, 2, 3, 4, 6, 7
REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 8, 9, 10, 11
# A heartbeat's ACK comes a network's round trip later, as Discord's does. discord.py notes when
# it sent a heartbeat only once its send returned; an ACK read before that (possible only over
# loopback) is timed against the heartbeat before, and logs "Can't keep up ... 41.2s behind".
ACK_DELAY_S = 0.05
SESSION_ENDING_CLOSES = (1000, 1001)  # a client closing with these ends its session (Discord docs)

GUILDS, GUILD_MEMBERS, GUILD_MESSAGES = 1 << 0, 1 << 1, 1 << 9
DIRECT_MESSAGES, MESSAGE_CONTENT = 1 << 12, 1 << 15  # MESSAGE_CONTENT is privileged
EVENT_INTENTS = {  # Discord sends these only to sessions that identified with the intent
    "GUILD_CREATE": GUILDS,
    "CHANNEL_CREATE": GUILDS,
    "THREAD_CREATE": GUILDS,
    "GUILD_ROLE_CREATE": GUILDS,
    "GUILD_MEMBER_ADD": GUILD_MEMBERS,
    "MESSAGE_CREATE": GUILD_MESSAGES,  # in a guild; in a DM it is DIRECT_MESSAGES
}


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    request: web.Request
    compressor: Any = None  # zlib compressobj when the client asked for zlib-stream
    outbox: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    session: Session | None = None
    ready: bool = False  # READY or RESUMED is queued: dispatches may flow
    heartbeats: int = 0
    closed_by_server: int | None = None  # our close code; the client's echo of it says nothing

    def send(self, payload: dict[str, Any]) -> None:
        self.outbox.put_nowait(("frame", json.dumps(payload)))

    def close(self, code: int) -> None:
        self.closed_by_server = code
        self.outbox.put_nowait(("close", code))


@dataclass(eq=False)
class Session:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    conn: Connection | None = None

    @property
    def shard_id(self) -> int:
        return self.shard[0] if self.shard else 0

    @property
    def shard_count(self) -> int:
        return self.shard[1] if self.shard else 1

    def handles(self, guild_id: int | None) -> bool:
        """Whether Discord routes events about ``guild_id`` (None: guildless) to this session."""
        return shard_for(guild_id, self.shard_count) == self.shard_id

    def wants(self, event: str) -> bool:
        needed = EVENT_INTENTS.get(event, 0)
        return self.intents & needed == needed

    def dispatch(self, event: str, data: Any) -> None:
        self.seq += 1
        frame = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.sent.append(frame)
        if self.conn is not None and self.conn.ready:
            self.conn.send(frame)


@dataclass(frozen=True)
class GatewayEvent:
    kind: str  # connect, identify, resume, invalid_session, reconnect, drop, close
    session_id: str | None
    detail: str = ""


class Gateway:
    def __init__(
        self, state: ServerState, *, heartbeat_interval_ms: int = 41250, compress: bool = True
    ) -> None:
        self.state = state
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.compress = compress
        self.url = ""  # set by the server once bound; READY's resume_gateway_url
        self.refusals = 0  # the next connection attempts answered 503, as a gateway in trouble does
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.events: list[GatewayEvent] = []
        self.received: list[dict[str, Any]] = []  # every frame the client sent, heartbeats included

    # -- what tests drive -------------------------------------------------------------------------

    def dispatch(
        self,
        event: str,
        data: Any,
        *,
        respect_intents: bool = True,
        intent: int | None = None,
        shape: Callable[[Session, Any], Any] | None = None,
        shard: int | None = None,
    ) -> int:
        """Send a DISPATCH to every session that wants it (queued for replay where disconnected).

        It goes to the sessions of the shard its guild maps to (:func:`~loopback.sharding.guild_of`;
        guildless: shard 0), or with ``shard`` to that shard's sessions whatever its guild.
        ``intent`` overrides the one the event needs (:data:`EVENT_INTENTS`); ``shape(session, data)``
        gives each session its own payload (what its intents let it read). Returns how many
        sessions got it; ``respect_intents=False`` ignores intents.
        """
        targets = self.targets(event, data, respect_intents=respect_intents, intent=intent, shard=shard)
        for session in targets:
            session.dispatch(event, shape(session, data) if shape is not None else data)
        return len(targets)

    def targets(
        self,
        event: str,
        data: Any,
        *,
        respect_intents: bool = True,
        intent: int | None = None,
        shard: int | None = None,
    ) -> list[Session]:
        """The sessions :meth:`dispatch` would send this event to."""
        needed = EVENT_INTENTS.get(event, 0) if intent is None else intent
        guild_id = guild_of(event, data)
        return [
            s
            for s in self.sessions.values()
            if (s.handles(guild_id) if shard is None else s.shard_id == shard)
            and (not respect_intents or s.intents & needed == needed)
        ]

    def connected(self, shard: int | None = None) -> bool:
        """Whether a session (of ``shard``, if given) is identified or resumed on a live connection."""
        return any(c.ready for c in self._connections(shard))

    def sessions_by_shard(self) -> dict[int, list[Session]]:
        """The live sessions by shard id, in shard order."""
        by_shard: dict[int, list[Session]] = {}
        for session in sorted(self.sessions.values(), key=lambda s: s.shard_id):
            by_shard.setdefault(session.shard_id, []).append(session)
        return by_shard

    def _connections(self, shard: int | None) -> list[Connection]:
        return [
            c
            for c in self.connections
            if shard is None or (c.session is not None and c.session.shard_id == shard)
        ]

    def has_intent(self, intent: int) -> bool:
        """Whether any live session identified with ``intent``."""
        return any(s.intents & intent == intent for s in self.sessions.values())

    async def drop(self, code: int | None = 4000, *, shard: int | None = None) -> None:
        """Close every live connection (of ``shard``'s sessions, if given) with ``code``, or with
        ``None`` cut the TCP stream (no close frame).

        Sessions survive, so the client RESUMEs (4000 is Discord's "unknown error; reconnect").
        """
        for conn in self._connections(shard):
            conn.ready = False
            self._note("drop", conn.session, "abrupt" if code is None else str(code))
            transport = conn.request.transport
            if code is None and transport is not None:
                conn.closed_by_server = 1006
                transport.abort()
            else:
                conn.close(code or 4000)
        await asyncio.sleep(0)

    def send_reconnect(self, *, shard: int | None = None) -> None:
        """Opcode 7: the client (on ``shard``, if given) should reconnect and RESUME."""
        for conn in self._connections(shard):
            conn.send({"op": RECONNECT, "d": None, "s": None, "t": None})
            self._note("reconnect", conn.session)

    def invalidate_session(self, resumable: bool = False, *, shard: int | None = None) -> None:
        """Opcode 9 (to ``shard``'s connections, if given); with ``resumable=False`` the sessions are
        forgotten and the client must IDENTIFY."""
        for conn in self._connections(shard):
            conn.send({"op": INVALID_SESSION, "d": resumable, "s": None, "t": None})
            self._note("invalid_session", conn.session, str(resumable))
            if not resumable and conn.session is not None:
                self.sessions.pop(conn.session.id, None)

    def send_raw(self, payload: dict[str, Any]) -> None:
        """Any frame at all, to every live connection, for fault tests."""
        for conn in list(self.connections):
            conn.send(payload)

    # -- the websocket ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.refusals > 0:
            self.refusals -= 1
            self._note("refused", None, request.query_string)
            return web.Response(status=503, text="503 Service Unavailable")
        ws = web.WebSocketResponse(compress=False, max_msg_size=0)
        await ws.prepare(request)
        wants_zlib = request.query.get("compress") == "zlib-stream"
        conn = Connection(ws, request, zlib.compressobj() if wants_zlib and self.compress else None)
        self.connections.add(conn)
        self._note("connect", None, request.query_string)
        writer = asyncio.create_task(self._write(conn), name="loopback-gateway-writer")
        conn.send(
            {"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None}
        )
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._on_frame(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    conn.close(4002)  # Discord: "Decode error"; clients send text JSON
        finally:
            self._disconnected(conn)
            await conn.outbox.put(("stop", None))
            await writer
        return ws

    async def _write(self, conn: Connection) -> None:
        while True:
            kind, value = await conn.outbox.get()
            try:
                if kind == "stop":
                    return
                if kind == "close":
                    await conn.ws.close(code=value)
                    return
                if conn.compressor is not None:
                    data = conn.compressor.compress(value.encode()) + conn.compressor.flush(zlib.Z_SYNC_FLUSH)
                    await conn.ws.send_bytes(data)
                else:
                    await conn.ws.send_str(value)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("gateway write failed: %r", exc)
                return

    def _on_frame(self, conn: Connection, text: str) -> None:
        try:
            frame = json.loads(text)
            op, data = frame["op"], frame.get("d")
        except (ValueError, KeyError, TypeError):
            conn.close(4002)
            return
        self.received.append(frame)
        if op == HEARTBEAT:
            conn.heartbeats += 1
            ack = {"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None}
            asyncio.get_running_loop().call_later(ACK_DELAY_S, conn.send, ack)
        elif op == IDENTIFY:
            self._identify(conn, data or {})
        elif op == RESUME:
            self._resume(conn, data or {})
        elif conn.session is None:
            conn.close(4003)  # "Not authenticated"
        elif op == REQUEST_MEMBERS:
            self._members_chunk(conn.session, data or {})
        elif op not in (PRESENCE, VOICE):
            conn.close(4001)  # "Unknown opcode"

    def _identify(self, conn: Connection, data: dict[str, Any]) -> None:
        if conn.session is not None:
            conn.close(4005)  # "Already authenticated"
            return
        if data.get("token") != self.state.token:
            self._note("identify", None, "bad token")
            conn.close(4004)  # "Authentication failed"
            return
        record = self.state.sharding.identify(data.get("shard"), secrets.token_hex(16))
        if record.close_code is not None:
            self._note("identify", None, f"{record.close_code} {record.outcome}: shard {data.get('shard')!r}")
            conn.close(record.close_code)
            return
        if record.outcome is IdentifyOutcome.TOO_SOON:  # Discord answers opcode 9, not resumable
            conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            self._note("invalid_session", None, f"identify too soon in bucket {record.bucket}")
            return
        assert record.session_id is not None
        shard = list(record.shard) if record.shard else None
        session = Session(id=record.session_id, intents=int(data.get("intents") or 0), shard=shard)
        self.sessions[session.id] = session
        self._attach(conn, session)
        world = self.state.world
        guilds = [g for g in world.guilds.values() if session.handles(g.id)]
        ready = payloads.ready(
            world, session_id=session.id, resume_url=self.url, shard=shard, guild_ids=[g.id for g in guilds]
        )
        session.dispatch("READY", ready)
        if session.wants("GUILD_CREATE"):
            for guild in guilds:
                session.dispatch("GUILD_CREATE", payloads.guild_create(guild, world))
        self._note("identify", session, f"shard {shard}" if shard else "")

    def _resume(self, conn: Connection, data: dict[str, Any]) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != self.state.token:
            conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            self._note("invalid_session", None, "resume of unknown session")
            return
        last = int(data.get("seq") or 0)
        old = session.conn
        if old is not None and old is not conn:
            old.ready = False
            old.close(4000)
        self._attach(conn, session)
        missed = [frame for frame in session.sent if frame["s"] > last]
        for frame in missed:
            conn.send(frame)
        session.dispatch("RESUMED", {"_trace": ["loopback"]})
        self._note("resume", session, f"replayed {len(missed)} event(s) after seq {last}")

    def _attach(self, conn: Connection, session: Session) -> None:
        conn.session = session
        session.conn = conn
        conn.ready = True  # set before the first dispatch below, with no await in between

    def _members_chunk(self, session: Session, data: dict[str, Any]) -> None:
        guild = self.state.world.guilds.get(int(data.get("guild_id") or 0))
        members = [payloads.member(m) for m in guild.members.values()] if guild else []
        chunk = {
            "guild_id": str(data.get("guild_id")),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    def _disconnected(self, conn: Connection) -> None:
        self.connections.discard(conn)
        conn.ready = False
        session = conn.session
        code = conn.closed_by_server or conn.ws.close_code
        if session is not None and session.conn is conn:
            session.conn = None
            if conn.closed_by_server is None and code in SESSION_ENDING_CLOSES:
                self.sessions.pop(session.id, None)
        who = "server" if conn.closed_by_server else "client"
        self._note("close", session, f"{code} by {who}")

    def _note(self, kind: str, session: Session | None, detail: str = "") -> None:
        event = GatewayEvent(kind, session.id if session else None, detail)
        self.events.append(event)
        log.info("gateway %s %s %s", kind, session.id[:8] if session else "-", detail)
        self.state.bus.publish(Change("gateway", detail=f"{kind} {detail}".strip()))
