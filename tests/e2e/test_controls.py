"""The buttons on generated replies end to end: Stop while written, Regenerate, Continue; who may
use them, a double click, a click while the bot restarts, and after a restart."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest

import app as bot_module
from loopback import LoopbackDiscord
from loopback.commands import InvalidInvocation
from loopback.interactions import InteractionRecord
from loopback.records import MessageRecord
from model_service import GenerationRequest, GenerationResult, TextStream
from storage.types import ConversationKey
from tests.e2e.harness import BotRunner, has_footer, run

pytestmark = pytest.mark.timeout(120)

SEED = re.compile(r"seed (\d+)")
TOKENS = re.compile(r"-# (\d+) tokens")


def buttons(message: MessageRecord) -> dict[str, dict[str, Any]]:
    """The message's buttons as shown now, by label."""
    out = {}
    for row in message.latest.components:
        for component in row.get("components", []):
            out[component["label"]] = component
    return out


def custom_id(message: MessageRecord, label: str) -> str:
    return str(buttons(message)[label]["custom_id"])


def enabled(message: MessageRecord) -> set[str]:
    return {label for label, c in buttons(message).items() if not c.get("disabled")}


def seed(message: MessageRecord) -> str | None:
    """The footer's seed; None while the reply is being written."""
    found = SEED.search(message.content)
    return found.group(1) if found else None


def tokens(message: MessageRecord) -> int:
    """The footer's token count; 0 while the reply is being written."""
    found = TOKENS.search(message.content)
    return int(found.group(1)) if found else 0


def body(message: MessageRecord) -> str:
    """The reply's words: between the bold prompt and the footer."""
    text = message.content.split("\n-# ")[0]
    return text.split("**", 2)[-1]


async def generate(
    server: LoopbackDiscord, prompt: str = "Once upon a time", **options: object
) -> MessageRecord:
    record = await run(server, "generate", {"prompt": prompt, **options}, until=has_footer)
    assert record.original is not None
    return record.original


async def settled(server: LoopbackDiscord, message: MessageRecord, check: Any, timeout: float = 30.0) -> None:
    await server.wait_for(lambda: check(message), timeout, f"message {message.id} to settle")
    await asyncio.sleep(0.3)


async def press(
    server: LoopbackDiscord, message: MessageRecord, label: str, **kwargs: Any
) -> InteractionRecord:
    click = await server.click(message, custom_id(message, label), **kwargs)
    return await click.wait_response(timeout=10)


def refusal(click: InteractionRecord) -> str:
    assert click.ephemeral, click.summary()
    return click.messages[-1].content


class Slow:
    """Slows the model's stream down, so a reply is still being written when a test clicks."""

    def __init__(self, runner: BotRunner, delay: float = 0.1) -> None:
        assert runner.service is not None
        original = runner.service.stream

        def stream(request: GenerationRequest, **kwargs: Any) -> TextStream:
            return SlowStream(original(request, **kwargs), delay)

        runner.service.stream = stream  # type: ignore[method-assign]


class SlowStream:
    def __init__(self, inner: TextStream, delay: float) -> None:
        self.inner, self.delay = inner, delay

    @property
    def result(self) -> GenerationResult | None:
        return self.inner.result

    def __aiter__(self) -> AsyncIterator[str]:
        return self._slowly()

    async def _slowly(self) -> AsyncIterator[str]:
        async for delta in self.inner:
            await asyncio.sleep(self.delay)
            yield delta

    def queue_place(self) -> tuple[int, float] | None:
        return None  # never waits for a slot

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_reply_carries_regenerate_and_continue_and_regenerate_gives_a_new_seed(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    message = await generate(server, max_new_tokens=8)
    assert set(buttons(message)) == {"Stop", "Regenerate", "Continue"}
    assert enabled(message) == {"Regenerate", "Continue"}  # stopped at the token limit: more to write
    old_seed = seed(message)
    assert old_seed is not None

    click = await press(server, message, "Regenerate", user=server.member)
    assert click.callback_type == 6  # written into the same message, no new one
    await settled(server, message, lambda m: seed(m) not in (None, old_seed))
    new_seed = seed(message)
    assert new_seed is not None
    assert message.content.startswith("**Once upon a time**")
    # The same seed and settings give the same text: /generate with the new seed writes it again.
    again = await generate(server, max_new_tokens=8, seed=int(new_seed))
    assert body(again) == body(message)


async def test_continue_appends_to_the_same_text_up_to_the_cap(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start(MAX_NEW_TOKENS_CAP="20")
    message = await generate(server, max_new_tokens=8, temperature=0.0)
    before, first = body(message), tokens(message)

    await press(server, message, "Continue", user=server.member)
    await settled(server, message, lambda m: "continued" in m.content and has_footer_text(m))
    assert body(message).startswith(before) and len(body(message)) > len(before)
    grown = tokens(message)
    assert grown == first + 8

    await press(server, message, "Continue", user=server.member)
    await settled(server, message, lambda m: tokens(m) > grown)
    assert tokens(message) == 20  # the cap
    assert "Continue" not in enabled(message)
    with pytest.raises(InvalidInvocation):
        await server.click(message, custom_id(message, "Continue"))  # the client can't press it
    late = await press(server, message, "Continue", strict=False)  # a stale client still tries
    assert "the most a reply may have" in refusal(late)


def has_footer_text(message: MessageRecord) -> bool:
    return bool(TOKENS.search(message.content)) and " …" not in message.content[-3:]


async def test_someone_else_is_refused_every_button_and_a_moderator_is_not(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start()
    Slow(runner)
    other = server.add_member("bystander")
    record = await server.invoke("generate", {"prompt": "Once upon a time", "max_new_tokens": 30})
    await record.wait_for(lambda r: r.original is not None and "Stop" in enabled(r.original), 30)
    message = record.original
    assert message is not None

    stop = await press(server, message, "Stop", user=other)
    assert "Only <@" in refusal(stop) and "or a moderator" in refusal(stop)
    await record.wait_for(has_footer, 60)
    await asyncio.sleep(0.3)
    assert "stopped by" not in message.content  # the refusal stopped nothing
    for label in ("Regenerate", "Continue"):
        shown = message.content
        click = await press(server, message, label, user=other)
        assert "Only <@" in refusal(click)
        await asyncio.sleep(0.3)
        assert message.content == shown

    moderated = await press(server, message, "Regenerate", user=server.moderator)
    assert moderated.callback_type == 6


async def test_stop_keeps_what_was_written_and_says_who_stopped_it(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    # A reply long enough to be still generating when Stop arrives (the model itself is at work,
    # not only the edits).
    await runner.start(DEFAULT_MODEL="long", MAX_NEW_TOKENS_CAP="1000")
    record = await server.invoke("generate", {"prompt": "Once upon a time", "max_new_tokens": 1000})
    await record.wait_for(
        lambda r: r.original is not None and len(body(r.original)) > 5 and " …" in r.original.content, 30
    )
    message = record.original
    assert message is not None
    assert enabled(message) == {"Stop"}  # while writing, only Stop

    click = await press(server, message, "Stop", user=server.member)
    assert click.callback_type == 6
    await settled(server, message, has_footer_text)
    assert "stopped by" in message.content
    assert 0 < tokens(message) < 1000
    assert enabled(message) == {"Regenerate", "Continue"}

    # Stop on a stale client, after it ended: told so, and the buttons are put right.
    late = await press(server, message, "Stop", strict=False)
    assert "already finished" in (await late.wait_followups(1)).followups[-1].content


async def test_a_double_click_is_answered_not_run_twice(server: LoopbackDiscord, runner: BotRunner) -> None:
    await runner.start()
    message = await generate(server, max_new_tokens=20)
    Slow(runner)
    first = await server.click(message, custom_id(message, "Regenerate"))
    second = await server.click(message, custom_id(message, "Regenerate"), strict=False)
    await first.wait_response()
    await second.wait_response()
    assert first.callback_type == 6
    assert "being written right now" in refusal(second)
    await settled(server, message, lambda m: "Stop" not in enabled(m) and has_footer_text(m), 60)


async def test_a_click_while_the_bot_restarts_is_answered_and_after_it_works(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    transcord = await runner.start()
    message = await generate(server, max_new_tokens=8)
    transcord.models.closing = True  # what shutdown() sets first
    click = await press(server, message, "Regenerate")
    assert "restarting" in refusal(click)
    assert not any(r.is_thinking for r in server.interactions)

    await runner.restart()
    old_seed = seed(message)
    click = await press(server, message, "Regenerate")
    assert click.callback_type == 6
    await settled(server, message, lambda m: seed(m) not in (None, old_seed))


async def test_regenerating_a_chat_reply_revises_the_conversation(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    record = await run(server, "chat say", {"message": "Tell me about dogs"}, until=has_footer)
    message = record.original
    assert message is not None
    old_seed = seed(message)
    await press(server, message, "Regenerate")
    await settled(server, message, lambda m: seed(m) not in (None, old_seed))
    shown = message.content.split("\n-# ")[0].split("\n", 1)[1].strip()
    key = ConversationKey(server.general.id, owner_id=server.member.id)  # type: ignore[union-attr]
    turns = await transcord.store.conversations.recent_turns(key)
    assert [t.role for t in turns] == ["user", "assistant"]
    assert turns[1].text.strip() == shown


async def test_a_month_old_reply_and_its_conversation_are_forgotten_and_its_buttons_say_so(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    await runner.start()
    message = await generate(server, max_new_tokens=4)
    await run(server, "chat say", {"message": "Remember me"}, until=has_footer)
    assert runner.config is not None
    database = runner.config.database_path
    await runner.stop()
    month = 31 * 24 * 3600
    with sqlite3.connect(database) as db:  # a month passes
        db.execute("UPDATE replies SET updated_at = updated_at - ?", (month,))
        db.execute("UPDATE conversation_turns SET created_at = created_at - ?", (month,))

    await runner.start()  # the pruning runs at start, then every 6 hours

    def count(table: str) -> int:
        with sqlite3.connect(database) as db:
            return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    await server.wait_for(lambda: count("replies") == 0 and count("conversation_turns") == 0, 10, "pruning")
    click = await press(server, message, "Regenerate")
    assert "no longer stored (it is too old)" in refusal(click)
