"""Discord's published contract (its OpenAPI spec of API v10), checked on every REST call."""

from __future__ import annotations

import aiohttp
import pytest

from loopback import LoopbackDiscord
from loopback.contract import Contract

COMMANDS = "/applications/1/commands"
CALLBACK = "/interactions/1/aW50/callback"


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract.bundled()


def command(**fields: object) -> dict[str, object]:
    return {"type": 1, "name": "generate", "description": "Continue your text", **fields}


def problems(contract: Contract, method: str, path: str, body: object) -> list[tuple[str, str]]:
    violation = contract.check(method, path, body)
    return list(violation.problems) if violation else []


def test_a_well_formed_sync_passes(contract: Contract) -> None:
    option = {"type": 3, "name": "prompt", "description": "The text", "required": True, "max_length": 6000}
    assert problems(contract, "PUT", COMMANDS, [command(options=[option])]) == []


def test_lengths_and_counts_the_spec_states_are_enforced(contract: Contract) -> None:
    assert problems(contract, "PUT", COMMANDS, [command(description="d" * 101)]) == [
        ("0.description", "Must be 100 or fewer in length.")
    ]
    choices = [{"name": f"c{i}", "value": f"v{i}"} for i in range(26)]
    option = {"type": 3, "name": "pick", "description": "Pick one", "choices": choices}
    assert problems(contract, "PUT", COMMANDS, [command(options=[option])]) == [
        ("0.options.0.choices", "Must be 25 or fewer in length.")
    ]


def test_rules_the_spec_leaves_out_are_enforced_too(contract: Contract) -> None:
    optional = {"type": 3, "name": "style", "description": "Style"}
    required = {"type": 3, "name": "prompt", "description": "The text", "required": True}
    found = problems(
        contract,
        "PUT",
        COMMANDS,
        [command(name="Generate", options=[optional, required]), command(), command(description="")],
    )
    assert ("0.name", "must be lower-case letters, digits, - or _, got 'Generate'") in found
    assert ("0.options.1", "required options must come before optional ones") in found
    assert ("", "names must be unique, 'generate' is used twice") in found
    assert ("2.description", "a slash command or option needs a description") in found
    too_many = [command(name=f"c{i}") for i in range(101)]
    assert ("", "at most 100 slash commands per scope, got 101") in problems(
        contract, "PUT", COMMANDS, too_many
    )


def test_a_union_reports_the_branch_the_body_meant(contract: Contract) -> None:
    body = {"type": 4, "data": {"content": "x" * 2001, "allowed_mentions": {"parse": []}}}
    assert problems(contract, "POST", CALLBACK, body) == [
        ("data.content", "Must be 2000 or fewer in length.")
    ]
    assert problems(contract, "POST", CALLBACK, {"type": 5}) == []


def test_snowflakes_may_be_numbers_and_literal_segments_win(contract: Contract) -> None:
    edit = {"content": "hi", "attachments": [{"id": 0}, {"id": "1"}]}
    operation = contract.find("PATCH", "/webhooks/1/aW50/messages/@original")
    assert operation is not None and operation.route.endswith("/messages/@original")
    assert problems(contract, "PATCH", "/webhooks/1/aW50/messages/@original", edit) == []
    assert contract.check("GET", "/not/a/discord/route", None) is None


async def test_the_server_answers_a_breach_as_discord_does() -> None:
    async with LoopbackDiscord() as server, aiohttp.ClientSession() as session:
        url = f"{server.api_base}/applications/{server.application_id}/commands"
        headers = {"Authorization": f"Bot {server.token}"}
        async with session.put(url, json=[command(description="")], headers=headers) as response:
            assert response.status == 400
            body = await response.json(content_type=None)
    assert body["code"] == 50035 and body["message"] == "Invalid Form Body"
    assert body["errors"]["0"]["description"]["_errors"][0]["message"].startswith("a slash command")
    assert [v.route for v in server.contract_violations] == ["/applications/{application_id}/commands"]
    assert server.synced_commands() == []  # nothing was stored
