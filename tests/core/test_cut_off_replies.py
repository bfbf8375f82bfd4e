"""Replies a process that died left unfinished: the next process of their shard ends them with the
restart notice (through the interaction while its token lives, or the bot's own message), and
leaves alone what is another shard's, another live process's, or its own."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import discord
import pytest

import core.answers
from core.answers import Answers
from core.config import BotConfig
from core.facade import ModeratedModels
from core.replies import RESTARTING
from core.transcord import build_bot
from domain.settings import ChannelSettings
from model_service.config import ServiceConfig
from storage import Storage
from storage.connect import open_sqlite
from storage.types import ReplyRecord, UnfinishedReply
from tests.cogs.fakes import FakeService

TOKEN = "aW50ZXJhY3Rpb24.dG9rZW4.c2VjcmV0"


def guild_on(shard: int, count: int = 2, n: int = 1_000_000) -> int:
    """A guild id whose events come on ``shard`` of ``count``: ``(id >> 22) % count``."""
    return (shard + count * n) << 22


class FakeMessage:
    def __init__(
        self, edits: list[tuple[int, int, dict[str, Any]]], channel_id: int, message_id: int
    ) -> None:
        self.edits, self.channel_id, self.id = edits, channel_id, message_id

    async def edit(self, **fields: Any) -> None:
        self.edits.append((self.channel_id, self.id, fields))


class FakeChannel:
    def __init__(self, edits: list[tuple[int, int, dict[str, Any]]], channel_id: int) -> None:
        self.edits, self.id = edits, channel_id

    def get_partial_message(self, message_id: int) -> FakeMessage:
        return FakeMessage(self.edits, self.id, message_id)


class FakeClient:
    """What ending a cut-off reply uses of the bot: its bot messages, by channel and id."""

    def __init__(self) -> None:
        self.message_edits: list[tuple[int, int, dict[str, Any]]] = []

    def get_partial_messageable(self, channel_id: int) -> FakeChannel:
        return FakeChannel(self.message_edits, channel_id)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Storage]:
    async with await open_sqlite(tmp_path / "t.sqlite3", ChannelSettings()) as opened:
        yield opened


@pytest.fixture
def interaction_edits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, str, discord.ui.View | None]]:
    """Edits of interactions' original responses: (application id, token, content, view)."""
    edits: list[tuple[int, str, str, discord.ui.View | None]] = []

    async def edit_original(
        client: discord.Client, application_id: int, token: str, content: str, view: discord.ui.View | None
    ) -> None:
        edits.append((application_id, token, content, view))

    monkeypatch.setattr(core.answers, "edit_original", edit_original)
    return edits


def answers_on(store: Storage) -> Answers:
    return Answers(ModeratedModels(FakeService()), store.replies, cap=512, edit_interval_s=1.0)


def left_by_dead_process(reply_id: int, guild_id: int | None, **fields: Any) -> UnfinishedReply:
    defaults: dict[str, Any] = {
        "owner": "dead",
        "channel_id": 77,
        "began_at": time.time() - 60,
        "shown": "**Once upon a time**",
        "application_id": 42,
        "interaction_token": f"{TOKEN}-{reply_id}",
    }
    return UnfinishedReply(reply_id, guild_id=guild_id, **{**defaults, **fields})


def client() -> discord.Client:
    return cast(discord.Client, FakeClient())


async def unfinished(store: Storage) -> set[int]:
    return {r.reply_id for r in await store.replies.unfinished(began_before=time.time() + 60, owner="")}


async def test_a_cut_off_reply_of_this_shard_ends_with_the_restart_notice_and_regenerate(
    store: Storage, interaction_edits: list[tuple[int, str, str, discord.ui.View | None]]
) -> None:
    await store.replies.save_reply(ReplyRecord(11, 77, 5, "generate", "{}", "**Once upon a time**"))
    await store.replies.begin_writing(left_by_dead_process(11, guild_on(0)))
    answers = answers_on(store)

    assert await answers.finish_cut_off(client(), ours=lambda guild_id: True) == 1

    [(application_id, token, content, view)] = interaction_edits
    assert (application_id, token) == (42, f"{TOKEN}-11")
    assert content == "**Once upon a time**\n\n" + RESTARTING  # as a clean shutdown would leave it
    assert view is not None
    buttons = [button for row in view.to_components() for button in row["components"]]
    enabled = {b["custom_id"]: not b.get("disabled", False) for b in buttons}
    assert enabled == {
        "transcord:reply:stop:11": False,
        "transcord:reply:again:11": True,
        "transcord:reply:more:11": False,
    }
    assert await unfinished(store) == set()  # ended: the next start does not take it again


async def test_only_replies_of_this_process_shards_are_taken_and_dms_are_shard_0s(
    store: Storage, interaction_edits: list[tuple[int, str, str, discord.ui.View | None]]
) -> None:
    service = ServiceConfig(models={"fake": "x"}, default_model="fake")
    bot = build_bot(BotConfig(service=service, shard_count=2, shard_ids=(0,)), FakeService(), store)
    other = build_bot(BotConfig(service=service, shard_count=2, shard_ids=(1,)), FakeService(), store)
    # Never started (so nothing to close): only their shards matter here.
    await store.replies.begin_writing(left_by_dead_process(1, guild_on(0)))
    await store.replies.begin_writing(left_by_dead_process(2, guild_on(1)))
    await store.replies.begin_writing(left_by_dead_process(3, None))  # a DM

    assert await bot.answers.finish_cut_off(client(), ours=bot.serves) == 2
    assert {token for _, token, _, _ in interaction_edits} == {f"{TOKEN}-1", f"{TOKEN}-3"}
    assert await unfinished(store) == {2}  # shard 1's process finishes it

    assert await other.answers.finish_cut_off(client(), ours=other.serves) == 1
    assert await unfinished(store) == set()


async def test_an_expired_token_is_not_used_and_the_reply_is_ended(
    store: Storage,
    interaction_edits: list[tuple[int, str, str, discord.ui.View | None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await store.replies.begin_writing(left_by_dead_process(1, None, began_at=time.time() - 16 * 60))
    await store.replies.begin_writing(left_by_dead_process(2, None, began_at=time.time() - 14 * 60))
    with caplog.at_level(logging.DEBUG):
        assert await answers_on(store).finish_cut_off(client(), ours=lambda guild_id: True) == 2
    assert [token for _, token, _, _ in interaction_edits] == [f"{TOKEN}-2"]
    assert await unfinished(store) == set()
    assert "(1 too old to edit)" in caplog.text
    assert TOKEN not in caplog.text


async def test_replies_begun_since_this_process_started_are_left_alone(
    store: Storage, interaction_edits: list[tuple[int, str, str, discord.ui.View | None]]
) -> None:
    answers = answers_on(store)
    # A live process's (it began after this one started), and this process's own.
    await store.replies.begin_writing(left_by_dead_process(1, None, began_at=time.time() + 1))
    await store.replies.begin_writing(left_by_dead_process(2, None, owner=answers.process_id))
    assert await answers.finish_cut_off(client(), ours=lambda guild_id: True) == 0
    assert interaction_edits == []
    assert await unfinished(store) == {1, 2}


async def test_a_reply_to_a_member_s_message_is_the_bot_s_own_message_edited(
    store: Storage, interaction_edits: list[tuple[int, str, str, discord.ui.View | None]]
) -> None:
    fake = FakeClient()
    posted = left_by_dead_process(
        7,
        guild_on(0),
        channel_id=88,
        shown="",
        application_id=None,
        interaction_token=None,
        message_id=900,
        began_at=time.time() - 3600,  # a bot's own message can be edited whenever
    )
    await store.replies.begin_writing(posted)
    assert await answers_on(store).finish_cut_off(cast(discord.Client, fake), ours=lambda guild_id: True) == 1
    assert interaction_edits == []
    [(channel_id, message_id, fields)] = fake.message_edits
    assert (channel_id, message_id, fields["content"]) == (88, 900, RESTARTING)
    assert fields["view"] is None  # the reply record is gone (pruned): no buttons to offer
    assert fields["allowed_mentions"].to_dict() == {"parse": []}


async def test_a_failed_edit_is_a_warning_without_the_token_and_the_reply_is_ended(
    store: Storage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def gone(*args: object) -> None:
        response = type("Response", (), {"status": 404, "reason": "Not Found"})()
        raise discord.NotFound(cast(Any, response), {"message": "Unknown Webhook", "code": 10015})

    monkeypatch.setattr(core.answers, "edit_original", gone)
    await store.replies.begin_writing(left_by_dead_process(5, None))
    with caplog.at_level(logging.DEBUG):
        assert await answers_on(store).finish_cut_off(client(), ours=lambda guild_id: True) == 1
    assert "could not end reply 5 cut off by a restart (404)" in caplog.text
    assert TOKEN not in caplog.text
    assert await unfinished(store) == set()


def test_a_note_never_shows_its_token() -> None:
    note = dataclasses.replace(left_by_dead_process(1, None), interaction_token=TOKEN)
    assert TOKEN not in repr(note) and TOKEN not in str(note)
