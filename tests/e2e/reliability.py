"""Shared by the reliability tests: one real bot per test module, and what "answered" means.

The reliability modules try many cases each; starting a bot per case would cost more than the
cases. So a module starts one bot (the real service, tiny models, a real SQLite file) on its
own :class:`LoopbackDiscord`, and each test works in channels of its own so their settings
and rules never meet.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from core.replies import GENERIC_ERROR, RESTARTING
from loopback import Channel, InteractionRecord, LoopbackDiscord
from tests.e2e.conftest import TOKEN
from tests.e2e.harness import BotRunner, base_env

# A short heartbeat, so the bot's keep-alive thread really runs during the tests (Discord's is
# ~41 s, longer than a whole module): a stalled event loop then shows up as missed heartbeats.
HEARTBEAT_MS = 500
WAIT_S = 30.0

GENERATION_FOOTER = re.compile(r"\n-# \d+ tokens · ")
FILL_FOOTER = re.compile(r"\n-# \S+ · (masked LM|causal LM, sentences rescored) · ")
_names = itertools.count(1)


class LogRecorder(logging.Handler):
    """Every log record of the module's run, for checks that span several tests."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        """Messages and tracebacks, as a log file would hold them."""
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        return "\n".join(formatter.format(r) for r in self.records)


@contextlib.asynccontextmanager
async def shared_bot(
    folder: Path, models: Mapping[str, Path], **overrides: str
) -> AsyncIterator[tuple[LoopbackDiscord, BotRunner, LogRecorder]]:
    """A loopback server and the real bot on it, with every log record kept."""
    recorder = LogRecorder()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    try:
        async with LoopbackDiscord(token=TOKEN, heartbeat_interval_ms=HEARTBEAT_MS) as server:
            env = {**base_env(server, folder / "transcord.sqlite3", models), **overrides}
            runner = BotRunner(server, env)
            try:
                await runner.start()
                yield server, runner, recorder
            finally:
                await runner.aclose()
    finally:
        root.removeHandler(recorder)
        root.setLevel(old_level)


def new_channel(server: LoopbackDiscord, prefix: str = "rel") -> Channel:
    """A channel no other test uses: its settings and moderation rules start from the defaults."""
    return server.add_channel(f"{prefix}-{next(_names)}")


def shown_text(record: InteractionRecord) -> str:
    return "".join(m.content for m in record.messages if not m.deleted)


def settled(record: InteractionRecord) -> bool:
    """The bot has given its final answer: an immediate reply, a finished one, or an error."""
    if not record.responded or record.is_thinking:
        return False
    if record.callback_type == 4:
        return True
    text = shown_text(record)
    return (
        bool(GENERATION_FOOTER.search(text) or FILL_FOOTER.search(text))
        or GENERIC_ERROR in text
        or RESTARTING in text
        or any(m.ephemeral for m in record.followups)
    )


async def ask(
    server: LoopbackDiscord,
    command: str,
    options: Mapping[str, object] | None = None,
    *,
    timeout: float = WAIT_S,
    **kwargs: object,
) -> InteractionRecord:
    """Invoke a command and wait for its final answer (no quiet period to sit out)."""
    record = await server.invoke(command, options, **kwargs)  # type: ignore[arg-type]
    return await record.wait_for(settled, timeout)


def pings_nobody(record: InteractionRecord) -> bool:
    """Every message body the bot sent said: mention nobody (no parse, no users, no roles)."""
    if not record.payloads:
        return False
    for mentions in record.allowed_mentions:
        if mentions is None or mentions.get("parse") != []:
            return False
        if mentions.get("users") or mentions.get("roles") or mentions.get("replied_user"):
            return False
    return True


def refusal(record: InteractionRecord) -> str | None:
    """The text of an immediate, ephemeral answer (a refusal), or None if it was anything else."""
    if record.callback_type == 4 and record.ephemeral:
        return record.content
    return None
