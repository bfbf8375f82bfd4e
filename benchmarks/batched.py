"""The real bot, started as ``bot.py`` starts it, against the loopback Discord server.

Requests are real ``/generate`` and ``/fill`` interactions; every figure is read from the
server's record of what a user would have seen: the deferral, the first streamed edit carrying
model text, and the final edit with its footer.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import discord

from app import App
from app.environment import load_config
from benchmarks.measure import RequestTiming
from benchmarks.workloads import Arrival, Sampling
from core.config import BotConfig
from core.streaming import WRITING
from loopback import Channel, InteractionRecord, LoopbackDiscord
from loopback.records import MessageRecord

FOOTER = re.compile(r"^-# (\d+) tokens", re.MULTILINE)
FILL_FOOTER = re.compile(r"^-# .+ · (masked LM|causal LM, sentences rescored) · [\d.]+ s$", re.MULTILINE)


def bot_env(server: LoopbackDiscord, model_name: str, model_dir: Path, database: Path) -> dict[str, str]:
    return {
        "DISCORD_TOKEN": server.token,
        "DISCORD_API_BASE": server.api_base,
        "DISCORD_GATEWAY_URL": server.gateway_url,
        "MODELS": f"{model_name}={model_dir}",
        "DATABASE_PATH": str(database),
        "STREAM_EDIT_INTERVAL_S": "1.0",
        "QUEUE_LIMIT": "32",
        "MAX_NEW_TOKENS_CAP": "512",
        "MODEL_OFFLINE": "true",  # a local folder: never reach for the hub
        "LOG_LEVEL": "WARNING",
    }


class BotBench:
    """Server + service + store + bot, up after ``start()``; ``ready_at`` is when it could answer."""

    def __init__(
        self,
        model_name: str,
        model_dir: Path,
        workdir: Path,
        channels: int,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.model_name = model_name
        self.overrides = dict(overrides or {})  # settings over the bench's own, e.g. MODEL_DTYPE
        self.model_dir = model_dir
        self.workdir = workdir
        self.server = LoopbackDiscord()
        self.channels: list[Channel] = [self.server.add_channel(f"bench-{i}") for i in range(channels)]
        self.config: BotConfig | None = None
        self.service: Any = None
        self.ready_at = 0.0
        self._stack = contextlib.AsyncExitStack()

    async def start(self, overrides: Mapping[str, str] | None = None) -> BotBench:
        stack = self._stack
        try:
            await stack.enter_async_context(self.server)
            env = bot_env(self.server, self.model_name, self.model_dir, self.workdir / "bench.sqlite3")
            self.config = config = load_config({**env, **self.overrides, **(overrides or {})})
            app = App(config, guild_ready_timeout=0.05)
            stack.push_async_callback(app.aclose)
            await app.open()
            self.service = app.service
            self.server.watch(await app.connect(ready_timeout=120))
            # First at close: let replies still being saved finish, as a real shutdown does.
            stack.push_async_callback(app.shutdown)
        except BaseException:
            await stack.aclose()
            raise
        self.ready_at = time.monotonic()
        return self

    async def close(self) -> None:
        await self._stack.aclose()

    async def __aenter__(self) -> BotBench:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def apply_settings(self, settings: Sequence[Sampling]) -> None:
        """``/config set`` in the first ``len(settings)`` channels, as the moderator."""
        assert self.server.moderator is not None
        for channel, sampling in zip(self.channels[: len(settings)], settings, strict=True):
            record = await self.server.invoke(
                "config set", sampling.as_options(), user=self.server.moderator, channel=channel
            )
            await record.wait_for(lambda r: r.content is not None, timeout=30)
            if "⚙️" not in (record.content or ""):
                raise RuntimeError(f"/config set refused in #{channel.name}: {record.summary()}")

    async def run(self, arrivals: Sequence[Arrival], *, timeout: float) -> list[RequestTiming]:
        """Send each ``/generate`` at its arrival time; wait for every final reply."""
        return await self._send(arrivals, "generate", timeout, _settled, _timing)

    async def mention(self, channel: int, text: str, *, timeout: float) -> tuple[float, float]:
        """A member's @mention of the bot in a channel: (seconds to the reply's first words,
        seconds to its final edit), from the message's arrival."""
        posted = await self.server.post_message(
            self.channels[channel], f"<@{self.server.bot_user.id}> {text}"
        )
        bot = self.server.bot_user.id

        def reply() -> MessageRecord | None:
            return next((m for m in self.server.replies_to(posted) if m.author_id == bot), None)

        await self.server.wait_for(lambda: (r := reply()) is not None and "\n-# " in r.content, timeout)
        answer = reply()
        assert answer is not None
        sent = posted.versions[0].at
        first = next(v.at for v in answer.versions if v.content and v.content != WRITING)
        return first - sent, answer.versions[-1].at - sent

    async def run_fill(self, arrivals: Sequence[Arrival], *, timeout: float) -> list[RequestTiming]:
        """Send each ``/fill`` (the arrival's prompt is the text) on time; wait for every answer."""
        return await self._send(arrivals, "fill", timeout, _fill_settled, _fill_timing)

    async def _send(
        self,
        arrivals: Sequence[Arrival],
        command: str,
        timeout: float,
        settled: Callable[[InteractionRecord], bool],
        timing: Callable[[Arrival, InteractionRecord], RequestTiming],
    ) -> list[RequestTiming]:
        start = time.monotonic()
        sent: list[tuple[Arrival, InteractionRecord]] = []
        for arrival in arrivals:
            delay = start + arrival.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if command == "generate":
                options: dict[str, Any] = {"prompt": arrival.prompt, "max_new_tokens": arrival.max_new_tokens}
            else:
                options = {"text": arrival.prompt}
            record = await self.server.invoke(command, options, channel=self.channels[arrival.channel])
            sent.append((arrival, record))
        remaining = max(1.0, start + timeout - time.monotonic())
        await asyncio.gather(*(record.wait_for(settled, remaining) for _, record in sent))
        return [timing(arrival, record) for arrival, record in sent]


def _fill_answer_at(record: InteractionRecord) -> float | None:
    for message in record.messages:
        for version in message.versions:
            if FILL_FOOTER.search(version.content):
                return version.at
    return None


def _fill_settled(record: InteractionRecord) -> bool:
    return _fill_answer_at(record) is not None or record.expired or bool(record.rejected)


def _fill_timing(arrival: Arrival, record: InteractionRecord) -> RequestTiming:
    done = _fill_answer_at(record)
    if done is None:
        raise RuntimeError(f"/fill in channel {arrival.channel} did not complete: {record.summary()}")
    # Answered within the bot's 1 s grace, the reply itself carries the answer: no deferral.
    deferred = record.callback_at if record.callback_type == 5 else None
    return RequestTiming(sent=record.sent_at, first_text=done, done=done, tokens=0, deferred=deferred)


def _footer_version(record: InteractionRecord) -> tuple[float, int] | None:
    for message in record.messages:
        for version in message.versions:
            if match := FOOTER.search(version.content):
                return version.at, int(match.group(1))
    return None


def _failed(record: InteractionRecord) -> bool:
    """An error reply instead of a generation: /generate always defers, so a direct reply is one."""
    original = record.original
    return (
        record.expired
        or bool(record.rejected)
        or record.callback_type == 4
        or (original is not None and original.deleted)
    )


def _settled(record: InteractionRecord) -> bool:
    return _footer_version(record) is not None or _failed(record)


def _has_model_text(content: str, header: str) -> bool:
    body = content.removeprefix(header).removesuffix("…").strip()
    return bool(body)


def _timing(arrival: Arrival, record: InteractionRecord) -> RequestTiming:
    final = _footer_version(record)
    if final is None:
        raise RuntimeError(f"/generate in channel {arrival.channel} did not complete: {record.summary()}")
    done, tokens = final
    header = f"**{discord.utils.escape_markdown(arrival.prompt)}**"
    assert record.original is not None
    first_text = next(
        (v.at for v in record.original.versions[1:] if _has_model_text(v.content, header)), done
    )
    return RequestTiming(
        sent=record.sent_at, first_text=first_text, done=done, tokens=tokens, deferred=record.callback_at
    )
