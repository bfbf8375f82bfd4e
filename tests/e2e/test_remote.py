"""A remote model end to end: the real bot over the loopback server, its model on a model server.

With the server up (a real llama-server on loopback, serving the default GGUF), /generate streams
its text; with the server down, the bot starts anyway, /generate is refused at once naming the
server, and /status says the model is unreachable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopback import LoopbackDiscord
from model_service import GenerationParams, GenerationRequest
from tests.e2e.harness import BotRunner, all_text, has_footer, no_pings, run
from tests.fixtures.openai_servers import free_port, llama_server

pytestmark = pytest.mark.timeout(120)

MODELS = Path(os.environ.get("MODELS_DIR") or Path(__file__).resolve().parents[2] / "models")
GGUF = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
TWIN = MODELS / "SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    if not GGUF.is_file():
        pytest.skip(f"default model not fetched: no {GGUF}")
    with llama_server(GGUF, slots=2, context=512) as url:
        yield url


@pytest.mark.default_model
async def test_generate_streams_from_the_remote_server(
    server: LoopbackDiscord, runner: BotRunner, server_url: str
) -> None:
    await runner.start(MODELS=f"remote={server_url}", REMOTE_TOKENIZERS=f"remote={TWIN}")
    prompt = "Once upon a time"
    reply = await run(
        server, "generate", {"prompt": prompt, "max_new_tokens": 24, "temperature": 0}, until=has_footer
    )
    assert runner.service is not None
    expected = await runner.service.generate(
        GenerationRequest(prompt, GenerationParams(max_new_tokens=24, temperature=0))
    )
    text = all_text(reply)
    assert text.startswith(f"**{prompt}**{expected.text}"), text
    assert re.search(r"\n-# 24 tokens · \d+\.\d s · remote", text), text
    status = await run(server, "status")
    assert re.search(
        rf"^• \*\*remote\*\* on llama\.cpp server, `{re.escape(server_url)}` \({GGUF.name}, 134\.5M params\): generate",
        status.content or "",
        re.M,
    ), status.content


async def test_a_server_that_is_down_gets_a_clear_refusal_and_status_says_so(
    server: LoopbackDiscord, runner: BotRunner
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    await runner.start(MODELS=f"down={url}", PRELOAD_MODELS="true")  # starts although the server is down
    reply = await run(server, "generate", {"prompt": "Once upon a time"})
    assert all_text(reply) == (
        f"❌ model `down` is unreachable: its server at {url} does not answer (connection refused); "
        "it may be down or still starting. Try again later"
    ), reply.summary()
    assert no_pings(reply)
    status = await run(server, "status")
    assert re.search(
        rf"^• \*\*down\*\* on remote server, `{re.escape(url)}` \(\?, size not reported\): unreachable "
        r"\(connection refused, \d+ s ago\): its requests are refused until it answers$",
        status.content or "",
        re.M,
    ), status.content
