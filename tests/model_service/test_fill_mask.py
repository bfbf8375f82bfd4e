"""Mask-filling: the masked-LM path (tiny BERT) and the causal fallback (tiny GPT-2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from model_service.engines.transformers import TransformersScorer
from model_service.errors import ValidationError
from model_service.fill_mask import (
    FEW_SHOT,
    PROPOSALS_PER_PROMPT,
    FillBatch,
    FillTask,
    MaskedText,
    _is_word,
    split_mask,
)
from model_service.fill_mask import fill as fill_with
from model_service.loading import LoadedModel, load
from model_service.service import ModelService
from model_service.types import FillMaskRequest, FillPrediction
from tests.fixtures.tiny_models import build_tiny_bert, service_config

SENTENCE = "The capital of France is [MASK]."


def fill(loaded: LoadedModel, text: str, top_k: int) -> list[FillPrediction]:
    """One text alone, on the transformers engine's scorer."""
    return fill_with(TransformersScorer(loaded), text, top_k)


def load_for_fill(folder: Path) -> LoadedModel:
    return load(folder.name, str(folder), "fill-mask", device="cpu", dtype="float32", offline=True)


@pytest.fixture(scope="module")
def bert(tiny_bert_dir: Path) -> LoadedModel:
    return load_for_fill(tiny_bert_dir)


@pytest.fixture(scope="module")
def angle_bert(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A BERT whose own mask token is RoBERTa's ``<mask>``."""
    return load_for_fill(build_tiny_bert(tmp_path_factory.mktemp("angle-bert"), mask_token="<mask>"))


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2_dir: Path) -> LoadedModel:
    return load_for_fill(tiny_gpt2_dir)


# -- finding the mask --------------------------------------------------------------------------


def test_split_mask_finds_the_blank() -> None:
    assert split_mask("The [MASK] barked.", None) == MaskedText("The ", " barked.")
    assert split_mask("The <mask> barked.", "<mask>") == MaskedText("The ", " barked.")
    assert split_mask("The [MASK] barked.", "<mask>") == MaskedText("The ", " barked.")


@pytest.mark.parametrize(
    ("text", "model_mask", "found"),
    [
        ("No blank here.", None, "found none"),
        ("[MASK] and [MASK]", None, "found 2"),
        ("The <mask> chased the [MASK].", "<mask>", "found 2"),
        ("[MASK], [MASK] and [MASK]", "[MASK]", "found 3"),
    ],
)
def test_split_mask_refuses_zero_or_several(text: str, model_mask: str | None, found: str) -> None:
    with pytest.raises(ValidationError) as caught:
        split_mask(text, model_mask)
    message = caught.value.message
    assert message.startswith("`text` must contain exactly one ")
    assert message.endswith(found)
    assert "`[MASK]`" in message  # tells the user how to write the blank
    if model_mask:
        assert f"`{model_mask}`" in message


# -- masked LM ---------------------------------------------------------------------------------


def assert_ranked(predictions: list[FillPrediction], top_k: int) -> None:
    assert len(predictions) == top_k
    scores = [p.score for p in predictions]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len({p.token for p in predictions}) == top_k
    assert all(p.token.strip() for p in predictions)


def test_masked_lm_returns_the_models_own_top_k(bert: LoadedModel) -> None:
    predictions = fill(bert, SENTENCE, 5)
    assert_ranked(predictions, 5)
    for p in predictions:
        assert p.sequence == f"The capital of France is {p.token}."
    # The ranking is the model's: the same softmax at the mask, computed here directly.
    tok = bert.tokenizer
    enc = tok("The capital of France is [MASK].", return_tensors="pt")
    with torch.inference_mode():
        logits = bert.model(**enc).logits
    position = enc["input_ids"][0].tolist().index(tok.mask_token_id)
    probs = logits[0, position].softmax(-1)
    # Special tokens and word-pieces ("##at") are not words a person would accept here.
    ranked = probs.topk(40)
    best = [
        (tok.decode([i]).strip(), score)
        for score, i in zip(ranked.values.tolist(), ranked.indices.tolist(), strict=True)
        if i not in tok.all_special_ids and not tok.convert_ids_to_tokens(i).startswith("##")
    ][:5]
    assert [word for word, _ in best] == [p.token for p in predictions]
    assert [p.score for p in predictions] == pytest.approx([score for _, score in best])


def test_models_own_mask_token_is_accepted(angle_bert: LoadedModel) -> None:
    own = fill(angle_bert, "The capital of France is <mask>.", 3)
    assert_ranked(own, 3)
    assert own == fill(angle_bert, "The capital of France is [MASK].", 3)
    with pytest.raises(ValidationError, match="found 2"):
        fill(angle_bert, "The <mask> of France is [MASK].", 3)


@pytest.mark.parametrize(
    ("text", "left", "right"),
    [
        ("[MASK] capital of France is Paris.", "", " capital of France is Paris."),
        ("The dog is [MASK]", "The dog is ", ""),
    ],
)
def test_masked_lm_mask_at_either_end(bert: LoadedModel, text: str, left: str, right: str) -> None:
    predictions = fill(bert, text, 3)
    assert_ranked(predictions, 3)
    assert all(p.sequence == left + p.token + right for p in predictions)


# -- causal LM: propose and rescore ------------------------------------------------------------


def test_causal_fill_ranks_whole_sentences(gpt2: LoadedModel) -> None:
    predictions = fill(gpt2, SENTENCE, 5)
    assert_ranked(predictions, 5)
    assert sum(p.score for p in predictions) <= 1.0 + 1e-9
    for p in predictions:
        # A word after a space carries the space, so the sentence reads normally.
        assert p.token.startswith(" ")
        assert p.sequence == f"The capital of France is{p.token}."


def test_causal_scores_are_a_distribution_over_the_candidates(gpt2: LoadedModel) -> None:
    everything = fill(gpt2, SENTENCE, 20)
    top = fill(gpt2, SENTENCE, 3)
    assert top == everything[:3]
    if len(everything) < 20:  # all candidates came back: their shares add up to one
        assert sum(p.score for p in everything) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[MASK] capital of France is Paris.", lambda t: f"{t} capital of France is Paris."),
        ("The capital of France is [MASK]", lambda t: f"The capital of France is{t}"),
    ],
)
def test_causal_fill_mask_at_either_end(gpt2: LoadedModel, text: str, expected: Callable[[str], str]) -> None:
    predictions = fill(gpt2, text, 3)
    assert_ranked(predictions, 3)
    for p in predictions:
        assert p.sequence == expected(p.token)
        assert "[MASK]" not in p.sequence


def test_causal_scores_are_those_of_the_whole_sentences(gpt2: LoadedModel) -> None:
    """Only the tokens after the shared start are run per candidate; the ranking must not change."""
    predictions = fill(gpt2, "The cat sat on the [MASK] today.", 20)
    tok = gpt2.tokenizer
    totals = []
    for p in predictions:
        ids = tok("\n" + p.sequence, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = gpt2.model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        totals.append(float(logits.gather(-1, ids[0, 1:, None]).sum()))
    shares = torch.tensor(totals).softmax(-1)  # the shown candidates' shares among themselves
    shown = torch.tensor([p.score for p in predictions])
    assert (shown / shown.sum()).tolist() == pytest.approx(shares.tolist(), abs=1e-4)


def test_candidates_are_the_models_next_words_after_the_few_shot_prompt(gpt2: LoadedModel) -> None:
    """The prompt's shared part runs apart from each text's own: the proposals must not change."""
    tasks = [FillTask(SENTENCE, 3), FillTask("The [MASK] barked at the mailman.", 3)]
    FillBatch(TransformersScorer(gpt2), tasks).run()
    tok = gpt2.tokenizer
    for task in tasks:
        assert task.masked is not None
        prompt = FEW_SHOT.format(sentence=f"{task.masked.left}___{task.masked.right}")
        with torch.inference_mode():
            logits = gpt2.model(**tok(prompt, return_tensors="pt")).logits[0, -1]
        expected: dict[str, None] = {}
        for token_id in logits.topk(PROPOSALS_PER_PROMPT).indices.tolist():
            piece = tok.decode([token_id])
            if _is_word(piece):  # the same filter; the prompt and its cache are what is checked
                expected.setdefault(piece.strip(), None)
        assert list(task.words)[: len(expected)] == list(expected)


@pytest.mark.parametrize("model", ["bert", "gpt2"])
def test_a_batch_gives_each_text_what_it_gets_alone(request: pytest.FixtureRequest, model: str) -> None:
    loaded: LoadedModel = request.getfixturevalue(model)
    texts = [
        SENTENCE,
        "[MASK] barked at the mailman every single morning.",
        "She played the [MASK]",
        "A much longer sentence, so that the rows have different widths, ends with a [MASK] here.",
    ]

    def advances(tasks: list[FillTask]) -> int:
        batch, count = FillBatch(TransformersScorer(loaded), tasks), 0
        while not batch.done:
            batch.advance()
            count += 1
        return count

    tasks = [FillTask(text, 4) for text in texts]
    together = advances(tasks)
    apart = 0
    for text, task in zip(texts, tasks, strict=True):
        alone = FillTask(text, 4)
        apart += advances([alone])
        assert task.error is None and task.predictions is not None and alone.predictions is not None
        assert [p.token for p in task.predictions] == [p.token for p in alone.predictions]
        assert [p.score for p in task.predictions] == pytest.approx(
            [p.score for p in alone.predictions], abs=1e-4
        )
    assert together < apart  # the texts shared forward passes


def test_a_bad_text_fails_alone_and_a_dropped_one_is_skipped(gpt2: LoadedModel) -> None:
    bad = FillTask("word " * 300 + SENTENCE, 3)
    dropped = FillTask("The [MASK] barked.", 3)
    good = FillTask(SENTENCE, 3)
    batch = FillBatch(TransformersScorer(gpt2), [bad, dropped, good])
    assert isinstance(bad.error, ValidationError) and "too long" in bad.error.message
    dropped.dropped = True
    batch.run()
    assert dropped.predictions is None and dropped.error is None
    assert good.predictions == fill(gpt2, SENTENCE, 3)


@pytest.mark.parametrize("model", ["bert", "gpt2"])
def test_text_longer_than_the_context_is_refused_or_cut(request: pytest.FixtureRequest, model: str) -> None:
    loaded: LoadedModel = request.getfixturevalue(model)
    text = "word " * 300 + SENTENCE
    try:
        predictions = fill(loaded, text, 3)
    except ValidationError:
        return
    assert predictions


# -- through the service -----------------------------------------------------------------------


async def test_service_fills_with_the_configured_fill_model(tiny_gpt2_dir: Path, tiny_bert_dir: Path) -> None:
    config = service_config({"gpt": tiny_gpt2_dir, "bert": tiny_bert_dir}, fill_model="bert", preload=True)
    async with ModelService(config) as service:
        masked = await service.fill_mask(FillMaskRequest(SENTENCE, top_k=4))
        assert (masked.model, masked.method) == ("bert", "masked_lm")
        assert len(masked.predictions) == 4
        causal = await service.fill_mask(FillMaskRequest(SENTENCE, top_k=2, model="gpt"))
        assert (causal.model, causal.method) == ("gpt", "causal_rescore")
        assert len(causal.predictions) == 2
        assert causal.elapsed_s >= 0
        with pytest.raises(ValidationError, match="unknown model `nope`; available: gpt, bert"):
            await service.fill_mask(FillMaskRequest(SENTENCE, model="nope"))
        with pytest.raises(ValidationError, match="found none"):
            await service.fill_mask(FillMaskRequest("no blank"))
        assert service.status().queue_depth == 0


async def test_default_model_fills_when_no_fill_model_is_set(tiny_gpt2_dir: Path) -> None:
    async with ModelService(service_config({"gpt": tiny_gpt2_dir}, preload=True)) as service:
        result = await service.fill_mask(FillMaskRequest(SENTENCE, top_k=3))
        assert (result.model, result.method) == ("gpt", "causal_rescore")
        assert len(service.status().models) == 1  # one GPT-2 serves both tasks
