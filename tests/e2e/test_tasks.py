"""/tokenize, /classify, /entities, /answer, /summarize, /translate, /similar end to end: the real bot,
a tiny real model of every head, over the loopback server. Replies are checked against the same
models run directly (through transformers, or the service the bot holds)."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

import app as bot_module
from loopback import InteractionRecord, LoopbackDiscord
from model_service import fetch_encoder
from model_service.types import (
    AnswerRequest,
    EntitiesRequest,
    GenerationParams,
    RewriteRequest,
    SimilarRequest,
)
from tests.e2e.harness import BotRunner, all_text, base_env, no_pings, run
from tests.fixtures import tiny_models

pytestmark = pytest.mark.timeout(120)

REVIEW = "The cat sat on the mat and looked at the bird."
CONTEXT = "The old king lived in a castle on a hill. The children sang a song about the sea."
SCORE_LINE = re.compile(r"^`[█░]{12}` +(\d+\.\d)%  \*\*(.+)\*\*$")


@pytest.fixture(scope="module")
def task_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_models.build_task_models(tmp_path_factory.mktemp("e2e-task-models"))


@pytest.fixture
def env(
    server: LoopbackDiscord,
    tmp_path: Path,
    tiny_gpt2_dir: Path,
    tiny_bert_dir: Path,
    task_models: dict[str, Path],
) -> dict[str, str]:
    """``tiny`` (GPT-2, the default), ``bert`` and a model of every task head."""
    models = {"tiny": tiny_gpt2_dir, "bert": tiny_bert_dir, **task_models}
    return base_env(server, tmp_path / "data" / "transcord.sqlite3", models)


def refusal(record: InteractionRecord) -> str:
    assert record.ephemeral and no_pings(record), record.summary()
    return record.content or ""


def scores(record: InteractionRecord) -> dict[str, float]:
    found = [SCORE_LINE.match(line) for line in (record.content or "").splitlines()]
    return {m.group(2): float(m.group(1)) for m in found if m}


# -- with a model of every head ---------------------------------------------------------------------


async def test_tokenize_shows_tokens_ids_mask_and_the_count_against_the_context(
    server: LoopbackDiscord, transcord: bot_module.Transcord, tiny_gpt2_dir: Path
) -> None:
    text = "Hello 你好 🤗 @everyone"
    reply = await run(server, "tokenize", {"text": text})
    content = all_text(reply)
    ids = AutoTokenizer.from_pretrained(tiny_gpt2_dir)(text)["input_ids"]
    assert content.startswith("**Tokens** · `tiny` · byte-level BPE, ")
    assert f"{len(ids)} tokens, " in content and "of the model's 256-token context" in content
    assert f"**input_ids** `[{', '.join(map(str, ids))}]`" in content
    assert f"**attention_mask** `[{', '.join(['1'] * len(ids))}]`" in content
    assert "no token_type_ids: this tokenizer does not make them" in content
    assert "part of 你" in content and "part of 🤗" in content and "␣" in content
    assert not reply.ephemeral and no_pings(reply)


async def test_tokenize_a_pair_on_a_bert_shows_token_type_ids(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    reply = await run(server, "tokenize", {"text": "the dog", "pair": "a cat", "model": "qa"})
    content = all_text(reply)
    assert re.search(r"\*\*token_type_ids\*\* `\[0, 0, 0, 0, 1, 1, 1\]`", content), content
    assert "[CLS]" in content and "(special)" in content


async def test_classify_shows_the_classifiers_labels_best_first(
    server: LoopbackDiscord, transcord: bot_module.Transcord, task_models: dict[str, Path]
) -> None:
    reply = await run(server, "classify", {"text": REVIEW})
    model = AutoModelForSequenceClassification.from_pretrained(task_models["sentiment"]).eval()
    tok = AutoTokenizer.from_pretrained(task_models["sentiment"])
    with torch.no_grad():
        probs = model(**tok(REVIEW, return_tensors="pt")).logits[0].softmax(-1)
    best = model.config.id2label[int(probs.argmax())]
    shown = scores(reply)
    assert next(iter(shown)) == best and set(shown) == {"POSITIVE", "NEGATIVE"}
    assert shown[best] == pytest.approx(100 * float(probs.max()), abs=0.06)
    assert (reply.content or "").startswith(f"> {REVIEW}")
    assert (
        (reply.content or "").splitlines()[-1].startswith("-# sentiment · a text classifier, its own labels")
    )
    assert no_pings(reply)


async def test_entities_are_marked_in_the_text(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    text = "Zhanhui Zhong lives in Paris with the king."
    reply = await run(server, "entities", {"text": text})
    assert runner.service is not None
    expected = await runner.service.entities(EntitiesRequest(text))  # type: ignore[attr-defined]
    content = reply.content or ""
    assert expected.entities
    for entity in expected.entities:
        assert f"**{text[entity.start : entity.end]}**`{entity.group}`" in content.splitlines()[0]
        assert f"{entity.score:6.1%}  {text[entity.start : entity.end]}" in content
    assert content.splitlines()[-1].startswith("-# ner · token classification, word pieces grouped")


async def test_answer_highlights_the_span_in_the_context(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    question = "Where did the old king live?"
    reply = await run(server, "answer", {"question": question, "context": CONTEXT})
    assert runner.service is not None
    expected = await runner.service.answer(AnswerRequest(question, CONTEXT))  # type: ignore[attr-defined]
    lines = (reply.content or "").splitlines()
    assert lines[0] == f"**Q:** {question}"
    assert lines[1] == f"**A:** {expected.answer} · {expected.score:.1%}"
    assert f"__**{expected.answer}**__" in lines[2]
    assert lines[-1].startswith("-# qa · extractive QA")


async def test_similar_gives_the_cosine_as_a_number_and_a_bar(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    a, b = "The cat sat on the mat.", "The dog barked at the mailman."
    reply = await run(server, "similar", {"text_a": a, "text_b": b})
    assert runner.service is not None
    expected = await runner.service.similar(SimilarRequest(a, b))  # type: ignore[attr-defined]
    assert f"**Cosine similarity: {expected.cosine:.3f}** `" in (reply.content or "")
    assert (reply.content or "").splitlines()[-1].startswith("-# encoder · mean-pooled AutoModel features")


async def test_similar_with_more_texts_draws_the_models_own_cosines_as_a_heat_map(
    server: LoopbackDiscord, transcord: bot_module.Transcord, task_models: dict[str, Path]
) -> None:
    a, b = "The cat sat on the mat.", "The dog barked at the mailman."
    more = ["A cat slept on a rug.", "Stocks fell sharply today."]
    reply = await run(server, "similar", {"text_a": a, "text_b": b, "texts": " | ".join(more)})
    texts = [a, b, *more]
    [picture] = [f for m in reply.messages if not m.deleted for f in m.attachments]
    assert picture.filename == "similarity.png" and picture.description.startswith(
        "Heat map: how alike 4 texts"
    )
    image = Image.open(io.BytesIO(picture.data))
    drawn = json.loads(image.text["Comment"])  # type: ignore[attr-defined]
    # The model run directly: each text mean-pooled over its tokens, normalised, every pair.
    folder = task_models["encoder"]
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        vectors = torch.stack(
            [model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0].mean(0) for t in texts]
        )
    unit = torch.nn.functional.normalize(vectors, dim=-1)
    expected = (unit @ unit.T).tolist()
    assert drawn["texts"] == texts
    assert [x for row in drawn["matrix"] for x in row] == pytest.approx(
        [x for row in expected for x in row], abs=1e-5
    )
    content = all_text(reply)
    for i, text in enumerate(texts, 1):
        assert f"**{i}.** {text}" in content
    best = max((expected[i][j], i, j) for i in range(4) for j in range(i + 1, 4))
    first_pair = next(line for line in content.splitlines() if line.startswith("`") and "&" in line)
    assert first_pair.startswith(f"`{best[0]:6.3f}` ") and first_pair.endswith(
        f"**{best[1] + 1}** & **{best[2] + 1}**"
    )
    assert content.splitlines()[-1].startswith("-# encoder · mean-pooled AutoModel features · ")
    assert not reply.ephemeral and no_pings(reply)


async def test_similar_refuses_more_than_eight_texts_naming_the_option(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    reply = await run(server, "similar", {"text_a": "a", "text_b": "b", "texts": "|".join("cdefgh") + "|i"})
    assert "`texts` may add at most 6 texts" in refusal(reply)


async def test_out_of_the_box_similar_uses_the_encoder_the_set_up_fetches(
    server: LoopbackDiscord, env: dict[str, str], tmp_path: Path, task_models: dict[str, Path]
) -> None:
    # No MODELS: the default catalog. Its sentence encoder is not set up yet, then the set-up runs.
    models_dir = tmp_path / "models"
    out_of_the_box = {k: v for k, v in env.items() if k != "MODELS"}
    runner = BotRunner(server, {**out_of_the_box, "MODELS_DIR": str(models_dir), "PRELOAD_MODELS": "off"})
    try:
        await runner.start()
        missing = refusal(await run(server, "similar", {"text_a": "a cat", "text_b": "a dog"}))
        assert "`minilm` is all-MiniLM-L6-v2" in missing and "python -m model_service.fetch" in missing
        shutil.copytree(task_models["encoder"], models_dir / fetch_encoder.ENCODER_NAME)  # what it unpacks
        reply = await run(server, "similar", {"text_a": "a cat", "text_b": "a dog"})
        assert (reply.content or "").splitlines()[-1].startswith("-# minilm · mean-pooled AutoModel features")
    finally:
        await runner.aclose()


async def test_summarize_and_translate_stream_the_seq2seq_models_text(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    assert runner.service is not None
    for command, options, request in (
        ("summarize", {"text": REVIEW}, RewriteRequest("summarize", REVIEW)),
        ("translate", {"text": REVIEW, "to": "German"}, RewriteRequest("translate", REVIEW, to="German")),
    ):
        reply = await run(server, command, options, until=lambda r: "\n-# " in all_text(r))
        greedy = RewriteRequest(
            request.kind,
            request.text,
            to=request.to,
            params=GenerationParams(max_new_tokens=128, temperature=0),
        )
        stream = await runner.service.rewrite(greedy)  # type: ignore[attr-defined]
        expected = "".join([delta async for delta in stream])
        content = all_text(reply)
        title = "Summary" if command == "summarize" else "Translation into German"
        assert f"**{title}** (`t5`, a sequence-to-sequence model):\n{expected}\n-# " in content, content[
            -400:
        ]
        assert re.search(r"seed \d+ temperature 0 ", content) and no_pings(reply)


async def test_generate_on_the_seq2seq_model_points_to_its_commands(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    await run(server, "config set", {"model": "t5"}, user=server.moderator)
    reply = await run(server, "generate", {"prompt": "Once upon a time"})
    assert "`/summarize`, `/translate`" in refusal(reply)


async def test_a_channel_picks_the_model_of_a_task_and_a_wrong_kind_is_explained(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    changed = await run(server, "config set", {"classify_model": "nli"}, user=server.moderator)
    assert "**classify_model** → `nli`" in (changed.content or ""), changed.summary()
    reply = await run(server, "classify", {"text": REVIEW, "labels": "sports, food"})
    assert set(scores(reply)) == {"sports", "food"}
    assert "nli · zero-shot: each label as a hypothesis" in (reply.content or "")

    await run(server, "config set", {"classify_model": "ner"}, user=server.moderator)
    wrong = await run(server, "classify", {"text": REVIEW})
    message = refusal(wrong)
    assert message.startswith("❌ Model `ner` can't `/classify`: it is a token classifier (entities)")
    assert "Models here that can: `sentiment`, `nli`" in message and "/config set classify_model" in message


async def test_status_and_help_list_the_tasks_here(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    status = await run(server, "status")
    assert "Tasks: classify, entities, answer, summarize, translate, similar" in (status.content or "")
    helped = all_text(await run(server, "help"))
    for command in ("/tokenize", "/classify", "/entities", "/answer", "/summarize", "/translate", "/similar"):
        assert f"**{command}**" in helped
    assert "`/entities`: `ner`" in helped and "`/classify`: `sentiment`, `nli`" in helped


@pytest.mark.parametrize(
    ("command", "options", "expected"),
    [
        (
            "classify",
            {"text": REVIEW, "labels": "good, Good"},
            "❌ `labels` has `Good` twice; give each label once",
        ),
        (
            "classify",
            {"text": REVIEW, "labels": ",".join("abcdefghijk")},
            "❌ `labels` may hold at most 10 labels, got 11",
        ),
        ("classify", {"text": " "}, "❌ `text` must not be empty"),
        (
            "answer",
            {"question": "Where?", "context": " "},
            "❌ `context` must not be empty: the answer is a span",
        ),
        (
            "translate",
            {"text": "hi", "to": "Klingon"},
            "❌ `to` must be one of French, German for model `t5`",
        ),
        (
            "entities",
            {"text": "dog " * 400},
            "❌ `text` is too long for model `ner`: 402 tokens, at most 256",
        ),
    ],
)
async def test_bad_input_is_refused_naming_what_was_wrong(
    server: LoopbackDiscord,
    transcord: bot_module.Transcord,
    command: str,
    options: dict[str, object],
    expected: str,
) -> None:
    reply = await run(server, command, options)
    assert refusal(reply).startswith(expected), reply.summary()


# -- with only the causal default (and a masked LM): the fallbacks -----------------------------------


@pytest.fixture
async def bare(
    server: LoopbackDiscord, runner: BotRunner, tiny_gpt2_dir: Path, tiny_bert_dir: Path
) -> bot_module.Transcord:
    return await runner.start(MODELS=f"tiny={tiny_gpt2_dir},bert={tiny_bert_dir}")


async def test_classify_out_of_the_box_is_zero_shot_and_says_so(
    server: LoopbackDiscord, bare: bot_module.Transcord
) -> None:
    reply = await run(server, "classify", {"text": REVIEW, "labels": "positive, negative"})
    shown = scores(reply)
    assert set(shown) == {"positive", "negative"} and sum(shown.values()) == pytest.approx(100, abs=0.2)
    assert (
        "-# tiny · zero-shot: the likelihood of each label after the text, calibrated (no classifier here)"
        in (reply.content or "")
    )


async def test_summarize_out_of_the_box_asks_the_instruct_model_and_says_so(
    server: LoopbackDiscord, bare: bot_module.Transcord
) -> None:
    reply = await run(server, "summarize", {"text": REVIEW}, until=lambda r: "\n-# " in all_text(r))
    assert (
        "**Summary** (`tiny` asked through its chat template: no summarize model is configured here):"
        in all_text(reply)
    )


@pytest.mark.parametrize(
    ("command", "options", "setting"),
    [
        ("entities", {"text": "Paris"}, "entities_model"),
        ("answer", {"question": "Where?", "context": CONTEXT}, "answer_model"),
        ("similar", {"text_a": "a", "text_b": "b"}, "similar_model"),
    ],
)
async def test_without_a_model_for_the_task_the_reply_names_the_setting(
    server: LoopbackDiscord,
    bare: bot_module.Transcord,
    command: str,
    options: dict[str, object],
    setting: str,
) -> None:
    message = refusal(await run(server, command, options))
    assert message.startswith(f"❌ No model here can `/{command}`")
    assert "Add one to `MODELS`" in message and f"`/config set {setting}`" in message


async def test_help_says_what_to_configure_for_the_missing_tasks(
    server: LoopbackDiscord, bare: bot_module.Transcord
) -> None:
    helped = all_text(await run(server, "help"))
    assert "`/entities`: none here (add one to `MODELS`, e.g. `ner=dslim/bert-base-NER`)" in helped
    assert "`/classify`: `tiny` (zero-shot: the likelihood of each label)" in helped
