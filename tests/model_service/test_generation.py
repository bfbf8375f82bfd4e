"""Text generation on the tiny GPT-2: what a user sees come back for a prompt and settings."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from model_service import generation
from model_service.config import ServiceConfig
from model_service.errors import ValidationError
from model_service.loading import LoadedModel, load
from model_service.service import ModelService
from model_service.types import ChatTurn, FinishReason, GenerationParams, GenerationRequest
from tests.fixtures import generation as alone
from tests.fixtures.tiny_models import EOS, IM_END, IM_START, service_config

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2_dir: Path) -> LoadedModel:
    return load("tiny-gpt2", str(tiny_gpt2_dir), "generate", device="cpu", dtype="float32", offline=True)


def params(**values: object) -> GenerationParams:
    return GenerationParams.from_values({"temperature": 0, **values})


def never() -> FinishReason | None:
    return None


def run(
    loaded: LoadedModel,
    prompt: str,
    settings: GenerationParams,
    *,
    deltas: list[str] | None = None,
    should_stop: Callable[[], FinishReason | None] = never,
) -> alone.RawGeneration:
    request = GenerationRequest(prompt, settings)
    sink = deltas if deltas is not None else []
    return alone.run(loaded, generation.prepare(loaded, request), settings, sink.append, should_stop)


def reference_greedy(loaded: LoadedModel, prompt: str, max_new_tokens: int) -> str:
    """transformers' own greedy decoding, run directly on the same ids."""
    ids = torch.tensor([loaded.tokenizer(prompt)["input_ids"]])
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=loaded.tokenizer.pad_token_id,
        )
    return loaded.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


# -- decoding ----------------------------------------------------------------------------------


def test_greedy_matches_transformers_generate(gpt2: LoadedModel) -> None:
    result = run(gpt2, PROMPT, params(max_new_tokens=40))
    assert result.text == reference_greedy(gpt2, PROMPT, 40)
    assert len(result.text.split()) > 3  # real words, not an empty or single-token answer
    assert run(gpt2, PROMPT, params(max_new_tokens=40)).text == result.text


def test_same_seed_same_story_different_seeds_differ(gpt2: LoadedModel) -> None:
    sampled = params(temperature=1.0, top_p=1.0, max_new_tokens=30)
    first = run(gpt2, PROMPT, replace(sampled, seed=7))
    assert run(gpt2, PROMPT, replace(sampled, seed=7)).text == first.text
    others = {run(gpt2, PROMPT, replace(sampled, seed=seed)).text for seed in range(4)}
    assert len(others | {first.text}) > 1


def test_max_new_tokens_is_respected(gpt2: LoadedModel) -> None:
    for limit in (1, 5, 17):
        result = run(gpt2, PROMPT, params(max_new_tokens=limit))
        assert result.generated_tokens == limit
        assert result.finish_reason == "length"


# -- stop sequences ----------------------------------------------------------------------------


def stop_in_the_middle(text: str) -> str:
    """A 4-character piece of ``text`` whose first occurrence is well inside it."""
    for start in range(8, len(text) - 8):
        piece = text[start : start + 4]
        if text.find(piece) == start and piece.strip():
            return piece
    raise AssertionError(f"no usable stop sequence in {text!r}")


def test_stop_sequence_cuts_text_and_never_streams(gpt2: LoadedModel) -> None:
    full = run(gpt2, PROMPT, params(max_new_tokens=60)).text
    stop = stop_in_the_middle(full)
    deltas: list[str] = []
    result = run(gpt2, PROMPT, params(max_new_tokens=60, stop=[stop]), deltas=deltas)
    assert result.text == full[: full.find(stop)]
    assert result.finish_reason == "stop"
    assert "".join(deltas) == result.text
    assert result.generated_tokens < 60


def test_newline_stop_ends_at_the_first_line(gpt2: LoadedModel) -> None:
    full = run(gpt2, "The capital of", params(max_new_tokens=60)).text
    assert "\n" in full
    result = run(gpt2, "The capital of", params(max_new_tokens=60, stop="\n"))
    assert result.text == full.split("\n")[0]
    assert result.finish_reason == "stop"


def test_earliest_of_several_stops_wins(gpt2: LoadedModel) -> None:
    full = run(gpt2, PROMPT, params(max_new_tokens=60)).text
    early = stop_in_the_middle(full)
    late = full[full.find(early) + 6 : full.find(early) + 10]
    assert late.strip() and late not in full[: full.find(early) + 4]
    result = run(gpt2, PROMPT, params(max_new_tokens=60, stop=[late, early]))
    assert result.text == full[: full.find(early)]


def test_stop_sequence_at_the_very_end_reports_stop(gpt2: LoadedModel) -> None:
    full = run(gpt2, PROMPT, params(max_new_tokens=30)).text
    tail = full[-3:]
    assert full.find(tail) == len(full) - 3, full
    result = run(gpt2, PROMPT, params(max_new_tokens=30, stop=[tail]))
    assert result.text == full[:-3]
    assert result.finish_reason == "stop"


# -- stopping from outside: cancel and timeout -------------------------------------------------


@pytest.mark.parametrize("reason", ["cancelled", "timeout"])
def test_outside_stop_is_obeyed_within_a_token(gpt2: LoadedModel, reason: FinishReason) -> None:
    checks = 0

    def stop_after_five() -> FinishReason | None:
        nonlocal checks
        checks += 1
        return reason if checks >= 5 else None

    full = run(gpt2, PROMPT, params(max_new_tokens=100)).text
    result = run(gpt2, PROMPT, params(max_new_tokens=100), should_stop=stop_after_five)
    assert result.finish_reason == reason
    assert result.generated_tokens == 5
    assert full.startswith(result.text)


# -- prompts -----------------------------------------------------------------------------------


def test_long_prompt_is_cut_from_the_left(gpt2: LoadedModel) -> None:
    words = [f"w{i}" for i in range(400)]
    prompt = " ".join(words)
    settings = params(max_new_tokens=16)
    prepared = generation.prepare(gpt2, GenerationRequest(prompt, settings))
    full_ids = gpt2.tokenizer(prompt)["input_ids"]
    budget = gpt2.context_length - 16
    assert len(full_ids) > budget
    assert prepared.truncated
    assert prepared.input_ids == full_ids[-budget:]  # the end of the prompt is what's kept
    result = run(gpt2, prompt, settings)
    assert result.generated_tokens == 16


def test_short_prompt_is_kept_whole(gpt2: LoadedModel) -> None:
    prepared = generation.prepare(gpt2, GenerationRequest(PROMPT, params(max_new_tokens=16)))
    assert not prepared.truncated
    assert gpt2.tokenizer.decode(prepared.input_ids) == PROMPT


def test_more_new_tokens_than_the_context_stops_at_the_context(gpt2: LoadedModel) -> None:
    settings = params(max_new_tokens=gpt2.context_length + 20)
    result = run(gpt2, PROMPT, settings)
    assert result.finish_reason == "length"
    assert result.generated_tokens <= gpt2.context_length


def chat(
    loaded: LoadedModel, prompt: str, persona: str | None, **values: object
) -> generation.PreparedPrompt:
    request = GenerationRequest(prompt, params(**values), mode="chat", system_prompt=persona)
    return generation.prepare(loaded, request)


def test_chat_mode_uses_the_chat_template(gpt2: LoadedModel) -> None:
    text = gpt2.tokenizer.decode(chat(gpt2, "Tell me a story", "You are a pirate.").input_ids)
    assert text == (
        f"{IM_START}system\nYou are a pirate.{IM_END}\n"
        f"{IM_START}user\nTell me a story{IM_END}\n"
        f"{IM_START}assistant\n"
    )
    without_persona = gpt2.tokenizer.decode(chat(gpt2, "Tell me a story", None).input_ids)
    assert "system" not in without_persona
    assert without_persona.startswith(f"{IM_START}user\nTell me a story")
    completion = generation.prepare(gpt2, GenerationRequest("Tell me a story", params()))
    assert IM_START not in gpt2.tokenizer.decode(completion.input_ids)


def test_long_chat_message_is_cut_but_the_turn_stays_whole(gpt2: LoadedModel) -> None:
    message = " ".join(f"w{i}" for i in range(400))
    prepared = chat(gpt2, message, "You are a pirate.", max_new_tokens=32)
    text = gpt2.tokenizer.decode(prepared.input_ids)
    assert prepared.truncated
    assert len(prepared.input_ids) <= gpt2.context_length - 32
    assert text.startswith(f"{IM_START}system\nYou are a pirate.{IM_END}\n{IM_START}user\n")
    assert text.endswith(f"w399{IM_END}\n{IM_START}assistant\n")
    assert "w0 " not in text


def test_a_conversation_puts_earlier_turns_between_persona_and_message(gpt2: LoadedModel) -> None:
    history = (
        ChatTurn("user", "My name is Ada.", "Ada"),
        ChatTurn("assistant", "Hello Ada."),
    )
    request = GenerationRequest(
        "What is my name?", params(), mode="chat", system_prompt="Be kind.", history=history, author="Bob"
    )
    prepared = generation.prepare(gpt2, request)
    assert gpt2.tokenizer.decode(prepared.input_ids) == (
        f"{IM_START}system\nBe kind.{IM_END}\n"
        f"{IM_START}user\nAda: My name is Ada.{IM_END}\n"
        f"{IM_START}assistant\nHello Ada.{IM_END}\n"
        f"{IM_START}user\nBob: What is my name?{IM_END}\n"
        f"{IM_START}assistant\n"
    )
    assert prepared.history_dropped == 0 and not prepared.truncated


def test_the_oldest_turns_are_left_out_first_to_fit(gpt2: LoadedModel) -> None:
    history = tuple(
        ChatTurn("user" if i % 2 == 0 else "assistant", f"turn{i} " + "x " * 20) for i in range(10)
    )
    request = GenerationRequest(
        "the newest message",
        params(max_new_tokens=120),
        mode="chat",
        system_prompt="Persona here.",
        history=history,
    )
    prepared = generation.prepare(gpt2, request)
    text = gpt2.tokenizer.decode(prepared.input_ids)
    assert 0 < prepared.history_dropped < 10 and not prepared.truncated
    assert len(prepared.input_ids) <= gpt2.context_length - 120
    kept = [i for i in range(10) if f"turn{i} " in text]
    assert kept == list(range(prepared.history_dropped, 10))  # the newest turns, in order
    assert text.startswith(f"{IM_START}system\nPersona here.") and "the newest message" in text


def test_a_continued_chat_reply_begins_the_assistant_turn_with_what_was_written(gpt2: LoadedModel) -> None:
    request = GenerationRequest(
        "Tell me a story", params(), mode="chat", system_prompt="Be brief.", continuation="Once upon"
    )
    assert gpt2.tokenizer.decode(generation.prepare(gpt2, request).input_ids) == (
        f"{IM_START}system\nBe brief.{IM_END}\n"
        f"{IM_START}user\nTell me a story{IM_END}\n"
        f"{IM_START}assistant\nOnce upon"
    )


def test_continuing_a_greedy_reply_writes_what_a_longer_reply_would(gpt2: LoadedModel) -> None:
    first = run(gpt2, PROMPT, params(max_new_tokens=12)).text
    longer = run(gpt2, PROMPT, params(max_new_tokens=40)).text
    request = GenerationRequest(PROMPT, params(max_new_tokens=28), continuation=first)
    more = alone.run(gpt2, generation.prepare(gpt2, request), request.params, [].append, never).text
    assert first and more
    # The text is re-tokenized, so the words may split differently; the words themselves agree.
    assert (first + more).split()[:12] == longer.split()[:12]


def test_history_is_for_chat_mode_only() -> None:
    with pytest.raises(ValidationError, match="chat mode only"):
        GenerationRequest("x", history=(ChatTurn("user", "hi"),))


def test_chat_mode_without_a_template_falls_back_to_the_plain_prompt(
    tmp_path: Path, tiny_gpt2_dir: Path
) -> None:
    folder = tmp_path / "no-template"
    shutil.copytree(tiny_gpt2_dir, folder)
    (folder / "chat_template.jinja").unlink()
    loaded = load("plain", str(folder), "generate", device="cpu", dtype="float32", offline=True)
    assert not loaded.has_chat_template
    prepared = chat(loaded, "Tell me a story", "You are a pirate.")
    assert loaded.tokenizer.decode(prepared.input_ids) == "Tell me a story"


# -- through the service: the stream is the text -----------------------------------------------


@pytest.fixture
def config(tiny_gpt2_dir: Path) -> ServiceConfig:
    return service_config({"tiny-gpt2": tiny_gpt2_dir}, preload=True)


async def test_stream_deltas_add_up_to_the_result(config: ServiceConfig, gpt2: LoadedModel) -> None:
    async with ModelService(config) as service:
        request = GenerationRequest(PROMPT, params(max_new_tokens=50))
        stream = service.stream(request)
        deltas = [delta async for delta in stream]
        assert stream.result is not None
        assert len(deltas) > 3  # it really streamed, not one lump at the end
        assert "".join(deltas) == stream.result.text
        assert stream.result.text == reference_greedy(gpt2, PROMPT, 50)
        assert stream.result.model == "tiny-gpt2"
        assert stream.result.prompt_tokens == len(gpt2.tokenizer(PROMPT)["input_ids"])
        assert stream.result.generated_tokens == 50
        assert not stream.result.prompt_truncated
        assert stream.result.first_token_s is not None
        assert 0 <= stream.result.first_token_s <= stream.result.elapsed_s


async def test_stream_never_shows_the_stop_sequence(config: ServiceConfig) -> None:
    async with ModelService(config) as service:
        full = (await service.generate(GenerationRequest(PROMPT, params(max_new_tokens=60)))).text
        stop = stop_in_the_middle(full)
        stream = service.stream(GenerationRequest(PROMPT, params(max_new_tokens=60, stop=[stop])))
        deltas = [delta async for delta in stream]
        assert stream.result is not None
        assert "".join(deltas) == stream.result.text == full[: full.find(stop)]
        assert stream.result.finish_reason == "stop"


async def test_chat_mode_through_the_service_answers(config: ServiceConfig) -> None:
    async with ModelService(config) as service:
        request = GenerationRequest(
            "Tell me a story", params(max_new_tokens=20), mode="chat", system_prompt="You are a pirate."
        )
        result = await service.generate(request)
        assert result.text.strip()
        assert IM_START not in result.text and EOS not in result.text
        assert result.prompt_tokens > len("Tell me a story".split())
