"""What a bot that talks in plain messages needs of the loopback server: threads started from a
member's message, files attached to members' messages, other bots as authors, and history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest

from loopback import InvalidInvocation, LoopbackDiscord, MessageRecord, Overwrite, Perm
from loopback.records import FileRecord
from tests.fixtures.loopback_bot import run_bot

pytestmark = pytest.mark.timeout(30)


class Talker(discord.Client):
    """Answers a message that mentions it: in a thread opened from it when it says "thread",
    else as a reply quoting the text of its attached files."""

    def __init__(self, *, message_content: bool = False, answers: bool = True) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        super().__init__(intents=intents, allowed_mentions=discord.AllowedMentions.none())
        self.answers = answers
        self.seen: list[discord.Message] = []
        self.threads: list[discord.Thread] = []  # on_thread_create: newly created ones
        self.errors: list[Exception] = []
        self.files: dict[str, bytes] = {}

    async def on_thread_create(self, thread: discord.Thread) -> None:
        self.threads.append(thread)

    async def on_message(self, message: discord.Message) -> None:
        assert self.user is not None
        if message.author.id == self.user.id:
            return
        self.seen.append(message)
        if not self.answers or not self.user.mentioned_in(message) or message.author.bot:
            return
        if "thread" in message.content:
            try:
                thread = await message.create_thread(name="a thread about it", auto_archive_duration=60)
            except discord.HTTPException as exc:
                self.errors.append(exc)
                return
            await thread.send(f"answering in {thread.name}")
            return
        for attachment in message.attachments:
            self.files[attachment.filename] = await attachment.read()
        said = " | ".join(data.decode() for data in self.files.values())
        await message.reply(f"read: {said or 'nothing'}")


@pytest.fixture
async def talker(server: LoopbackDiscord) -> AsyncIterator[Talker]:
    client = Talker()
    async with run_bot(client, server):
        yield client


async def rest(server: LoopbackDiscord, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {server.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, server.api_base + path, json=body, headers=headers) as resp:
            return resp.status, (await resp.json() if resp.status != 204 else None)


def frames(server: LoopbackDiscord, event: str) -> list[dict[str, Any]]:
    return [f["d"] for s in server.gateway.sessions.values() for f in s.sent if f["t"] == event]


def bot_messages(server: LoopbackDiscord, channel_id: int) -> list[MessageRecord]:
    """The bot's undeleted messages in a channel or thread (none while it does not exist)."""
    logged = server.state.channel_log.get(channel_id, [])
    return [m for m in logged if m.author_id == server.bot_user.id and not m.deleted]


# -- Start Thread from Message -------------------------------------------------------------------


async def test_a_bot_opens_a_thread_from_a_members_message_and_answers_there(
    server: LoopbackDiscord, talker: Talker
) -> None:
    assert server.general is not None and server.guild is not None
    posted = await server.post_message(server.general, f"{server.bot_user.mention} start a thread")
    await server.wait_for(lambda: bool(bot_messages(server, posted.id)), what="the answer in the thread")

    thread = server.world.channel(posted.id)
    assert thread is not None and thread.type == 11 and thread.parent_id == server.general.id
    assert thread.owner_id == server.bot_user.id and thread.name == "a thread about it"
    assert thread.auto_archive_duration == 60
    [answer] = bot_messages(server, thread.id)
    assert answer.content == "answering in a thread about it" and answer.guild_id == server.guild.id

    [call] = server.calls_to("POST", f"/messages/{posted.id}/threads")
    assert call.status == 201 and call.route == "POST /channels/{channel}/messages/{message}/threads"
    assert call.json == {
        "name": "a thread about it",
        "auto_archive_duration": 60,
        "rate_limit_per_user": None,
    }
    [created] = [d for d in frames(server, "THREAD_CREATE") if d["id"] == str(posted.id)]
    assert created["newly_created"] is True and created["type"] == 11
    assert created["parent_id"] == str(server.general.id) and created["owner_id"] == str(server.bot_user.id)
    assert created["thread_metadata"]["auto_archive_duration"] == 60 and created["member_count"] >= 1
    await server.wait_for(lambda: bool(talker.threads), what="on_thread_create")
    assert [t.id for t in talker.threads] == [posted.id]  # newly_created: a create, not a join
    assert not server.contract_violations and not server.unmatched_calls

    # The starter message now says it holds a thread, as Discord's message object does.
    status, body = await rest(server, "GET", f"/channels/{server.general.id}/messages/{posted.id}")
    assert status == 200 and body["thread"]["id"] == str(posted.id) and body["flags"] & (1 << 5)

    # One message holds one thread.
    again = f"/channels/{server.general.id}/messages/{posted.id}/threads"
    status, body = await rest(server, "POST", again, {"name": "second"})
    assert status == 400 and body["code"] == 160004
    assert body["message"] == "A thread has already been created for this message"


async def test_starting_a_thread_is_refused_where_discord_refuses_it(server: LoopbackDiscord) -> None:
    assert server.general is not None and server.thread is not None and server.guild is not None
    posted = await server.post_message(server.general, "a message")
    in_thread = await server.post_message(server.thread, "in a thread")
    path = f"/channels/{server.general.id}/messages/{posted.id}/threads"

    status, body = await rest(server, "POST", path, {"name": "x" * 101})
    assert status == 400 and body["code"] == 50035 and "name" in body["errors"]
    status, body = await rest(server, "POST", path, {"name": "ok", "auto_archive_duration": 30})
    assert status == 400 and "auto_archive_duration" in body["errors"]
    status, body = await rest(server, "POST", path, {})
    assert status == 400 and "'name'" in body["errors"]["_errors"][0]["message"]
    server.contract_violations.clear()  # those three were meant to break it

    elsewhere = f"/channels/{server.general.id}/messages/{in_thread.id}/threads"
    status, body = await rest(server, "POST", elsewhere, {"name": "nope"})
    assert status == 404 and body["code"] == 10008  # the message is in another channel
    nested = f"/channels/{server.thread.id}/messages/{in_thread.id}/threads"
    status, body = await rest(server, "POST", nested, {"name": "nope"})
    assert status == 400 and body["code"] == 50024  # no thread in a thread

    bot_member = server.world.member(server.guild, server.bot_user)
    locked = server.add_channel(
        "locked", overwrites=[Overwrite(bot_member.id, 1, deny=Perm.CREATE_PUBLIC_THREADS)]
    )
    there = await server.post_message(locked, "here")
    status, body = await rest(
        server, "POST", f"/channels/{locked.id}/messages/{there.id}/threads", {"name": "x"}
    )
    assert status == 403 and body["code"] == 50013
    assert server.world.channel(there.id) is None and server.world.channel(posted.id) is None

    # A thread may be opened where its messages cannot be sent, as on Discord.
    mute = server.add_channel(
        "mute", overwrites=[Overwrite(bot_member.id, 1, deny=Perm.SEND_MESSAGES_IN_THREADS)]
    )
    starter = await server.post_message(mute, "open one")
    status, body = await rest(
        server, "POST", f"/channels/{mute.id}/messages/{starter.id}/threads", {"name": "t"}
    )
    assert status == 201 and body["id"] == str(starter.id) and body["parent_id"] == str(mute.id)
    status, body = await rest(server, "POST", f"/channels/{starter.id}/messages", {"content": "hi"})
    assert status == 403 and body["code"] == 50013
    assert not server.contract_violations


async def test_the_servers_own_checks_hold_without_the_contract() -> None:
    async with LoopbackDiscord(check_contract=False) as server:
        assert server.general is not None
        posted = await server.post_message(server.general, "hi")
        path = f"/channels/{server.general.id}/messages/{posted.id}/threads"
        status, body = await rest(server, "POST", path, {"name": "  "})
        assert status == 400 and body["errors"]["name"]["_errors"][0]["code"] == "BASE_TYPE_REQUIRED"
        status, body = await rest(server, "POST", path, {"name": "t", "rate_limit_per_user": -1})
        assert status == 400 and "rate_limit_per_user" in body["errors"]
        status, body = await rest(server, "POST", path, {"name": "t", "rate_limit_per_user": 5})
        assert status == 201 and body["rate_limit_per_user"] == 5 and body["id"] == str(posted.id)
        assert body["thread_metadata"]["auto_archive_duration"] == 1440  # the channel's default


# -- files on members' messages ------------------------------------------------------------------


async def test_a_members_files_reach_the_bot_and_download_from_their_url(
    server: LoopbackDiscord, talker: Talker
) -> None:
    assert server.general is not None
    posted = await server.post_message(
        server.general,
        f"{server.bot_user.mention} read these",
        attachments=[("notes.txt", b"first notes", "text/plain"), ("more.txt", "ünïcode".encode())],
    )
    answer = await server.wait_reply(posted)
    assert answer.content == "read: first notes | ünïcode"
    assert [f.filename for f in posted.attachments] == ["notes.txt", "more.txt"]

    [data] = [d for d in frames(server, "MESSAGE_CREATE") if d["id"] == str(posted.id)]
    first, second = data["attachments"]
    assert set(first) >= {"id", "filename", "size", "url", "proxy_url", "content_type"}
    assert first["filename"] == "notes.txt" and first["size"] == len(b"first notes")
    assert first["content_type"] == "text/plain" and second["content_type"] == "text/plain; charset=utf-8"
    async with aiohttp.ClientSession() as http, http.get(second["url"]) as resp:
        assert resp.status == 200 and await resp.read() == "ünïcode".encode()
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    [got] = [m for m in talker.seen if m.id == posted.id]
    assert [a.filename for a in got.attachments] == ["notes.txt", "more.txt"]


async def test_files_are_blank_without_message_content_unless_the_bot_is_mentioned(
    server: LoopbackDiscord, talker: Talker
) -> None:
    assert server.general is not None
    reader = Talker(message_content=True, answers=False)  # a second session of the same bot user
    async with run_bot(reader, server):
        quiet = await server.post_message(server.general, "", attachments=[("a.txt", b"aaa")])
        loud = await server.post_message(
            server.general, server.bot_user.mention, attachments=[("b.txt", b"b")]
        )
        for client in (talker, reader):
            await server.wait_for(lambda c=client: len(c.seen) >= 2, what="both messages")  # type: ignore[misc]
        by_id = {m.id: m for m in talker.seen}
        assert by_id[quiet.id].attachments == [] and by_id[quiet.id].content == ""
        assert [a.filename for a in by_id[loud.id].attachments] == ["b.txt"]
        assert [a.filename for a in reader.seen[0].attachments] == ["a.txt"]  # it has the intent
        assert (await server.wait_reply(loud)).content == "read: b"


async def test_uploads_the_client_would_not_send_are_refused(server: LoopbackDiscord) -> None:
    assert server.general is not None
    with pytest.raises(InvalidInvocation, match="at most 10"):
        await server.post_message(server.general, "many", attachments=[(f"{i}.txt", b"x") for i in range(11)])
    with pytest.raises(InvalidInvocation, match="empty"):
        await server.post_message(server.general, " ", attachments=[])
    files = await server.post_message(server.general, "", attachments=[("only.bin", b"\x00", None)])
    [stored] = files.attachments  # a message of files alone, its type guessed from the name
    assert stored == FileRecord(stored.id, "only.bin", b"\x00", "application/octet-stream")
    assert server.state.files[stored.id] is stored


# -- other bots ------------------------------------------------------------------------------------


async def test_another_bots_messages_say_so(server: LoopbackDiscord, talker: Talker) -> None:
    assert server.general is not None
    other = server.add_member("helper-bot", bot=True)
    assert other.user.bot
    posted = await server.post_message(server.general, f"{server.bot_user.mention} beep", user=other)
    [data] = [d for d in frames(server, "MESSAGE_CREATE") if d["id"] == str(posted.id)]
    assert data["author"]["bot"] is True and data["author"]["id"] == str(other.id)
    await server.wait_for(lambda: any(m.id == posted.id for m in talker.seen), what="the bot's message")
    [got] = [m for m in talker.seen if m.id == posted.id]
    assert got.author.bot and got.author.id == other.id
    await server.wait_idle()
    assert server.replies_to(posted) == []  # the talker ignores bots
    human = server.add_member("human")
    assert not human.user.bot
    with pytest.raises(ValueError, match="not a bot"):
        server.add_member(human.user, bot=True)


# -- history ---------------------------------------------------------------------------------------


async def test_history_holds_members_and_the_bots_messages_newest_first(
    server: LoopbackDiscord, talker: Talker
) -> None:
    assert server.general is not None
    first = await server.post_message(server.general, "first")
    asked = await server.post_message(
        server.general, f"{server.bot_user.mention} with a file", attachments=[("n.txt", b"note")]
    )
    answer = await server.wait_reply(asked)
    last = await server.post_message(server.general, "last")
    path = f"/channels/{server.general.id}/messages"

    status, page = await rest(server, "GET", f"{path}?limit=10")
    assert status == 200
    assert [m["id"] for m in page] == [str(m.id) for m in (last, answer, asked, first)]
    assert page[1]["author"]["id"] == str(server.bot_user.id) and page[1]["content"] == "read: note"
    assert page[2]["attachments"][0]["filename"] == "n.txt"  # it mentions the bot: readable
    assert page[3]["content"] == "" and page[0]["content"] == ""  # no MESSAGE_CONTENT here
    _, before = await rest(server, "GET", f"{path}?limit=2&before={last.id}")
    assert [m["id"] for m in before] == [str(answer.id), str(asked.id)]

    channel = talker.get_channel(server.general.id)
    assert isinstance(channel, discord.TextChannel)
    read = [m async for m in channel.history(limit=3, before=discord.Object(last.id))]
    assert [m.id for m in read] == [answer.id, asked.id, first.id]
    assert read[0].author.id == server.bot_user.id and read[1].attachments[0].filename == "n.txt"

    for bad in ("0", "101", "many"):
        status, body = await rest(server, "GET", f"{path}?limit={bad}")
        assert status == 400 and body["code"] == 50035 and "limit" in body["errors"], bad
