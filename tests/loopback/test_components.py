"""Clicking buttons on the bot's messages: a real discord.py bot with persistent DynamicItem buttons."""

from __future__ import annotations

import aiohttp
import discord
import pytest

from loopback import InteractionRecord, InvalidInvocation, LoopbackDiscord, MessageRecord, Version
from tests.loopback.demo_bot import DemoBot

pytestmark = pytest.mark.timeout(30)


def custom_ids(message: MessageRecord) -> list[str]:
    return [c["custom_id"] for row in message.latest.components for c in row["components"]]


async def menu(server: LoopbackDiscord, **options: object) -> MessageRecord:
    handle = await server.invoke("menu", options)
    await handle.wait_content("pick one")
    assert handle.original is not None
    return handle.original


async def test_a_click_reaches_the_dynamic_item_with_its_user_and_message(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    message = await menu(server)
    assert custom_ids(message) == [
        "choice:edit:1",
        "choice:peek:1",
        "choice:swap:1",
        "choice:drop:1",
        "choice:off:1",
    ]
    assert server.moderator is not None
    click = await server.click(message, "choice:edit:1", user=server.moderator)
    await click.wait_final()
    assert bot.clicks == [("choice:edit:1", server.moderator.id, message.id)]
    assert click.command == "component:choice:edit:1" and click.target is message
    payload = click.payload
    assert payload["type"] == 3 and payload["data"] == {"custom_id": "choice:edit:1", "component_type": 2}
    assert payload["message"]["id"] == str(message.id) and payload["channel_id"] == str(message.channel_id)


async def test_defer_then_edit_original_edits_the_clicked_message(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    message = await menu(server)
    click = await server.click(message, "choice:edit:1")
    await click.wait_final()
    assert click.callback_type == 6 and click.deferred and not click.is_thinking
    assert click.original is message  # no new message: @original is the one clicked
    assert [v.content for v in click.edits] == ["chose 1"]
    assert click.content == "chose 1" and message.edited_iso is not None
    assert custom_ids(message)[0] == "choice:edit:2"  # the view came with the edit
    assert [v.content for v in message.versions] == ["pick one", "chose 1"]
    again = await server.click(message, "choice:edit:2")  # the new buttons work too
    await again.wait_content("chose 2")
    with pytest.raises(InvalidInvocation, match="no component 'choice:edit:1'"):
        await server.click(message, "choice:edit:1")  # the old one is gone
    assert not server.contract_violations and not server.unmatched_calls


async def test_an_ephemeral_answer_is_a_new_message_only_its_user_may_click(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    message = await menu(server)
    click = await server.click(message, "choice:peek:1")
    await click.wait_final()
    peeked = click.original
    assert click.callback_type == 4 and click.ephemeral and peeked is not None and peeked is not message
    assert peeked.content == "peeked 1" and peeked.reference_id == message.id
    assert message.versions[-1].content == "pick one"  # the menu itself is untouched
    assert server.general is not None and peeked not in server.channel_messages(server.general)
    with pytest.raises(InvalidInvocation, match="ephemeral"):
        await server.click(peeked, "choice:edit:1", user=server.moderator)
    own = await server.click(peeked, "choice:edit:1")  # its user may: it edits the ephemeral message
    await own.wait_content("chose 1")
    assert own.original is peeked and peeked.ephemeral


async def test_update_message_in_the_callback_replaces_content_and_buttons(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    message = await menu(server)
    click = await server.click(message, "choice:swap:1")
    await click.wait_final()
    assert click.callback_type == 7 and click.original is message and click.edits == []
    assert message.content == "swapped 1" and message.latest.components == ()
    assert click.payloads == [click.callback_data]


async def test_clicks_the_client_would_not_send_are_refused(server: LoopbackDiscord, bot: DemoBot) -> None:
    message = await menu(server)
    with pytest.raises(InvalidInvocation, match="no component 'choice:nope:1'"):
        await server.click(message, "choice:nope:1")
    with pytest.raises(InvalidInvocation, match="disabled"):
        await server.click(message, "choice:off:1")
    forced = await server.click(message, "choice:off:1", strict=False)  # what a bot must still refuse
    await forced.wait_content("off?")
    assert bot.clicks[-1][0] == "choice:off:1"
    drop = await server.click(message, "choice:drop:1")
    await drop.wait_for(lambda h: message.deleted)
    with pytest.raises(InvalidInvocation, match="deleted"):
        await server.click(message, "choice:edit:1")


async def test_the_deadline_and_a_second_answer_apply_to_clicks(
    server: LoopbackDiscord, bot: DemoBot
) -> None:
    message = await menu(server, late=True)
    server.state.response_deadline = 0.2
    late = await server.click(message, "choice:late:1")
    await late.wait_for(lambda h: h.expired, timeout=5)
    assert not late.responded
    await server.wait_for(lambda: bool(bot.errors), what="the bot to see the error")
    assert isinstance(bot.errors[0], discord.NotFound) and bot.errors[0].code == 10062
    server.state.response_deadline = 3.0
    swap = await server.click(message, "choice:swap:1")
    await swap.wait_final()
    await answer_again(server, swap)


async def answer_again(server: LoopbackDiscord, record: InteractionRecord) -> None:
    url = f"{server.api_base}/interactions/{record.id}/{record.token}/callback"
    async with aiohttp.ClientSession() as http, http.post(url, json={"type": 6}) as resp:
        assert resp.status == 400 and (await resp.json())["code"] == 40060


def test_build_click_gives_the_payload_to_alter() -> None:
    server = LoopbackDiscord()
    assert server.general is not None and server.member is not None
    message = MessageRecord(
        id=server.state.ids.next(),
        channel_id=server.general.id,
        guild_id=server.general.guild_id,
        author_id=server.bot_user.id,
        kind="channel",
    )
    row = {"type": 1, "components": [{"type": 2, "style": 1, "label": "Go", "custom_id": "go"}]}
    message.versions.append(Version("hi", (), (), (row,), 0, None, 0.0))
    server.state.messages[message.id] = message
    payload = server.build_click(message, "go")
    assert payload["member"]["user"]["id"] == str(server.member.id)
    assert payload["message"]["components"] == [row] and "referenced_message" not in payload["message"]
    select = {"type": 1, "components": [{"type": 3, "custom_id": "pick", "options": []}]}
    message.versions.append(Version("hi", (), (), (select,), 0, None, 0.0))
    with pytest.raises(InvalidInvocation, match="string select, not a button"):
        server.build_click(message, "pick")
