"""Plain lines in the playground: a member's message, @mentions made real, and what the bot did
with it, against the loopback server and a small discord.py bot (no model needed)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import discord
import pytest
from discord.ext import commands
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from app.playground import session as playground_module
from app.playground.input import CommandCompleter, TextSource
from app.playground.parse import mention_names
from app.playground.session import Playground
from loopback import LoopbackDiscord
from tests.fixtures.loopback_bot import run_bot

pytestmark = pytest.mark.timeout(30)


class Answerer(commands.Bot):
    """Answers a message that mentions it: a reply streamed in edits and ending in a footer; with
    "thread" in it, in a thread opened from the message; with "ignore", not at all."""

    def __init__(self) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def on_message(self, message: discord.Message) -> None:
        assert self.user is not None
        if message.author.id == self.user.id or self.user not in message.mentions:
            return
        text = message.content.replace(self.user.mention, "").strip()
        if "ignore" in text:
            return
        if "thread" in text:
            thread = await message.create_thread(name="talk about it", auto_archive_duration=1440)
            await thread.send(f"{message.author.display_name} said {text!r} here\n-# in a thread")
            return
        reply = await message.reply("✍️ …", mention_author=False)
        for words in range(1, 4):
            await asyncio.sleep(0.2)
            reply = await reply.edit(content=" ".join(["word"] * words))
        await asyncio.sleep(0.2)
        await reply.edit(content=f"heard {text!r}\n-# 3 words")


@pytest.fixture
async def playground() -> AsyncIterator[tuple[Playground, io.StringIO]]:
    async with LoopbackDiscord() as server:
        bot = Answerer()
        async with run_bot(bot, server) as task:
            out = io.StringIO()
            yield Playground(server, bot, task, out, timeout=10), out
            assert not server.contract_violations and not server.unmatched_calls


def test_at_names_become_mentions_of_the_bot_in_any_case() -> None:
    names = {"Transcord": 42, "bot": 42}
    assert mention_names("@Transcord hi", names) == "<@42> hi"
    assert mention_names("hey @transcord, and @BOT!", names) == "hey <@42>, and <@42>!"
    assert mention_names("mail me@transcord.x", names) == "mail me@transcord.x"  # inside a word
    assert mention_names("@everyone @Transcordian <@42>", names) == "@everyone @Transcordian <@42>"


def test_the_completer_offers_the_bots_mention_in_a_message() -> None:
    completer = CommandCompleter(lambda: [], {}, mentions=lambda: ["@Transcord"])

    def complete(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text), CompleteEvent())]

    assert complete("hello @tr") == ["@Transcord"]
    assert complete("hello tr") == [] and complete("@x") == []


async def test_a_mention_is_answered_with_the_settled_reply(
    playground: tuple[Playground, io.StringIO],
) -> None:
    pg, out = playground
    await pg.handle("@Transcord how are you?")
    [posted] = [m for m in pg.server.channel_messages(pg.channel) if m.author_id == pg.user.id]
    assert posted.content == f"<@{pg.server.bot_user.id}> how are you?"
    assert out.getvalue() == "Transcord:\n  heard 'how are you?'\n  -# 3 words\n"  # the final state only
    assert pg.unsettled == 0


async def test_an_unmentioned_message_gets_a_hint(playground: tuple[Playground, io.StringIO]) -> None:
    pg, out = playground
    await pg.handle("just chatting")
    assert out.getvalue() == "(Transcord did not answer: mention it with @Transcord)\n"
    out.truncate(0)
    out.seek(0)
    await pg.handle("@bot ignore this")
    assert out.getvalue() == "(Transcord did not answer)\n"


async def test_a_thread_opened_from_the_message_takes_the_session_there(
    playground: tuple[Playground, io.StringIO],
) -> None:
    pg, out = playground
    await pg._as(["moderator"])
    general = pg.channel
    await pg.handle("@bot start a thread")
    thread = pg.channel
    assert thread.is_thread and thread.parent_id == general.id and thread.name == "talk about it"
    [posted] = [m for m in pg.server.channel_messages(general) if m.author_id == pg.user.id]
    assert thread.id == posted.id and posted.author_id == pg.server.moderator.id  # type: ignore[union-attr]
    shown = out.getvalue().split("You are now moderator in #general.\n", 1)[1]
    assert shown == (
        "Transcord opened thread #talk about it (you are in it now)\n"
        "Transcord:\n  moderator said 'start a thread' here\n  -# in a thread\n"
    )
    assert pg.prompt() == "moderator in #talk about it> "


async def test_a_piped_session_of_plain_lines(
    playground: tuple[Playground, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    pg, out = playground
    monkeypatch.setattr(playground_module, "NO_ANSWER_QUIET_S", 0.5)
    lines = "# a comment\nhello\n@transcord hi there\n/as moderator\n@bot thread time\n"
    code = await pg.run(TextSource(io.StringIO(lines)))
    assert code == 0
    transcript = out.getvalue()
    assert transcript.startswith(playground_module.BANNER)
    assert "member in #general> hello\n(Transcord did not answer: mention it with @Transcord)\n" in transcript
    assert "member in #general> @transcord hi there\nTranscord:\n  heard 'hi there'\n" in transcript
    assert "moderator in #general> @bot thread time\nTranscord opened thread #talk about it" in transcript
    assert "the playground sends slash commands only" not in transcript
    assert "A line without / is your message" in playground_module.META_HELP
