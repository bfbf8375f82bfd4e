"""The remote engine against a real llama-server on loopback, serving the default model's GGUF.

``xllamacpp`` serves it over HTTP on a free port; the same service also runs the GGUF on the
in-process llama.cpp engine, so the remote engine's text can be compared with it. Three catalog
names: ``remote`` (the server, with the model's own tokenizer from its twin folder: prompts go as
token ids), ``plain`` (the same server, no tokenizer: text and chat messages) and ``local``.
Skipped, with the reason, where the default model has not been fetched.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from model_service.engines import llamacpp
from model_service.errors import ModelUnavailableError
from model_service.service import ModelService
from model_service.types import FillMaskRequest, GenerationParams, GenerationRequest
from tests.fixtures.openai_servers import llama_server
from tests.fixtures.tiny_models import service_config

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("MODELS_DIR") or REPO_ROOT / "models")
GGUF = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
TWIN = MODELS / "SmolLM2-135M-Instruct"
SLOT_CONTEXT = 512

pytestmark = [
    pytest.mark.default_model,
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not GGUF.is_file(), reason=f"default model not fetched: no {GGUF}"),
    pytest.mark.skipif(llamacpp.unavailable() is not None, reason=str(llamacpp.unavailable())),
]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with llama_server(GGUF, slots=4, context=SLOT_CONTEXT) as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(server_url: str) -> AsyncIterator[ModelService]:
    if not (TWIN / "config.json").is_file():
        pytest.skip(f"the default model's twin folder is missing: no {TWIN / 'config.json'}")
    config = service_config(
        {"remote": server_url, "plain": server_url, "local": GGUF},
        remote_tokenizers={"remote": str(TWIN)},
        max_batch_size=4,
        llama_context=SLOT_CONTEXT,
        preload=True,  # the default (remote): its tokenizer, and a first look at the server
    )
    async with ModelService(config) as running:
        yield running


def request(
    model: str, max_new_tokens: int = 24, prompt: str = "Once upon a time", **values: Any
) -> GenerationRequest:
    params = GenerationParams.from_values({"temperature": 0, "max_new_tokens": max_new_tokens, **values})
    return GenerationRequest(prompt, params, model=model)


def chat(model: str) -> GenerationRequest:
    params = GenerationParams.from_values({"temperature": 0, "max_new_tokens": 16})
    return GenerationRequest("Hello!", params, model=model, mode="chat", system_prompt="You are a pirate.")


async def busy_slots(server_url: str) -> int:
    """Slots llama-server is working in now (its /slots endpoint, beside /v1)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(server_url.removesuffix("/v1") + "/slots") as resp,
    ):
        return sum(1 for slot in await resp.json() if slot["is_processing"])


async def until_idle(server_url: str, timeout: float = 3.0) -> float:
    begun = time.monotonic()
    while await busy_slots(server_url):
        assert time.monotonic() - begun < timeout, "llama-server still works on a closed stream"
        await asyncio.sleep(0.02)
    return time.monotonic() - begun


async def test_greedy_text_is_the_in_process_engines(service: ModelService) -> None:
    local = await service.generate(request("local"))
    for name in ("remote", "plain"):  # as token ids with our tokenizer; as text, tokenized there
        remote = await service.generate(request(name))
        assert remote.text == local.text, name
        assert (remote.finish_reason, remote.generated_tokens, remote.prompt_tokens) == ("length", 24, 4)


async def test_chat_mode_is_the_in_process_engines_too(service: ModelService) -> None:
    # remote: our chat template, as token ids to /v1/completions; plain: messages to
    # /v1/chat/completions, the server's copy of the same template.
    local = await service.generate(chat("local"))
    assert local.text
    for name in ("remote", "plain"):
        result = await service.generate(chat(name))
        assert result.text == local.text, name
        assert result.prompt_tokens == local.prompt_tokens


async def test_the_same_seed_gives_the_same_text_and_another_seed_other_text(service: ModelService) -> None:
    def sampled(seed: int) -> GenerationRequest:
        return request("plain", 24, temperature=1.5, top_p=1.0, top_k=50, repetition_penalty=1.1, seed=seed)

    first, again, other = [(await service.generate(sampled(s))).text for s in (7, 7, 8)]
    assert first == again != other


async def test_deltas_stream_as_the_server_writes(service: ModelService) -> None:
    stream = service.stream(request("remote", 32))
    deltas = [delta async for delta in stream]
    assert stream.result is not None and len(deltas) > 1
    assert "".join(deltas) == stream.result.text
    assert stream.result.first_token_s is not None and stream.result.first_token_s < stream.result.elapsed_s


async def test_closing_a_stream_frees_the_servers_slot(service: ModelService, server_url: str) -> None:
    stream = service.stream(request("remote", 400))
    async for _ in stream:
        break
    assert await busy_slots(server_url) == 1
    await stream.aclose()
    assert await until_idle(server_url) < 1.0
    assert stream.result is None or stream.result.finish_reason == "cancelled"
    assert service.status().running == 0


async def test_a_stop_sequence_cuts_the_text_and_ends_the_request(
    service: ModelService, server_url: str
) -> None:
    full = (await service.generate(request("remote", 24))).text
    stop = full[10:14]
    result = await service.generate(request("remote", 400, stop=[stop]))
    assert (result.finish_reason, result.text) == ("stop", full[: full.index(stop)])
    assert await until_idle(server_url) < 1.0  # the server does not write on to 400 tokens


async def test_a_deadline_returns_the_partial_text(service: ModelService, server_url: str) -> None:
    result = await service.generate(request("remote", 400), timeout=1.0)
    assert result.finish_reason == "timeout"
    assert 0 < result.generated_tokens < 400 and result.text
    await until_idle(server_url)


async def test_rows_run_together_in_the_servers_slots(service: ModelService) -> None:
    alone = (await service.generate(request("remote", 16))).text
    hot = [request("remote", 16, prompt=f"Story {i}:", temperature=1.2, seed=i) for i in range(3)]
    together = await asyncio.gather(
        service.generate(request("remote", 16)), *(service.generate(r) for r in hot)
    )
    assert together[0].text == alone
    assert all(r.generated_tokens == 16 for r in together)


async def test_a_long_prompt_is_cut_to_the_servers_slot(service: ModelService) -> None:
    result = await service.generate(request("remote", 16, prompt="word " * 800))
    assert result.prompt_truncated
    assert result.prompt_tokens + 16 <= SLOT_CONTEXT  # llama-server's /v1/models said 512 a slot


async def test_fill_mask_on_llama_server_says_why_it_cannot(service: ModelService, server_url: str) -> None:
    with pytest.raises(ModelUnavailableError) as caught:
        await service.fill_mask(FillMaskRequest("The capital of France is [MASK].", model="plain"))
    assert caught.value.message == (
        f"model `plain` can't fill masks here: its llama.cpp server at {server_url} returns no "
        "log-probabilities of prompt tokens (llama-server does not honour `echo`), and ranking the "
        "candidate sentences needs them. Use a masked LM for /fill (FILL_MODEL), serve this model with "
        "vLLM or SGLang, or name a local copy with its weights in REMOTE_TOKENIZERS to fill on"
    )


async def test_fill_mask_falls_back_to_the_local_copy(service: ModelService) -> None:
    result = await service.fill_mask(FillMaskRequest("The capital of France is [MASK].", model="remote"))
    assert result.predictions[0].token == " Paris" and result.method == "causal_rescore"


async def test_status_names_each_server_and_what_it_serves(service: ModelService, server_url: str) -> None:
    infos = {m.name: m for m in service.status().models if m.engine == "llama.cpp server"}
    assert set(infos) == {"remote", "plain"}
    for info in infos.values():
        assert (info.device, info.dtype, info.parameters) == (server_url, GGUF.name, 134_515_008)
    assert infos["remote"].task == "generate, fill-mask (on the local copy)"
    assert infos["plain"].task == "generate"
