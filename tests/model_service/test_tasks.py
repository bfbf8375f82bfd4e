"""The source document's other Auto classes through the model service, each checked against the same
tiny model run directly through transformers (its pipelines where transformers 5 still has one).

One service for the module: a tiny model of every head (``tiny_models.build_task_models``) beside
the tiny GPT-2 (the default model: a causal LM, for the fallbacks) and the tiny BERT (a masked LM).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import torch
import transformers
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    pipeline,
)

from model_service.checkpoint_kinds import detect_kind
from model_service.config import ServiceConfig
from model_service.errors import ModelUnavailableError, ServiceError, ValidationError
from model_service.loading import read_checkpoint
from model_service.service import ModelService
from model_service.task_names import split_task
from model_service.tasks import answer as answer_task
from model_service.tasks import classify as classify_task
from model_service.types import (
    AnswerRequest,
    ClassifyRequest,
    EntitiesRequest,
    GenerationParams,
    GenerationRequest,
    RewriteRequest,
    SimilarRequest,
    TokenizeRequest,
    parse_labels,
)
from tests.fixtures import tiny_models
from tests.fixtures.tiny_models import service_config

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]
transformers.logging.set_verbosity_error()

REVIEW = "The cat sat on the mat and looked at the bird."
CONTEXT = "The old king lived in a castle on a hill. The children sang a song about the sea."


@pytest.fixture(scope="module")
def folders(
    tmp_path_factory: pytest.TempPathFactory, tiny_gpt2_dir: Path, tiny_bert_dir: Path
) -> dict[str, Path]:
    built = tiny_models.build_task_models(tmp_path_factory.mktemp("task-models"))
    return {"tiny": tiny_gpt2_dir, "bert": tiny_bert_dir, **built}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(folders: dict[str, Path]) -> AsyncIterator[ModelService]:
    async with ModelService(service_config(folders)) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bare(tiny_gpt2_dir: Path, tiny_bert_dir: Path) -> AsyncIterator[ModelService]:
    """Only the causal default and a masked LM: every task falls back or says what is missing."""
    async with ModelService(service_config({"tiny": tiny_gpt2_dir, "bert": tiny_bert_dir})) as running:
        yield running


# -- what a checkpoint is ------------------------------------------------------------------------


async def test_each_tiny_checkpoint_is_told_from_its_config(folders: dict[str, Path]) -> None:
    kinds = {name: read_checkpoint(name, str(path), offline=True).kind for name, path in folders.items()}
    assert kinds == {
        "tiny": "causal",
        "bert": "masked",
        "sentiment": "sequence-classification",
        "nli": "sequence-classification",
        "ner": "token-classification",
        "qa": "question-answering",
        "t5": "seq2seq",
        "encoder": "features",
    }


async def test_without_architectures_the_labels_and_the_model_type_decide() -> None:
    from transformers import BertConfig, MarianConfig

    tags = BertConfig(id2label={0: "O", 1: "B-PER", 2: "I-PER"})
    sentiment = BertConfig(id2label={0: "NEGATIVE", 1: "POSITIVE"})
    assert detect_kind(tags) == "token-classification"
    assert detect_kind(sentiment) == "sequence-classification"
    assert detect_kind(BertConfig()) == "masked"  # LABEL_0, LABEL_1 are placeholders
    assert detect_kind(MarianConfig()) == "seq2seq"


async def test_a_forced_task_is_split_from_the_source_and_a_wrong_one_is_refused() -> None:
    assert split_task("models/ner:entities") == ("models/ner", "entities")
    assert split_task("dslim/bert-base-NER") == ("dslim/bert-base-NER", None)
    assert split_task(r"C:\models\bert") == (r"C:\models\bert", None)  # a drive, not a task
    with pytest.raises(ValueError, match="unknown task `entity` after `models/ner`; tasks: generate"):
        split_task("models/ner:entity")
    with pytest.raises(ValueError, match="model `ner`: unknown task `entity`"):
        ServiceConfig(models={"ner": "models/ner:entity"}, default_model="ner")


async def test_forcing_decides_the_kind(folders: dict[str, Path]) -> None:
    forced = read_checkpoint("b", f"{folders['bert']}:similar", offline=True)
    assert (forced.kind, forced.forced) == ("features", "similar")


# -- /tokenize -----------------------------------------------------------------------------------


async def test_tokenize_shows_byte_level_pieces_of_chinese_and_emoji(
    service: ModelService, folders: dict[str, Path]
) -> None:
    text = "Hello 你好 🤗"
    result = await service.tokenize(TokenizeRequest(text, model="tiny"))
    tok = AutoTokenizer.from_pretrained(folders["tiny"])
    assert list(result.input_ids) == tok(text)["input_ids"]
    assert list(result.attention_mask) == [1] * result.count
    assert result.token_type_ids is None  # GPT-2's tokenizer makes none
    assert result.algorithm == "byte-level BPE" and result.context_length == tiny_models.CONTEXT
    # Each piece's bytes, joined, are the text's UTF-8; pieces of one character say which.
    joined = b"".join(bytes(p.partial) if p.partial else p.text.encode() for p in result.pieces)
    assert joined == text.encode()
    partial = [p for p in result.pieces if p.partial]
    assert partial and {text[p.start : p.end].strip() for p in partial} <= {"你", "好", "🤗"}


async def test_tokenize_a_pair_gives_token_type_ids_and_marks_special_tokens(service: ModelService) -> None:
    result = await service.tokenize(TokenizeRequest("the dog", pair="a cat", model="qa"))
    assert result.token_type_ids is not None and set(result.token_type_ids) == {0, 1}
    assert [p.piece for p in result.pieces if p.special] == ["[CLS]", "[SEP]", "[SEP]"]
    assert result.algorithm == "WordPiece"


async def test_tokenize_says_an_unknown_model(service: ModelService) -> None:
    with pytest.raises(ValidationError, match="unknown model `gpt-9`; available: tiny, bert"):
        await service.tokenize(TokenizeRequest("hi", model="gpt-9"))


# -- /classify -----------------------------------------------------------------------------------


async def test_classify_gives_the_labels_of_the_highest_logits(
    service: ModelService, folders: dict[str, Path]
) -> None:
    result = await service.classify(ClassifyRequest(REVIEW))
    model = AutoModelForSequenceClassification.from_pretrained(folders["sentiment"]).eval()
    tok = AutoTokenizer.from_pretrained(folders["sentiment"])
    with torch.no_grad():
        probs = model(**tok(REVIEW, return_tensors="pt")).logits[0].softmax(-1)
    expected = sorted(
        ((model.config.id2label[i], float(p)) for i, p in enumerate(probs)), key=lambda x: -x[1]
    )
    assert result.method == "classifier" and result.model == "sentiment"
    assert [s.label for s in result.scores] == [label for label, _ in expected]
    assert [s.score for s in result.scores] == pytest.approx([p for _, p in expected], abs=1e-5)


async def test_classify_with_some_of_its_own_labels_or_refuses_others(service: ModelService) -> None:
    result = await service.classify(ClassifyRequest(REVIEW, ("positive", "negative"), model="sentiment"))
    assert {s.label for s in result.scores} == {"POSITIVE", "NEGATIVE"}
    with pytest.raises(ValidationError) as refused:
        await service.classify(ClassifyRequest(REVIEW, ("sports", "food"), model="sentiment"))
    assert refused.value.message.startswith(
        "model `sentiment` classifies into its own labels (NEGATIVE, POSITIVE), not `sports`, `food`"
    )


async def test_nli_zero_shot_matches_transformers_zero_shot_pipeline(
    service: ModelService, folders: dict[str, Path]
) -> None:
    labels = ("sports", "food", "music")
    result = await service.classify(ClassifyRequest(REVIEW, labels, model="nli"))
    oracle = pipeline("zero-shot-classification", model=str(folders["nli"]), device="cpu")(
        REVIEW, candidate_labels=list(labels), hypothesis_template=classify_task.HYPOTHESIS
    )
    assert result.method == "nli"
    assert {s.label: s.score for s in result.scores} == pytest.approx(
        dict(zip(oracle["labels"], oracle["scores"], strict=True)), abs=1e-5
    )


def _label_likelihood(model: torch.nn.Module, tok: object, prompt: str, label: str) -> float:
    prompt_ids = tok(prompt)["input_ids"]  # type: ignore[operator]
    label_ids = tok(" " + label, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    with torch.no_grad():
        logprobs = model(torch.tensor([prompt_ids + label_ids])).logits[0].log_softmax(-1)
    return sum(float(logprobs[len(prompt_ids) - 1 + i, t]) for i, t in enumerate(label_ids))


async def test_zero_shot_on_the_causal_model_is_the_calibrated_likelihood_of_each_label(
    bare: ModelService, tiny_gpt2_dir: Path
) -> None:
    labels = ("positive", "negative", "neutral")
    result = await bare.classify(ClassifyRequest(REVIEW, labels))
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    prompt = classify_task.ZERO_SHOT_PROMPT
    calibrated = {
        label: _label_likelihood(model, tok, prompt.format(text=REVIEW), label)
        - _label_likelihood(model, tok, prompt.format(text=""), label)
        for label in labels
    }
    norm = sum(math.exp(v) for v in calibrated.values())
    assert result.method == "causal-zero-shot" and result.model == "tiny"
    assert {s.label: s.score for s in result.scores} == pytest.approx(
        {label: math.exp(v) / norm for label, v in calibrated.items()}, abs=1e-4
    )
    assert sum(s.score for s in result.scores) == pytest.approx(1.0)


async def test_labels_outside_the_classifier_go_to_zero_shot_when_no_model_is_set(
    service: ModelService,
) -> None:
    # The catalog's first classifier is a sentiment one; asked about topics, the NLI model answers.
    result = await service.classify(ClassifyRequest(REVIEW, ("sports", "food")))
    assert (result.model, result.method) == ("nli", "nli")


async def test_requests_of_one_task_on_one_model_are_batched(
    service: ModelService, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    original = classify_task.head_batch

    def spy(loaded: object, items: list[object]) -> object:
        sizes.append(len(items))
        return original(loaded, items)  # type: ignore[arg-type]

    monkeypatch.setattr(classify_task, "head_batch", spy)
    texts = [f"{REVIEW} {i}" for i in range(6)]
    alone = [await service.classify(ClassifyRequest(t, model="sentiment")) for t in texts[:2]]
    together = await asyncio.gather(*(service.classify(ClassifyRequest(t, model="sentiment")) for t in texts))
    assert sizes[:2] == [1, 1] and max(sizes[2:]) >= 4, sizes
    assert [s.score for s in together[0].scores] == pytest.approx(
        [s.score for s in alone[0].scores], abs=1e-5
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("positive", "`labels` needs at least 2 labels to choose between, got 1"),
        ("positive, Positive", "`labels` has `Positive` twice; give each label once"),
        (",".join(f"l{i}" for i in range(11)), "`labels` may hold at most 10 labels, got 11"),
        ("positive,,negative", "`labels` has an empty label"),
    ],
)
async def test_bad_labels_say_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_labels(raw)
    assert refused.value.message.startswith(message)


# -- /entities -----------------------------------------------------------------------------------


async def test_entities_group_word_pieces_as_the_token_classification_pipeline(
    service: ModelService, folders: dict[str, Path]
) -> None:
    text = "Zhanhui Zhong lives in Paris with the king and the little dog."
    result = await service.entities(EntitiesRequest(text))
    oracle = pipeline(
        "token-classification", model=str(folders["ner"]), aggregation_strategy="first", device="cpu"
    )(text)
    assert result.model == "ner" and oracle
    assert [(e.group, e.word, e.start, e.end) for e in result.entities] == [
        (o["entity_group"], o["word"], o["start"], o["end"]) for o in oracle
    ]
    assert [e.score for e in result.entities] == pytest.approx([float(o["score"]) for o in oracle], abs=1e-5)


# -- /answer -------------------------------------------------------------------------------------


async def test_answer_is_the_span_of_the_best_start_and_end(
    service: ModelService, folders: dict[str, Path]
) -> None:
    question = "Where did the old king live?"
    result = await service.answer(AnswerRequest(question, CONTEXT))
    model = AutoModelForQuestionAnswering.from_pretrained(folders["qa"]).eval()
    tok = AutoTokenizer.from_pretrained(folders["qa"])
    encoded = tok(question, CONTEXT, return_offsets_mapping=True)
    with torch.no_grad():
        out = model(**tok(question, CONTEXT, return_tensors="pt"))
    context_tokens = [i for i, s in enumerate(encoded.sequence_ids()) if s == 1]
    p_start = out.start_logits[0, context_tokens].softmax(-1)
    p_end = out.end_logits[0, context_tokens].softmax(-1)
    best = max(
        (
            (float(p_start[a] * p_end[b]), a, b)
            for a in range(len(context_tokens))
            for b in range(a, min(a + 15, len(context_tokens)))
        ),
    )
    first, last = (
        encoded["offset_mapping"][context_tokens[best[1]]][0],
        encoded["offset_mapping"][context_tokens[best[2]]][1],
    )
    assert (result.start, result.end, result.answer) == (first, last, CONTEXT[first:last])
    assert result.score == pytest.approx(best[0], rel=1e-4)


async def test_best_span_stays_inside_the_context() -> None:
    start = torch.tensor([9.0, 0.0, 1.0, 0.0, 9.0])
    end = torch.tensor([9.0, 0.0, 0.0, 2.0, 9.0])
    inside = torch.tensor([False, True, True, True, False])  # the question and [SEP] are outside
    assert answer_task.best_span(start, end, inside)[:2] == (2, 3)


@pytest.mark.parametrize("context", ["", "   "])
async def test_a_question_without_context_is_refused(context: str) -> None:
    with pytest.raises(
        ValidationError, match="`context` must not be empty: the answer is a span of the text"
    ):
        AnswerRequest("Where?", context)


# -- /similar ------------------------------------------------------------------------------------


async def test_similar_is_the_cosine_of_mean_pooled_features(
    service: ModelService, folders: dict[str, Path]
) -> None:
    a, b = "The cat sat on the mat.", "The dog barked at the mailman every morning."
    result = await service.similar(SimilarRequest(a, b))
    model = AutoModel.from_pretrained(folders["encoder"]).eval()
    tok = AutoTokenizer.from_pretrained(folders["encoder"])
    with torch.no_grad():
        va, vb = (model(**tok(t, return_tensors="pt")).last_hidden_state[0].mean(0) for t in (a, b))
    assert result.model == "encoder"
    assert result.cosine == pytest.approx(float(torch.cosine_similarity(va, vb, dim=0)), abs=1e-5)
    assert (await service.similar(SimilarRequest(a, a))).cosine == pytest.approx(1.0, abs=1e-5)


# -- /summarize and /translate -------------------------------------------------------------------


async def _written(service: ModelService, request: RewriteRequest) -> tuple[str, object]:
    stream = await service.rewrite(request)
    deltas = [delta async for delta in stream]
    assert stream.result is not None and "".join(deltas) == stream.result.text
    return stream.result.text, stream


def greedy(n: int) -> GenerationParams:
    return GenerationParams(max_new_tokens=n, temperature=0)


async def test_seq2seq_writes_what_generate_writes_with_the_task_prefix(
    service: ModelService, folders: dict[str, Path]
) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(folders["t5"]).eval()
    tok = AutoTokenizer.from_pretrained(folders["t5"])

    def reference(prompt: str) -> str:
        ids = model.generate(
            **tok(prompt, return_tensors="pt"), do_sample=False, max_new_tokens=12, suppress_tokens=[0]
        )
        return tok.decode(ids[0], skip_special_tokens=True)

    requests = [
        RewriteRequest("summarize", REVIEW, params=greedy(12)),
        RewriteRequest("translate", "The cat sat.", to="German", params=greedy(12)),
        RewriteRequest("translate", "The cat sat.", params=greedy(12)),  # French, the default
    ]
    prompts = [
        "summarize: " + REVIEW,
        "translate English to German: The cat sat.",
        "translate English to French: The cat sat.",
    ]
    # Three at once: they join one cohort and share the decoder's forwards.
    written = await asyncio.gather(*(_written(service, r) for r in requests))
    for (text, stream), prompt in zip(written, prompts, strict=True):
        assert (stream.model, stream.method) == ("t5", "seq2seq")  # type: ignore[attr-defined]
        assert text == reference(prompt)
    assert [s.target for _, s in written] == [None, "German", "French"]  # type: ignore[attr-defined]


async def test_translate_refuses_a_language_the_model_does_not_list(service: ModelService) -> None:
    with pytest.raises(ValidationError) as refused:
        await service.rewrite(RewriteRequest("translate", "hi", to="Klingon"))
    assert refused.value.message == "`to` must be one of French, German for model `t5`, got 'Klingon'"
    with pytest.raises(ValidationError, match="`to` must be a language name such as `French`"):
        RewriteRequest("translate", "hi", to="fr; drop table")


async def test_the_instruct_fallback_asks_through_the_chat_template(bare: ModelService) -> None:
    seen: list[GenerationRequest] = []
    original = bare._open_stream

    def spy(request: GenerationRequest, timeout: float | None = None) -> object:
        seen.append(request)
        return original(request, timeout)

    bare._desk._open_stream = spy  # type: ignore[method-assign]
    try:
        _, stream = await _written(bare, RewriteRequest("translate", REVIEW, to="German", params=greedy(8)))
    finally:
        bare._desk._open_stream = original  # type: ignore[method-assign]
    assert (stream.model, stream.method, stream.target) == ("tiny", "instruct", "German")  # type: ignore[attr-defined]
    assert [(r.mode, r.model) for r in seen] == [("chat", "tiny")]
    assert seen[0].prompt.startswith(REVIEW) and "into German" in seen[0].prompt


async def test_generate_on_a_seq2seq_model_points_to_its_commands(service: ModelService) -> None:
    with pytest.raises(ModelUnavailableError, match="`/summarize`, `/translate`"):
        service.stream(GenerationRequest("hi", model="t5"))


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "setting", "checkpoint"),
    [
        (lambda s: s.entities(EntitiesRequest("Paris")), "entities_model", "dslim/bert-base-NER"),
        (
            lambda s: s.answer(AnswerRequest("Where?", CONTEXT)),
            "answer_model",
            "distilbert/distilbert-base-cased-distilled-squad",
        ),
        (
            lambda s: s.similar(SimilarRequest("a", "b")),
            "similar_model",
            "sentence-transformers/all-MiniLM-L6-v2",
        ),
    ],
)
async def test_no_model_for_the_task_names_the_setting_and_a_checkpoint(
    bare: ModelService, call: object, setting: str, checkpoint: str
) -> None:
    with pytest.raises(ModelUnavailableError) as refused:
        await call(bare)  # type: ignore[operator]
    assert f"`/config set {setting}`" in refused.value.message
    assert checkpoint in refused.value.message and "MODELS" in refused.value.message


async def test_the_bare_service_says_what_each_task_has(bare: ModelService) -> None:
    available = {t.task: t for t in bare.tasks()}
    assert (available["classify"].fallback, available["summarize"].fallback) == ("tiny", "tiny")
    assert available["entities"].hint and not available["entities"].available


async def test_a_model_of_the_wrong_kind_for_a_task_says_what_it_is(service: ModelService) -> None:
    with pytest.raises(ModelUnavailableError) as refused:
        await service.answer(AnswerRequest("Where?", CONTEXT, model="bert"))
    message = refused.value.message
    assert message.startswith(
        "Model `bert` can't `/answer`: it is a masked LM (fill-mask) (`BertForMaskedLM`)"
    )
    assert "Models here that can: `qa`" in message and "`/config set answer_model`" in message


async def test_a_task_forced_on_weights_without_its_head_is_refused(tiny_gpt2_dir: Path) -> None:
    config = service_config({"tiny": tiny_gpt2_dir, "tagger": f"{tiny_gpt2_dir}:entities"})
    async with ModelService(config) as running:
        assert {t.task: t.models for t in running.tasks()}["entities"] == ("tagger",)
        with pytest.raises(ModelUnavailableError) as refused:
            await running.entities(EntitiesRequest("Paris"))
    message = refused.value.message
    assert message.startswith("model `tagger` (")
    assert "has no trained weights for a token classifier (entities) (missing classifier.bias" in message
    assert "it would answer at random" in message


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda s, t: s.classify(ClassifyRequest(t, model="sentiment")),
            "`text` is too long for model `sentiment`",
        ),
        (lambda s, t: s.entities(EntitiesRequest(t)), "`text` is too long for model `ner`"),
        (lambda s, t: s.answer(AnswerRequest("Where?", t)), "`context` is too long for model `qa`"),
        (lambda s, t: s.similar(SimilarRequest("a", t)), "`text_b` is too long for model `encoder`"),
        (lambda s, t: s.rewrite(RewriteRequest("summarize", t)), "`text` is too long for model `t5`"),
    ],
)
async def test_text_past_the_context_is_refused_with_its_length(
    service: ModelService, call: object, message: str
) -> None:
    long = " ".join(["the little dog"] * 200)  # 600 tokens; the tiny models hold 256
    with pytest.raises(ServiceError) as refused:
        await call(service, long)  # type: ignore[operator]
    assert refused.value.message.startswith(message)
    assert "at most" in refused.value.message


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ClassifyRequest(" "), "`text` must not be empty"),
        (lambda: EntitiesRequest(""), "`text` must not be empty"),
        (lambda: SimilarRequest("a", " "), "`text_b` must not be empty"),
        (lambda: RewriteRequest("summarize", "\n"), "`text` must not be empty"),
        (lambda: TokenizeRequest(""), "`text` must not be empty"),
        (lambda: AnswerRequest(" ", CONTEXT), "`question` must not be empty"),
    ],
)
async def test_empty_text_is_refused_naming_the_option(make: object, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        make()  # type: ignore[operator]
    assert refused.value.message == message


async def test_status_names_each_loaded_head_by_its_task(service: ModelService) -> None:
    await service.similar(SimilarRequest("a", "b"))
    tasks = {m.name: m.task for m in service.status().models}
    assert tasks["encoder"] == "similar" and tasks["sentiment"] == "classify"
