"""The server on its own: binding, the wire format, permissions, and building interactions."""

from __future__ import annotations

import aiohttp
import discord
import pytest
import yarl

from loopback import InvalidInvocation, LoopbackDiscord, Overwrite, Perm, point_discord_at

SCHEMA = [
    {
        "name": "tools",
        "description": "Nested",
        "options": [
            {
                "type": 2,
                "name": "calc",
                "description": "Arithmetic",
                "options": [
                    {
                        "type": 1,
                        "name": "add",
                        "description": "Adds",
                        "options": [
                            {"type": 4, "name": "a", "description": "a", "required": True, "min_value": 0},
                            {"type": 10, "name": "b", "description": "b", "required": True},
                            {"type": 3, "name": "label", "description": "l", "choices": [
                                {"name": "Sum", "value": "sum"}, {"name": "Total", "value": "total"}]},
                            {"type": 5, "name": "loud", "description": "l"},
                            {"type": 6, "name": "who", "description": "w"},
                        ],
                    }
                ],
            }
        ],
    }
]  # fmt: skip


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
async def test_refuses_to_bind_anything_but_loopback(host: str) -> None:
    server = LoopbackDiscord()
    with pytest.raises(ValueError, match=host.replace(".", r"\.")):
        await server.start(host=host)


async def test_urls_and_exact_json_content_type(server: LoopbackDiscord) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert server.api_base == server.url + "/api/v10"
    assert server.gateway_url.startswith("ws://127.0.0.1:")
    headers = {"Authorization": f"Bot {server.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(server.api_base + "/users/@me", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"
            assert (await resp.json())["id"] == str(server.bot_user.id)
        async with http.get(server.api_base + "/users/@me", headers={"Authorization": "Bot wrong"}) as resp:
            assert resp.status == 401


async def test_unknown_paths_answer_discords_404_and_are_recorded(server: LoopbackDiscord) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(server.api_base + "/channels/1/lunch", json={"x": 1}) as resp:
            assert resp.status == 404
            assert await resp.json() == {"message": "404: Not Found", "code": 0}
    [call] = server.unmatched_calls
    assert (call.method, call.path, call.json, call.status) == ("POST", "/channels/1/lunch", {"x": 1}, 404)


async def test_injected_429_looks_like_discords(server: LoopbackDiscord) -> None:
    rule = server.inject_429("GET", "/users/@me", retry_after=0.25)
    headers = {"Authorization": f"Bot {server.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(server.api_base + "/users/@me", headers=headers) as resp:
            assert resp.status == 429
            assert resp.headers["Via"] == "1.1 google"
            assert resp.headers["Content-Type"] == "application/json"
            assert resp.headers["X-RateLimit-Reset-After"] == "0.250"
            assert await resp.json() == {
                "message": "You are being rate limited.",
                "retry_after": 0.25,
                "global": False,
            }
        async with http.get(server.api_base + "/users/@me", headers=headers) as resp:
            assert resp.status == 200
    assert rule.hits == 1 and rule.exhausted


def test_point_discord_at_sets_and_restores_the_class_attributes() -> None:
    before = discord.http.Route.BASE
    with point_discord_at("http://127.0.0.1:1/api/v10/", "ws://127.0.0.1:1/gateway"):
        assert discord.http.Route.BASE == "http://127.0.0.1:1/api/v10"
        gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        assert isinstance(gateway, yarl.URL) and gateway.path == "/gateway"
    assert discord.http.Route.BASE == before
    with pytest.raises(ValueError, match="ws"):
        point_discord_at("http://127.0.0.1:1/api/v10", "http://127.0.0.1:1/gateway")


def test_permissions_follow_roles_and_overwrites() -> None:
    server = LoopbackDiscord()
    world = server.world
    assert server.moderator and server.member and server.owner and server.general and server.thread
    assert world.permissions(server.moderator, server.general) & Perm.MANAGE_CHANNELS
    assert not world.permissions(server.member, server.general) & Perm.MANAGE_CHANNELS
    assert world.permissions(server.owner, server.general) & Perm.ADMINISTRATOR
    assert server.guild is not None
    hidden = server.add_channel(
        "staff", overwrites=[Overwrite(server.guild.id, 0, deny=Perm.VIEW_CHANNEL)]
    )  # @everyone cannot see it
    assert world.permissions(server.member, hidden) == 0
    muted = server.add_thread(hidden, "staff-thread")
    assert world.permissions(server.member, muted) == 0  # a thread takes its parent's overwrites


def test_build_interaction_nests_subcommands_and_types_values() -> None:
    server = LoopbackDiscord()
    assert server.guild and server.thread and server.moderator
    [stored] = server.state.commands.put(None, SCHEMA)
    payload = server.build_interaction(
        "tools calc add",
        {"a": 2, "b": 3, "label": "total", "who": server.member},
        user=server.moderator,
        channel=server.thread,
    )
    assert payload["type"] == 2 and payload["version"] == 1
    assert payload["channel"]["id"] == str(server.thread.id)
    assert payload["channel"]["parent_id"] == str(server.thread.parent_id)
    assert payload["member"]["user"]["id"] == str(server.moderator.id)
    assert int(payload["member"]["permissions"]) & Perm.MANAGE_CHANNELS
    data = payload["data"]
    assert data["id"] == stored["id"] and data["name"] == "tools" and data["type"] == 1
    [group] = data["options"]
    [sub] = group["options"]
    assert (group["type"], group["name"], sub["type"], sub["name"]) == (2, "calc", 1, "add")
    values = {o["name"]: (o["type"], o["value"]) for o in sub["options"]}
    assert server.member is not None
    assert values == {"a": (4, 2), "b": (10, 3.0), "label": (3, "total"), "who": (6, str(server.member.id))}
    assert isinstance(values["b"][1], float)
    assert str(server.member.id) in data["resolved"]["users"]
    assert str(server.member.id) in data["resolved"]["members"]


@pytest.mark.parametrize(
    ("command", "options", "message"),
    [
        ("nope", {}, "not synced"),
        ("tools", {}, "needs a subcommand"),
        ("tools calc mul", {}, "no subcommand 'mul'"),
        ("tools calc add", {"a": 1}, "missing required options \\['b'\\]"),
        ("tools calc add", {"a": 1, "b": 2, "c": 3}, "unknown options \\['c'\\]"),
        ("tools calc add", {"a": 1.5, "b": 2}, "'a' must be an integer"),
        ("tools calc add", {"a": True, "b": 2}, "'a' must be an integer"),
        ("tools calc add", {"a": -1, "b": 2}, "'a' must be in \\[0, None\\]"),
        ("tools calc add", {"a": 1, "b": 2, "label": "avg"}, "'label' must be one of"),
        ("tools calc add", {"a": 1, "b": 2, "loud": "yes"}, "'loud' must be a boolean"),
    ],
)
def test_invocations_the_discord_client_would_not_send_are_refused(
    command: str, options: dict[str, object], message: str
) -> None:
    server = LoopbackDiscord()
    server.state.commands.put(None, SCHEMA)
    with pytest.raises(InvalidInvocation, match=message):
        server.build_interaction(command, options)


def test_strict_false_lets_a_test_send_what_the_client_would_refuse() -> None:
    server = LoopbackDiscord()
    server.state.commands.put(None, SCHEMA)
    payload = server.build_interaction("tools calc add", {"a": -5, "b": "NaN"}, strict=False)
    values = {o["name"]: o["value"] for o in payload["data"]["options"][0]["options"][0]["options"]}
    assert values == {"a": -5, "b": "NaN"}


def test_resync_keeps_command_ids() -> None:
    server = LoopbackDiscord()
    first = server.state.commands.put(None, SCHEMA)
    again = server.state.commands.put(None, [{**SCHEMA[0], "description": "changed"}])
    assert first[0]["id"] == again[0]["id"] and again[0]["description"] == "changed"
