"""A reply being written survives an edit that Discord refuses with a 429 or a 5xx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import discord
import pytest

from core.streaming import stream_reply
from model_service import GenerationResult


class Stream:
    def __init__(self, deltas: list[str]) -> None:
        self.deltas = deltas
        self.result: GenerationResult | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        for delta in self.deltas:
            await asyncio.sleep(0.01)
            yield delta
        self.result = GenerationResult("".join(self.deltas), "length", 3, len(self.deltas), False, "m", 0.1)

    async def aclose(self) -> None:
        pass

    def queue_place(self) -> tuple[int, float] | None:
        return None


class Surface:
    """Refuses the first edit with ``status``, as Discord does once discord.py's retries ran out."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.shown: list[str] = []
        self.final: str | None = None

    async def begin(self) -> None:
        pass

    async def show(self, text: str, view: object) -> None:
        if not self.shown:
            self.shown.append("refused")
            raise discord.HTTPException(SimpleNamespace(status=self.status, reason="x"), {"message": "no"})
        self.shown.append(text)

    async def interrupted(self, shown: str, view: object) -> None:
        pass

    async def finish(self, text: str, view: object) -> int | None:
        self.final = text
        return 1


@pytest.mark.parametrize("status", [429, 500, 502])
async def test_a_refused_edit_while_writing_does_not_end_the_reply(status: int) -> None:
    surface = Surface(status)
    result, _ = await stream_reply(surface, Stream(["a", "b", "c", "d"]), header="H\n", interval=0.0)  # type: ignore[arg-type]
    assert result.text == "abcd"
    assert surface.final is not None and surface.final.startswith("H\nabcd\n")
    assert len(surface.shown) > 1  # the later edits went on


async def test_an_edit_refused_for_good_still_ends_the_reply() -> None:
    surface = Surface(404)  # the interaction is gone (unknown webhook): no later edit can work
    with pytest.raises(discord.HTTPException):
        await stream_reply(surface, Stream(["a", "b"]), header="H\n", interval=0.0)  # type: ignore[arg-type]
