"""Inside the model: every figure the pictures show is the model's own.

``next_tokens`` on each engine against the model run directly (transformers' ``AutoModelForCausalLM``,
the softmax of the last position's logits), or against the other engine on the same weights;
``token_probabilities`` (teacher forcing) against the probabilities of a greedy generation taken
step by step; and the clear refusals where an engine or a model can't give them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from model_service.api import ProbabilitiesAPI
from model_service.engines import llamacpp
from model_service.errors import ModelUnavailableError, ValidationError
from model_service.service import ModelService
from model_service.types import (
    GenerationParams,
    GenerationRequest,
    NextTokenRequest,
    TokenProbabilitiesRequest,
)
from tests.fixtures.openai_servers import EchoLogprobServer, FakeServer, llama_server
from tests.fixtures.tiny_models import service_config

pytestmark = pytest.mark.timeout(120)

PROMPT = "Once upon a time"
needs_llama = pytest.mark.skipif(llamacpp.unavailable() is not None, reason=str(llamacpp.unavailable()))


def direct_next(folder: Path, prompt: str, k: int) -> list[tuple[int, float]]:
    """The model run directly: the softmax of the last position's logits, its top k."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(**tokenizer(prompt, return_tensors="pt")).logits[0, -1]
    values, ids = logits.softmax(-1).topk(k)
    return list(zip(ids.tolist(), values.tolist(), strict=True))


def test_the_request_is_checked_at_the_edge() -> None:
    with pytest.raises(ValidationError, match="top_k"):
        NextTokenRequest(PROMPT, top_k=21)
    with pytest.raises(ValidationError, match="prompt"):
        NextTokenRequest("")
    assert NextTokenRequest(PROMPT).generation().params.max_new_tokens == 1


async def test_transformers_gives_the_softmax_of_the_last_logits(
    tiny_gpt2_dir: Path, tiny_bert_dir: Path
) -> None:
    config = service_config({"tiny": tiny_gpt2_dir, "bert": tiny_bert_dir})
    async with ModelService(config) as service:
        assert isinstance(service, ProbabilitiesAPI)
        result = await service.next_tokens(NextTokenRequest(PROMPT, top_k=12))
        tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
        expected = direct_next(tiny_gpt2_dir, PROMPT, 12)
        assert [t.id for t in result.tokens] == [i for i, _ in expected]
        assert [t.probability for t in result.tokens] == pytest.approx([p for _, p in expected], abs=1e-5)
        assert [t.token for t in result.tokens] == [tokenizer.decode([i]) for i, _ in expected]
        assert (result.model, result.source) == ("tiny", "transformers")
        assert result.prompt_tokens == len(tokenizer(PROMPT)["input_ids"]) and not result.prompt_truncated
        with pytest.raises(ModelUnavailableError, match=r"needs a causal LM .* model `bert` is a masked LM"):
            await service.next_tokens(NextTokenRequest(PROMPT, model="bert"))


async def test_how_sure_it_was_is_each_greedy_steps_probability(tiny_gpt2_dir: Path) -> None:
    async with ModelService(service_config({"tiny": tiny_gpt2_dir})) as service:
        request = GenerationRequest(
            PROMPT, GenerationParams.from_values({"temperature": 0, "max_new_tokens": 6})
        )
        written = await service.generate(request)
        result = await service.token_probabilities(TokenProbabilitiesRequest(request, written.text))
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir, dtype=torch.float32).eval()
    ids = tokenizer(PROMPT)["input_ids"]
    expected = []
    with torch.no_grad():  # step by step, as greedy decoding chose each token
        for token_id in tokenizer(written.text, add_special_tokens=False)["input_ids"]:
            probs = model(input_ids=torch.tensor([ids])).logits[0, -1].softmax(-1)
            expected.append((token_id, float(probs[token_id])))
            ids.append(token_id)
    assert [(t.id, t.token) for t in result.tokens] == [(i, tokenizer.decode([i])) for i, _ in expected]
    assert [t.probability for t in result.tokens] == pytest.approx([p for _, p in expected], abs=1e-5)
    assert (result.source, result.cut) == ("transformers", 0)


@needs_llama
async def test_llama_cpp_gives_what_transformers_gives_on_the_same_gguf(tiny_gguf_path: Path) -> None:
    config = service_config(
        {"llama": tiny_gguf_path, "tf": tiny_gguf_path},
        engines={"llama": "llama.cpp", "tf": "transformers"},
        llama_context=256,
    )
    async with ModelService(config) as service:
        on_llama = await service.next_tokens(NextTokenRequest(PROMPT, top_k=5, model="llama"))
        on_tf = await service.next_tokens(NextTokenRequest(PROMPT, top_k=5, model="tf"))
        text = TokenProbabilitiesRequest(GenerationRequest(PROMPT, model="llama"), " and then")
        scored = await service.token_probabilities(text)
    assert on_llama.source == "llama.cpp" and on_tf.source == "transformers"
    assert [t.id for t in on_llama.tokens] == [t.id for t in on_tf.tokens]
    assert [t.token for t in on_llama.tokens] == [t.token for t in on_tf.tokens]
    assert [t.probability for t in on_llama.tokens] == pytest.approx(
        [t.probability for t in on_tf.tokens], abs=2e-3
    )
    assert on_llama.prompt_tokens == on_tf.prompt_tokens
    assert scored.source == "transformers twin" and scored.tokens


async def test_a_vllm_server_gives_its_logprobs(tiny_gpt2_dir: Path) -> None:
    async with EchoLogprobServer(tiny_gpt2_dir) as server:
        config = service_config({"remote": server.url}, remote_tokenizers={"remote": str(tiny_gpt2_dir)})
        async with ModelService(config) as service:
            result = await service.next_tokens(NextTokenRequest(PROMPT, top_k=8))
        [body] = server.bodies
    expected = direct_next(tiny_gpt2_dir, PROMPT, 8)
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    assert (body["max_tokens"], body["logprobs"], body["temperature"], body["stream"]) == (1, 8, 0.0, False)
    assert body["prompt"] == tokenizer(PROMPT)["input_ids"]  # our tokenizer's ids, as a generation sends
    assert result.source == "remote"
    assert [t.token for t in result.tokens] == [tokenizer.decode([i]) for i, _ in expected]
    assert [t.probability for t in result.tokens] == pytest.approx([p for _, p in expected], abs=1e-5)


async def test_a_server_without_logprobs_is_refused_or_asked_of_its_local_copy(tiny_gpt2_dir: Path) -> None:
    async with FakeServer(owned_by="someone") as server:  # an OpenAI-compatible server: no logprobs
        config = service_config(
            {"bare": server.url, "copy": server.url}, remote_tokenizers={"copy": str(tiny_gpt2_dir)}
        )
        async with ModelService(config) as service:
            with pytest.raises(ModelUnavailableError, match="gives no log-probabilities over the OpenAI API"):
                await service.next_tokens(NextTokenRequest(PROMPT, model="bare"))
            with pytest.raises(ModelUnavailableError, match="REMOTE_TOKENIZERS"):
                await service.token_probabilities(
                    TokenProbabilitiesRequest(GenerationRequest(PROMPT, model="bare"), " and")
                )
            copied = await service.next_tokens(NextTokenRequest(PROMPT, top_k=3, model="copy"))
        assert not server.bodies  # nothing was asked of it
    assert copied.source == "transformers twin"
    assert [t.id for t in copied.tokens] == [i for i, _ in direct_next(tiny_gpt2_dir, PROMPT, 3)]


@pytest.fixture(scope="module")
def llama_url(tiny_gguf_path: Path) -> Iterator[str]:
    with llama_server(tiny_gguf_path, slots=1, context=256) as url:
        yield url


@needs_llama
async def test_llama_server_over_http_gives_what_the_in_process_engine_gives(
    tiny_gguf_path: Path, llama_url: str
) -> None:
    config = service_config(
        {"remote": llama_url, "local": tiny_gguf_path}, engines={"local": "llama.cpp"}, llama_context=256
    )
    async with ModelService(config) as service:
        remote = await service.next_tokens(NextTokenRequest(PROMPT, top_k=5, model="remote"))
        local = await service.next_tokens(NextTokenRequest(PROMPT, top_k=5, model="local"))
    assert remote.source == "remote"
    assert [t.id for t in remote.tokens] == [t.id for t in local.tokens]
    assert [t.probability for t in remote.tokens] == pytest.approx(
        [t.probability for t in local.tokens], abs=1e-4
    )
