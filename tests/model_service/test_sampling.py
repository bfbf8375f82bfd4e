"""The batched sampler keeps exactly the tokens transformers' processors keep, row by row."""

from __future__ import annotations

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from model_service import GenerationParams
from model_service.sampling import TOP_P_WINDOW, candidates, draw

VOCAB = 5000


def reference(scores: torch.Tensor, params: GenerationParams) -> torch.Tensor:
    """transformers' warpers in the order the sampler applies them; the row's probabilities."""
    out = TemperatureLogitsWarper(params.temperature)(None, scores[None, :])
    if params.top_k:
        out = TopKLogitsWarper(params.top_k)(None, out)
    if params.top_p < 1.0:
        out = TopPLogitsWarper(params.top_p)(None, out)
    return out.softmax(-1)[0]


def dense(probs: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
    full = torch.zeros(VOCAB, dtype=torch.float64)
    if ids is None:
        full += probs.double()
    else:
        full[ids] = probs.double()
    return full / full.sum()


SETTINGS = [
    {"temperature": 0.7, "top_p": 0.95},  # the seed document's example: top_k 50, transformers' default
    {"temperature": 0.7, "top_p": 0.95, "top_k": 0},  # top_k off: top-p over the whole vocabulary
    {"temperature": 1.0, "top_p": 1.0},
    {"temperature": 1.3, "top_k": 40},
    {"temperature": 0.9, "top_k": 40, "top_p": 0.8},
    {"temperature": 2.0, "top_p": 0.99, "top_k": 0},  # flat: the nucleus is wider than the window
    {"temperature": 0.5, "top_k": 1},
    {"temperature": 1.0, "top_k": 600, "top_p": 0.97},  # top-k wider than the window
]


@pytest.mark.parametrize("peaked", [True, False], ids=["peaked", "flat"])
def test_each_row_keeps_what_the_transformers_warpers_keep(peaked: bool) -> None:
    generator = torch.Generator().manual_seed(5)
    scale = 6.0 if peaked else 0.5
    scores = torch.randn((len(SETTINGS), VOCAB), generator=generator) * scale
    params = [GenerationParams.from_values(v) for v in SETTINGS]
    for row, (probs, ids) in enumerate(candidates(scores.clone(), params)):
        expected = reference(scores[row], params[row]).double()
        got = dense(probs, ids)
        assert set(torch.nonzero(got).flatten().tolist()) == set(
            torch.nonzero(expected).flatten().tolist()
        ), row
        assert got.tolist() == pytest.approx(expected.tolist(), abs=1e-6), row


def test_a_nucleus_wider_than_the_window_is_found_whole() -> None:
    scores = torch.zeros((1, VOCAB))  # every token equally likely
    ((_probs, ids),) = candidates(
        scores, [GenerationParams.from_values({"temperature": 1.0, "top_p": 0.9, "top_k": 0})]
    )
    assert ids is not None and len(ids) > TOP_P_WINDOW
    assert len(ids) == pytest.approx(0.9 * VOCAB, abs=2)


def test_draw_follows_the_probabilities() -> None:
    generator = torch.Generator().manual_seed(11)
    probs = torch.tensor([0.0, 0.7, 0.0, 0.3])
    counts = [0, 0, 0, 0]
    for _ in range(2000):
        counts[draw(probs, generator, None)] += 1
    assert counts[0] == counts[2] == 0  # a token of zero share is never drawn
    assert 0.65 < counts[1] / 2000 < 0.75
    ids = torch.tensor([42, 7])
    assert {draw(torch.tensor([0.5, 0.5]), generator, ids) for _ in range(50)} == {42, 7}
