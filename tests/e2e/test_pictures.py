"""/next, /tokenize, /generate show: probabilities and /status's chart end to end: the real bot and the tiny GPT-2 over
the loopback server, each picture a PNG attachment with its alt text, its figures the model's own
(checked against the model and tokenizer run directly through transformers)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from transformers import AutoModelForCausalLM, AutoTokenizer

import app as bot_module
from loopback import InteractionRecord, LoopbackDiscord
from loopback.records import FileRecord
from tests.e2e.harness import BotRunner, all_text, has_footer, no_pings, run

pytestmark = pytest.mark.timeout(120)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROMPT = "Once upon a time"
RANK_LINE = re.compile(r"^`\s*\d+\.` `[█░]{12}` +(\d+\.\d)%  `(.*)`$")


def pictures(record: InteractionRecord) -> list[FileRecord]:
    return [f for m in record.messages if not m.deleted for f in m.attachments]


def figures_of(file: FileRecord) -> Any:
    """The figures a picture was drawn from, as it carries them (its PNG ``Comment`` chunk)."""
    assert file.data.startswith(PNG_SIGNATURE), file.filename
    assert file.description, "every picture has alt text for screen readers"
    image = Image.open(io.BytesIO(file.data))
    assert image.text["Description"] == file.description  # type: ignore[attr-defined]
    return json.loads(image.text["Comment"])  # type: ignore[attr-defined]


def figures(file: FileRecord) -> list[dict[str, Any]]:
    return list(figures_of(file))


def model(folder: Path) -> tuple[Any, Any]:
    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()


async def test_next_shows_the_models_own_probabilities_in_a_chart_and_in_words(
    server: LoopbackDiscord, transcord: bot_module.Transcord, tiny_gpt2_dir: Path
) -> None:
    reply = await run(server, "next", {"prompt": PROMPT, "top_k": 5})
    tokenizer, causal = model(tiny_gpt2_dir)
    with torch.no_grad():
        probs = causal(**tokenizer(PROMPT, return_tensors="pt")).logits[0, -1].softmax(-1)
    values, ids = probs.topk(5)
    [picture] = pictures(reply)
    drawn = figures(picture)
    assert [f["id"] for f in drawn] == ids.tolist()
    assert [f["probability"] for f in drawn] == pytest.approx(values.tolist(), abs=1e-5)
    assert picture.filename == "next-token.png"
    assert picture.description.startswith(f"Bar chart: the 5 likeliest next tokens after “{PROMPT}” on tiny")
    ranked = [m for line in (reply.content or "").splitlines() if (m := RANK_LINE.match(line))]
    assert [float(m.group(1)) for m in ranked] == pytest.approx([100 * v for v in values.tolist()], abs=0.051)
    visible = [tokenizer.decode([i]).replace(" ", "␣").replace("\n", "↵") for i in ids.tolist()]
    assert [m.group(2) for m in ranked] == visible
    assert "-# tiny · transformers: the softmax of the last position's logits" in (reply.content or "")
    assert not reply.ephemeral and no_pings(reply)


async def test_next_passes_moderation_and_its_picture_is_redacted_too(
    server: LoopbackDiscord, transcord: bot_module.Transcord, tiny_gpt2_dir: Path
) -> None:
    await run(server, "mod blocklist add", {"phrase": "dragon"}, user=server.moderator)
    refused = await run(server, "next", {"prompt": "A dragon was"})
    assert refused.ephemeral and "blocked" in (refused.content or "") and not pictures(refused)
    tokenizer, causal = model(tiny_gpt2_dir)
    with torch.no_grad():
        top = causal(**tokenizer(PROMPT, return_tensors="pt")).logits[0, -1].topk(5).indices.tolist()
    word = next(w for i in top if (w := tokenizer.decode([i]).strip()).isalpha() and len(w) > 2)
    await run(server, "mod blocklist add", {"phrase": word}, user=server.moderator)
    reply = await run(server, "next", {"prompt": PROMPT, "top_k": 5})
    [picture] = pictures(reply)
    assert all(word not in f["token"] for f in figures(picture)) and word not in picture.description
    assert word not in (reply.content or "") and len(figures(picture)) == 5


async def test_tokenize_attaches_the_tokens_with_the_tokenizers_own_ids(
    server: LoopbackDiscord, transcord: bot_module.Transcord, tiny_gpt2_dir: Path
) -> None:
    text = "Hello 你好 🤗"
    reply = await run(server, "tokenize", {"text": text})
    ids = AutoTokenizer.from_pretrained(tiny_gpt2_dir)(text)["input_ids"]
    [picture] = pictures(reply)
    assert [f["id"] for f in figures(picture)] == ids
    assert picture.filename == "tokens.png"
    assert picture.description.startswith(f"The text split into {len(ids)} tokens by tiny's tokenizer")
    assert f"**input_ids** `[{', '.join(map(str, ids))}]`" in all_text(reply)  # the text view stays
    assert no_pings(reply)


async def test_generate_show_probabilities_follows_the_reply_with_how_sure_it_was(
    server: LoopbackDiscord, transcord: bot_module.Transcord, tiny_gpt2_dir: Path
) -> None:
    options = {"prompt": PROMPT, "temperature": 0.0, "max_new_tokens": 6, "show": "probabilities"}
    reply = await run(server, "generate", options, until=lambda r: has_footer(r) and bool(pictures(r)))
    [picture] = pictures(reply)
    assert picture.filename == "probabilities.png"
    assert picture.description.startswith("The reply's ")
    drawn = figures(picture)
    tokenizer, causal = model(tiny_gpt2_dir)
    prompt = tokenizer(PROMPT)["input_ids"]
    written = [f["id"] for f in drawn]
    with torch.no_grad():  # teacher forcing, run directly: each token's probability where it was written
        logits = causal(input_ids=torch.tensor([prompt + written])).logits[0]
    expected = [float(logits[len(prompt) - 1 + i].softmax(-1)[token]) for i, token in enumerate(written)]
    assert [f["probability"] for f in drawn] == pytest.approx(expected, abs=1e-5)
    assert "".join(f["token"] for f in drawn) in all_text(reply)  # the reply as shown, token by token
    assert no_pings(reply)


async def test_generate_without_show_attaches_nothing(
    server: LoopbackDiscord, transcord: bot_module.Transcord
) -> None:
    reply = await run(server, "generate", {"prompt": PROMPT, "max_new_tokens": 4}, until=has_footer)
    assert not pictures(reply)


async def test_status_attaches_a_chart_of_the_services_own_samples(
    server: LoopbackDiscord, runner: BotRunner, transcord: bot_module.Transcord
) -> None:
    await run(server, "generate", {"prompt": PROMPT, "max_new_tokens": 6}, until=has_footer)
    assert runner.service is not None
    # A sample now, while the generation's tokens are in the service's throughput window.
    runner.service.take_sample()  # type: ignore[attr-defined]
    reply = await run(server, "status")
    samples = runner.service.status().samples
    [picture] = pictures(reply)
    assert picture.filename == "status.png"
    assert picture.description.startswith("Line chart of the bot's last 10 minutes, a sample every 5 s")
    drawn = figures_of(picture)
    # What was drawn is the service's own samples (a newer one may have been taken since).
    values = [(s.tokens_per_s, s.queue_depth, s.latency_s) for s in samples]
    assert [(d["tokens_per_s"], d["queue_depth"], d["latency_s"]) for d in drawn["samples"]] == values[
        : len(drawn["samples"])
    ]
    assert any(d["tokens_per_s"] > 0 and d["latency_s"] for d in drawn["samples"])
    assert reply.ephemeral and "**Status**" in (reply.content or "")
