"""Fill-mask on a server that gives prompt log-probabilities (``echo`` with ``logprobs``).

vLLM and SGLang need a GPU and are not installed here, so the server is
``tests/fixtures/openai_servers.EchoLogprobServer``: vLLM's documented answer shape, its numbers
computed by the default model's transformers twin. It checks our side of the wire format and the
ranking, not vLLM itself. Skipped, with the reason, where the default model has not been fetched.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from model_service.service import ModelService
from model_service.types import FillMaskRequest
from tests.fixtures.openai_servers import EchoLogprobServer
from tests.fixtures.tiny_models import service_config

REPO_ROOT = Path(__file__).resolve().parents[2]
TWIN = Path(os.environ.get("MODELS_DIR") or REPO_ROOT / "models") / "SmolLM2-135M-Instruct"
TEXT = "The capital of France is [MASK]."

pytestmark = [
    pytest.mark.default_model,
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not (TWIN / "config.json").is_file(), reason=f"default model not fetched: no {TWIN}"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def echo() -> AsyncIterator[EchoLogprobServer]:
    async with EchoLogprobServer(TWIN) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(echo: EchoLogprobServer) -> AsyncIterator[ModelService]:
    config = service_config(
        {"local": TWIN, "vllm": echo.url, "vllm-text": echo.url},
        remote_tokenizers={"vllm": str(TWIN)},  # vllm-text has none: its prompts go as text
    )
    async with ModelService(config) as running:
        yield running


async def test_the_ranking_is_the_local_engines(service: ModelService, echo: EchoLogprobServer) -> None:
    local = await service.fill_mask(FillMaskRequest(TEXT, top_k=10, model="local"))
    remote = await service.fill_mask(FillMaskRequest(TEXT, top_k=10, model="vllm"))
    assert remote.method == "causal_rescore" and remote.predictions[0].token == " Paris"
    assert local.predictions[0].token == " Paris"
    # Fewer proposals (vLLM caps logprobs at 20; the local path takes 40), the same order of those
    # both have: the sentences are scored on the same tokens.
    both = [p.token for p in remote.predictions if p.token in {q.token for q in local.predictions}]
    assert len(both) >= 3
    assert both == [p.token for p in local.predictions if p.token in both]
    proposals, scoring = echo.bodies[-2:]
    assert proposals["logprobs"] == 20 and not proposals["echo"] and isinstance(proposals["prompt"][0], list)
    assert scoring["echo"] and scoring["logprobs"] == 1 and scoring["max_tokens"] == 1


async def test_without_a_tokenizer_the_prompts_go_as_text(
    service: ModelService, echo: EchoLogprobServer
) -> None:
    result = await service.fill_mask(
        FillMaskRequest("The [MASK] barked at the mailman.", top_k=3, model="vllm-text")
    )
    assert result.predictions[0].token == " dog"
    assert isinstance(echo.bodies[-1]["prompt"][0], str)
    assert sum(p.score for p in result.predictions) <= 1.0 + 1e-9


async def test_status_says_the_server_fills(service: ModelService) -> None:
    infos = {m.name: m for m in service.status().models if m.engine == "vLLM server"}
    assert infos["vllm"].task == "generate, fill-mask"
    assert infos["vllm"].dtype == "echo-model"
