"""Members' messages and replies reaching a real discord.py bot, and the bot's channel message REST."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest

from loopback import InvalidInvocation, LoopbackDiscord, MessageRecord
from tests.fixtures.loopback_bot import run_bot
from tests.loopback.demo_bot import DemoBot, Talk

pytestmark = pytest.mark.timeout(30)


def talk(bot: DemoBot) -> Talk:
    assert bot.talk is not None
    return bot.talk


async def seen(server: LoopbackDiscord, bot: DemoBot, message: MessageRecord) -> discord.Message:
    """The bot's on_message view of ``message``."""
    found: list[discord.Message] = []

    def arrived() -> bool:
        found[:] = [m for m in talk(bot).seen if m.id == message.id]
        return bool(found)

    await server.wait_for(arrived, what=f"on_message for {message.id}")
    return found[0]


class Reader(discord.Client):
    """A second session of the bot's user, identified with the MESSAGE_CONTENT intent."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(intents=intents)
        self.seen: list[discord.Message] = []

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message)


@pytest.fixture
async def reader(server: LoopbackDiscord, bot: DemoBot) -> AsyncIterator[Reader]:
    client = Reader()
    async with run_bot(client, server):
        yield client


async def test_without_message_content_only_mentions_are_readable(
    server: LoopbackDiscord, bot: DemoBot, reader: Reader
) -> None:
    assert server.general is not None and server.member is not None
    plain = await server.post_message(server.general, "just chatting")
    mention = await server.post_message(server.general, f"hello {server.bot_user.mention}")
    assert (await seen(server, bot, plain)).content == ""  # the intent is privileged
    got = await seen(server, bot, mention)
    assert got.content == f"hello <@{server.bot_user.id}>" and got.author.id == server.member.id
    assert isinstance(got.author, discord.Member) and [u.id for u in got.mentions] == [server.bot_user.id]
    await server.wait_for(lambda: len(reader.seen) >= 2, what="the reader's messages")
    assert [m.content for m in reader.seen[:2]] == ["just chatting", f"hello <@{server.bot_user.id}>"]
    await server.wait_reply(mention)
    assert server.replies_to(plain) == []


async def test_a_mention_gets_a_reply_that_is_then_edited(server: LoopbackDiscord, bot: DemoBot) -> None:
    assert server.general is not None
    mention = await server.post_message(server.general, f"hi {server.bot_user.mention}")
    reply = await server.wait_reply(mention)
    text = f"heard 'hi <@{server.bot_user.id}>'"
    assert [v.content for v in reply.versions] == [text, f"{text} (edited)"]
    assert reply.reference_id == mention.id and reply.kind == "channel" and reply.edited_iso is not None
    assert reply.author_id == server.bot_user.id and reply in server.channel_messages(server.general)
    [parsed] = talk(bot).replies
    assert parsed.type is discord.MessageType.reply and parsed.reference is not None
    assert parsed.reference.message_id == mention.id and parsed.mentions == []  # AllowedMentions.none()
    assert not server.contract_violations and not server.unmatched_calls
    # The bot receives its own messages too, as on Discord.
    await server.wait_for(lambda: any(m.id == reply.id for m in talk(bot).own), what="the bot's own message")


async def test_a_reply_to_the_bot_is_readable_while_it_mentions_the_bot(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    assert server.general is not None
    first = await server.post_message(server.general, f"hi {server.bot_user.mention}")
    answer = await server.wait_reply(first)
    pinged = await server.post_message(server.general, "and again", reply_to=answer)
    got = await seen(server, bot, pinged)
    assert got.content == "and again" and got.type is discord.MessageType.reply
    assert got.reference is not None and isinstance(got.reference.resolved, discord.Message)
    assert got.reference.resolved.id == answer.id and got.reference.resolved.content == answer.content
    assert [u.id for u in got.mentions] == [server.bot_user.id]  # the replied user mention
    await server.wait_reply(pinged)
    quiet = await server.post_message(server.general, "psst", reply_to=answer, mention_reply_author=False)
    got = await seen(server, bot, quiet)
    assert got.content == "" and got.mentions == []  # no mention: no content without the intent
    assert isinstance(got.reference.resolved if got.reference else None, discord.Message)
    assert (await server.wait_reply(quiet)).content == "heard '' (edited)"


async def test_editing_a_members_message_is_refused(server: LoopbackDiscord, bot: DemoBot) -> None:
    assert server.general is not None
    message = await server.post_message(server.general, f"edit yours {server.bot_user.mention}")
    await server.wait_for(lambda: bool(talk(bot).errors), what="the bot's failed edit")
    [error] = talk(bot).errors
    assert isinstance(error, discord.Forbidden) and error.code == 50005
    assert [v.content for v in message.versions] == [message.content]


async def test_posts_the_client_would_not_send_are_refused(server: LoopbackDiscord) -> None:
    assert server.general is not None and server.thread is not None
    with pytest.raises(InvalidInvocation, match="empty"):
        await server.post_message(server.general, "  ")
    elsewhere = await server.post_message(server.thread, "in the thread")
    with pytest.raises(InvalidInvocation, match="another channel"):
        await server.post_message(server.general, "hm", reply_to=elsewhere)
    with pytest.raises(InvalidInvocation, match="2000"):
        await server.post_message(server.general, "x" * 2001)


# -- the REST routes on their own ------------------------------------------------------------------


async def rest(server: LoopbackDiscord, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {server.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, server.api_base + path, json=body, headers=headers) as resp:
            return resp.status, (await resp.json() if resp.status != 204 else None)


async def test_channel_message_routes_follow_discord(server: LoopbackDiscord) -> None:
    assert server.general is not None and server.member is not None
    channel = f"/channels/{server.general.id}/messages"
    member_message = await server.post_message(server.general, "a plain message")
    status, body = await rest(server, "GET", f"{channel}/{member_message.id}")
    assert status == 200 and body["content"] == ""  # no session has MESSAGE_CONTENT
    assert body["author"]["id"] == str(server.member.id)

    status, body = await rest(
        server, "POST", channel, {"content": "x", "message_reference": {"message_id": "1"}}
    )
    assert status == 400 and body["errors"]["message_reference"]["_errors"][0]["message"] == "Unknown message"
    lost = {"message_id": "1", "fail_if_not_exists": False}
    status, body = await rest(server, "POST", channel, {"content": "sent anyway", "message_reference": lost})
    assert status == 200 and body["type"] == 0 and "message_reference" not in body

    reference = {"message_id": str(member_message.id), "channel_id": str(server.general.id)}
    allowed = {"parse": [], "replied_user": True}
    reply_body = {
        "content": f"<@{server.member.id}> yes",
        "message_reference": reference,
        "allowed_mentions": allowed,
    }
    status, body = await rest(server, "POST", channel, reply_body)
    assert status == 200 and body["type"] == 19
    assert body["message_reference"]["message_id"] == str(member_message.id)
    assert body["referenced_message"]["id"] == str(member_message.id)
    assert [u["id"] for u in body["mentions"]] == [str(server.member.id)]  # replied_user, not parse
    reply = server.message(int(body["id"]))
    assert server.replies_to(member_message) == [reply]

    status, body = await rest(
        server, "PATCH", f"{channel}/{reply.id}", {"content": "edited", "components": []}
    )
    assert status == 200 and body["content"] == "edited" and body["edited_timestamp"] is not None
    status, body = await rest(server, "PATCH", f"{channel}/{member_message.id}", {"content": "mine"})
    assert status == 403 and body["code"] == 50005
    status, _ = await rest(server, "DELETE", f"{channel}/{member_message.id}")  # Manage Messages
    assert status == 204 and member_message.deleted
    status, body = await rest(server, "GET", f"{channel}/{reply.id}")
    assert body["referenced_message"] is None  # what discord.py turns into DeletedReferencedMessage
    status, body = await rest(server, "GET", f"{channel}/{member_message.id}")
    assert status == 404 and body["code"] == 10008
    status, _ = await rest(server, "POST", f"/channels/{server.general.id}/typing")
    assert status == 204
    assert not server.contract_violations


async def test_message_create_carries_what_discord_sends(server: LoopbackDiscord, bot: DemoBot) -> None:
    assert server.general is not None and server.member is not None
    first = await server.post_message(server.general, f"hi {server.bot_user.mention}")
    answer = await server.wait_reply(first)
    reply = await server.post_message(server.general, "thanks", reply_to=answer)
    [session] = server.gateway.sessions.values()
    [frame] = [f for f in session.sent if f["t"] == "MESSAGE_CREATE" and f["d"]["id"] == str(reply.id)]
    data = frame["d"]
    assert data["type"] == 19 and data["author"]["id"] == str(server.member.id)
    assert "user" not in data["member"] and data["member"]["roles"] == []
    assert data["message_reference"] == {
        "type": 0,
        "message_id": str(answer.id),
        "channel_id": str(server.general.id),
        "guild_id": str(server.general.guild_id),
    }
    assert (
        data["referenced_message"]["id"] == str(answer.id)
        and "referenced_message" not in data["referenced_message"]
    )
    [mentioned] = data["mentions"]
    assert mentioned["id"] == str(server.bot_user.id) and "roles" in mentioned["member"]
    assert data["content"] == "thanks" and data["edited_timestamp"] is None and data["components"] == []


async def test_history_pages_before_and_after_a_message(server: LoopbackDiscord) -> None:
    assert server.general is not None
    posted = [await server.post_message(server.general, f"m{i}") for i in range(5)]
    ids = [str(m.id) for m in posted]
    path = f"/channels/{server.general.id}/messages"
    _, newest = await rest(server, "GET", f"{path}?limit=2")
    _, before = await rest(server, "GET", f"{path}?limit=2&before={ids[3]}")
    _, after = await rest(server, "GET", f"{path}?limit=2&after={ids[0]}")
    _, around = await rest(server, "GET", f"{path}?limit=3&around={ids[2]}")
    assert [m["id"] for m in newest] == [ids[4], ids[3]]  # newest first, as Discord answers
    assert [m["id"] for m in before] == [ids[2], ids[1]]
    assert [m["id"] for m in after] == [ids[2], ids[1]]
    assert [m["id"] for m in around] == [ids[3], ids[2], ids[1]]


async def test_a_reply_to_a_slash_commands_answer_reaches_the_bot(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    handle = await server.invoke("tools calc add", {"a": 1, "b": 2})
    await handle.wait_final()
    assert handle.original is not None and server.general is not None
    reply = await server.post_message(server.general, "and times?", reply_to=handle.original)
    got = await seen(server, bot, reply)
    resolved = got.reference.resolved if got.reference else None
    assert isinstance(resolved, discord.Message) and resolved.id == handle.original.id
    assert resolved.type is discord.MessageType.chat_input_command and resolved.content == handle.content
    assert (
        resolved.interaction_metadata is not None and resolved.interaction_metadata.user.id == reply.author_id
    )
    answer = await server.wait_reply(reply)
    assert answer.content == "heard 'and times?' (edited)"
