"""Text generation: preprocess (prompt -> ids) and postprocess (tokens -> text deltas).

The forward passes live in ``batching`` (many requests share each step); this module turns a
request into token ids, decodes tokens into text as they come (transformers' ``TextStreamer``
logic), and holds back text that may be the start of a stop sequence. Blocking code, run on
the service's executor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase, TextStreamer

from model_service.loading import LoadedModel
from model_service.types import FinishReason, GenerationParams, GenerationRequest


@dataclass(frozen=True)
class PreparedPrompt:
    input_ids: list[int]
    truncated: bool


def prepare(loaded: LoadedModel, request: GenerationRequest) -> PreparedPrompt:
    """Turn the request into token ids, cut from the left to leave room for the answer."""
    budget = max(1, loaded.context_length - request.params.max_new_tokens)
    if request.mode == "chat" and loaded.has_chat_template:
        return _prepare_chat(loaded, request, budget)
    ids = loaded.tokenizer(request.prompt, add_special_tokens=True)["input_ids"]
    if len(ids) > budget:
        return PreparedPrompt(ids[-budget:], True)
    return PreparedPrompt(ids, False)


def _chat_ids(loaded: LoadedModel, system: str | None, message: str) -> list[int]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": message})
    text = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return loaded.tokenizer(text, add_special_tokens=False)["input_ids"]


def _prepare_chat(loaded: LoadedModel, request: GenerationRequest, budget: int) -> PreparedPrompt:
    ids = _chat_ids(loaded, request.system_prompt, request.prompt)
    if len(ids) <= budget:
        return PreparedPrompt(ids, False)
    # Cut the user's message, not the template around it, so the turn stays well-formed.
    overhead = len(_chat_ids(loaded, request.system_prompt, ""))
    keep = max(1, budget - overhead)
    message_ids = loaded.tokenizer(request.prompt, add_special_tokens=False)["input_ids"][-keep:]
    message = loaded.tokenizer.decode(message_ids)
    return PreparedPrompt(_chat_ids(loaded, request.system_prompt, message)[-budget:], True)


class StopFilter:
    """Holds back text that might be the start of a stop sequence; cuts at a full match."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = stops
        self._hold = max((len(s) for s in stops), default=1) - 1
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self._pending += text
        cut = min((i for s in self._stops if (i := self._pending.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        safe = len(self._pending) - self._hold
        if safe <= 0:
            return ""
        out, self._pending = self._pending[:safe], self._pending[safe:]
        return out

    def flush(self) -> str:
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out


class TextDecoder(TextStreamer):
    """transformers' word-boundary-aware incremental decoding, handing text back instead of printing."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(tokenizer, skip_prompt=False, skip_special_tokens=True)
        self._out: list[str] = []

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self._out.append(text)

    def push(self, token: int) -> str:
        self.put(torch.tensor([token]))
        return self._drain()

    def flush(self) -> str:
        self.end()
        return self._drain()

    def _drain(self) -> str:
        text, self._out = "".join(self._out), []
        return text


@dataclass(frozen=True)
class RawGeneration:
    text: str
    finish_reason: FinishReason
    generated_tokens: int
    first_text_at: float | None


def run(
    loaded: LoadedModel,
    prompt: PreparedPrompt,
    params: GenerationParams,
    on_text: Callable[[str], None],
    should_stop: Callable[[], FinishReason | None],
) -> RawGeneration:
    """One request on its own: a batch of one, stepped until it finishes."""
    from model_service.batching import Batch, new_row  # batching builds on this module

    row = new_row(loaded, prompt, params, should_stop)
    batch = Batch(loaded)
    joining = [row]
    text = ""
    while row.finish_reason is None:
        batch.step(joining)
        joining = []
        if delta := row.take_text():
            text += delta
            on_text(delta)
    return RawGeneration(text, row.finish_reason, row.generated, row.first_text_at)
