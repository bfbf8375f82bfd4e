"""A crowd on the real bot: requests past the batch wait instead of being refused, each reply
showing its place until it starts, and Stop takes a waiting request out."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from transformers import GPT2LMHeadModel

from loopback import LoopbackDiscord
from tests.e2e.harness import BotRunner, has_footer
from tests.e2e.test_controls import custom_id, enabled

pytestmark = pytest.mark.timeout(120)
PLACE = re.compile(r"⏳ (\d+)(?:st|nd|rd|th) in the queue")


@pytest.fixture
def slow_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    original = GPT2LMHeadModel.forward

    def forward(self: GPT2LMHeadModel, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GPT2LMHeadModel, "forward", forward)


async def test_a_crowd_waits_its_turn_showing_its_place_and_all_are_answered(
    server: LoopbackDiscord, runner: BotRunner, slow_forward: None
) -> None:
    await runner.start(MAX_BATCH_SIZE="1")
    options = {"prompt": "Once upon a time", "max_new_tokens": 30, "temperature": 0}
    records = [await server.invoke("generate", options) for _ in range(4)]
    last = records[-1]
    await last.wait_for(lambda r: "in the queue" in (r.content or ""), 30)
    assert (last.content or "").startswith("**Once upon a time**\n⏳ 3rd in the queue, about ")
    assert last.original is not None and "Stop" in enabled(last.original)  # Stop works while waiting
    # Stop while waiting: the third leaves the queue; the others are answered.
    third = records[2]
    await third.wait_for(lambda r: "in the queue" in (r.content or ""), 30)
    assert third.original is not None
    click = await server.click(third.original, custom_id(third.original, "Stop"))
    await click.wait_response()
    for record in (records[0], records[1], records[3]):
        await record.wait_for(has_footer, 60)
    await third.wait_final(30)
    assert "in the queue" not in (third.content or "")
    assert all("busy" not in (r.content or "") for r in records)
    places = [int(m.group(1)) for e in last.edits if (m := PLACE.search(e.content))]
    assert places and places == sorted(places, reverse=True)  # it only ever moves up
