"""The default model a new user gets (SmolLM2-135M-Instruct), on the seed examples.

Needs the converted folder that ``python -m model_service.fetch`` (run by ``make setup``)
writes to ``models/``; ``MODELS_DIR`` points elsewhere. Skipped, with the reason, without it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from model_service.service import ModelService
from model_service.types import FillMaskRequest, GenerationParams, GenerationRequest
from tests.fixtures.tiny_models import service_config

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "SmolLM2-135M-Instruct"
MODEL_DIR = Path(os.environ.get("MODELS_DIR") or REPO_ROOT / "models") / MODEL_NAME

pytestmark = [
    pytest.mark.default_model,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(
        not (MODEL_DIR / "config.json").is_file(),
        reason=f"default model not fetched: no {MODEL_DIR / 'config.json'} "
        "(run `python -m model_service.fetch`, or set MODELS_DIR)",
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service() -> AsyncIterator[ModelService]:
    """Loaded once for the module: the model takes a second or two to load."""
    config = service_config({"smollm2": MODEL_DIR}, preload=True, request_timeout_s=120.0)
    async with ModelService(config) as running:
        yield running


async def test_seed_example_tells_a_story(service: ModelService) -> None:
    # The source document's example: sampling with top_p 0.95 and temperature 0.7.
    values = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 20}
    result = await service.generate(GenerationRequest("Once upon a time", service.params(values)))
    assert result.text.strip()
    assert len(result.text.split()) >= 3
    assert 0 < result.generated_tokens <= 20
    assert result.finish_reason in ("length", "eos")
    assert not result.text.startswith("Once upon a time")  # the continuation only


async def test_seeded_sampling_repeats(service: ModelService) -> None:
    values = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 12, "seed": 42}
    request = GenerationRequest("Once upon a time", service.params(values))
    first = await service.generate(request)
    assert (await service.generate(request)).text == first.text


async def test_chat_mode_answers(service: ModelService) -> None:
    request = GenerationRequest(
        "What is the capital of France?",
        GenerationParams.from_values({"temperature": 0, "max_new_tokens": 30}),
        mode="chat",
        system_prompt="You are a helpful assistant.",
    )
    stream = service.stream(request)
    deltas = [delta async for delta in stream]
    assert stream.result is not None
    assert "".join(deltas) == stream.result.text
    assert "Paris" in stream.result.text
    assert stream.result.finish_reason == "eos"  # a short answer ends itself
    assert "<|im_end|>" not in stream.result.text and "<|im_start|>" not in stream.result.text


async def test_fills_the_capital_of_france(service: ModelService) -> None:
    result = await service.fill_mask(FillMaskRequest("The capital of France is [MASK].", top_k=5))
    assert result.method == "causal_rescore"
    best = result.predictions[0]
    assert best.token == " Paris"
    assert best.sequence == "The capital of France is Paris."
    assert best.score > 0.5


async def test_fills_the_dog(service: ModelService) -> None:
    result = await service.fill_mask(FillMaskRequest("The [MASK] barked at the mailman.", top_k=5))
    assert " dog" in [p.token for p in result.predictions[:3]]


async def test_status_names_the_default_model(service: ModelService) -> None:
    (info,) = service.status().models
    assert info.name == "smollm2"
    assert 100_000_000 < info.parameters < 200_000_000


# -- the other tasks out of the box: the default model's fallbacks ---------------------------------

POSITIVE_REVIEW = (
    "I loved this movie! The acting was wonderful and the story kept me smiling. Highly recommended."
)
NEGATIVE_REVIEW = (
    "This was the worst film I have ever seen. Boring, badly acted, and a complete waste of money."
)


@pytest.mark.parametrize(
    ("review", "expected"), [(POSITIVE_REVIEW, "positive"), (NEGATIVE_REVIEW, "negative")]
)
async def test_zero_shot_classify_tells_a_plainly_positive_review_from_a_negative_one(
    service: ModelService, review: str, expected: str
) -> None:
    from model_service.types import ClassifyRequest

    result = await service.classify(ClassifyRequest(review, ("positive", "negative")))
    assert result.method == "causal-zero-shot" and result.model == "smollm2"
    assert result.scores[0].label == expected, result.scores
    assert sum(s.score for s in result.scores) == pytest.approx(1.0)


async def test_summarize_and_translate_ask_the_instruct_model(service: ModelService) -> None:
    from model_service.types import RewriteRequest

    params = GenerationParams(max_new_tokens=40, temperature=0)
    for request in (
        RewriteRequest("summarize", POSITIVE_REVIEW, params=params),
        RewriteRequest("translate", "Good morning, my friend.", to="French", params=params),
    ):
        stream = await service.rewrite(request)
        text = "".join([delta async for delta in stream])
        assert (stream.model, stream.method) == ("smollm2", "instruct")
        assert text.strip() and "<|im_" not in text


async def test_tokenize_the_default_model_shows_its_byte_level_pieces(service: ModelService) -> None:
    from model_service.types import TokenizeRequest

    result = await service.tokenize(TokenizeRequest("Hello, world! 你好 🤗"))
    assert result.algorithm == "byte-level BPE" and result.context_length == 8192
    assert [p.text for p in result.pieces[:3]] == ["Hello", ",", " world"]
    assert any(p.partial for p in result.pieces)
