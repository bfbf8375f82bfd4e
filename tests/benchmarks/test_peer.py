"""The peer benchmark's own parts that need no llmcord: the pinned source check, llmcord's config
and how its streamed reply is read off the loopback server's record."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import peer
from loopback import LoopbackDiscord, MessageRecord, Version
from model_service.types import GenerationParams


def test_the_blob_id_is_gits(tmp_path: Path) -> None:
    path = tmp_path / "llmcord.py"
    path.write_bytes(b"print('hi')\n")
    done = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip("no git here")
    assert peer.git_blob_id(path.read_bytes()) == done.stdout.strip()


def test_a_missing_or_other_source_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer, "LLMCORD_URL", "http://127.0.0.1:9/llmcord.py")  # nothing listens there
    missing = peer.llmcord_source(tmp_path / "llmcord.py")
    assert isinstance(missing, str) and peer.LLMCORD_COMMIT in missing and "--llmcord" in missing
    other = tmp_path / "other.py"
    other.write_text("import discord\n")
    assert "is not llmcord.py" in str(peer.llmcord_source(other))


def test_llmcord_samples_as_the_bot_does_and_every_answer_is_as_long() -> None:
    config = peer.llmcord_config("token", "http://127.0.0.1:1/v1", 64)
    sampling = config["models"]["llama-server/smollm2"]
    defaults = GenerationParams()
    assert (sampling["temperature"], sampling["top_p"], sampling["top_k"]) == (
        defaults.temperature,
        defaults.top_p,
        defaults.top_k,
    )
    assert sampling["max_tokens"] == 64 and sampling["ignore_eos"] is True and sampling["min_p"] == 0
    assert config["providers"]["llama-server"]["base_url"] == "http://127.0.0.1:1/v1"


async def test_the_first_text_and_the_final_edit_are_read_from_the_embeds() -> None:
    server = LoopbackDiscord()
    assert server.general is not None
    asked = await server.post_message(server.general, f"{server.bot_user.mention} Once upon a time")
    start = asked.versions[0]

    def version(description: str, at: float) -> Version:
        return replace(start, content="", embeds=({"description": description},), at=at)

    reply = MessageRecord(
        id=server.state.ids.next(),
        channel_id=asked.channel_id,
        guild_id=asked.guild_id,
        author_id=server.bot_user.id,
        kind="channel",
        versions=[version("there" + peer.STREAMING_INDICATOR, start.at + 1)],
        reference_id=asked.id,
    )
    server.state.log_message(reply)
    assert peer.llmcord_times(server, asked) is None  # still streaming
    reply.versions.append(version("there was a" + peer.STREAMING_INDICATOR, start.at + 2))
    reply.versions.append(version("there was a cat.", start.at + 3))
    assert peer.llmcord_times(server, asked) == (start.at + 1, start.at + 3)
