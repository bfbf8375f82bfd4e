"""Text generation: preprocess (prompt -> ids), forward (model.generate), postprocess (text).

Blocking code, run on the service's executor. Streaming goes through transformers'
``TextStreamer``; stopping (cancel, timeout, stop sequences) through a ``StoppingCriteria``
that is checked after every token, so a cancelled request stops within a token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

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


class _Streamer(TextStreamer):
    """transformers' word-boundary-aware decoding, delivering deltas through a stop filter."""

    def __init__(self, loaded: LoadedModel, stops: StopFilter, on_text: Callable[[str], None]) -> None:
        super().__init__(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._stops = stops
        self._on_text = on_text
        self.first_text_at: float | None = None
        self.text = ""

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        delta = self._stops.feed(text) + (self._stops.flush() if stream_end else "")
        if delta:
            self.first_text_at = self.first_text_at or time.monotonic()
            self.text += delta
            self._on_text(delta)


class _Stopper(StoppingCriteria):
    """Checked after every token: cancel, deadline, or a stop sequence seen."""

    def __init__(self, should_stop: Callable[[], FinishReason | None], stops: StopFilter) -> None:
        self._should_stop = should_stop
        self._stops = stops
        self.reason: FinishReason | None = None

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object
    ) -> torch.BoolTensor:
        if self.reason is None:
            self.reason = "stop" if self._stops.stopped else self._should_stop()
        done = self.reason is not None
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


@dataclass(frozen=True)
class RawGeneration:
    text: str
    finish_reason: FinishReason
    generated_tokens: int
    first_text_at: float | None


def _sampling_kwargs(params: GenerationParams) -> dict[str, object]:
    if params.greedy:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {
        "do_sample": True,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
    }


def run(
    loaded: LoadedModel,
    prompt: PreparedPrompt,
    params: GenerationParams,
    on_text: Callable[[str], None],
    should_stop: Callable[[], FinishReason | None],
) -> RawGeneration:
    """The forward step: touches only the model, under inference mode and the model's lock."""
    stops = StopFilter(params.stop)
    streamer = _Streamer(loaded, stops, on_text)
    stopper = _Stopper(should_stop, stops)
    input_ids = torch.tensor([prompt.input_ids], device=loaded.device)
    tok = loaded.tokenizer
    with loaded.lock, torch.inference_mode():
        if params.seed is not None:
            torch.manual_seed(params.seed)
        output = loaded.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            # Never past the model's positions, however large the request.
            max_new_tokens=max(1, min(params.max_new_tokens, loaded.context_length - len(prompt.input_ids))),
            repetition_penalty=params.repetition_penalty,
            pad_token_id=tok.pad_token_id,
            eos_token_id=loaded.model.generation_config.eos_token_id or tok.eos_token_id,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([stopper]),
            **_sampling_kwargs(params),
        )
    new_ids = output[0, input_ids.shape[1] :].tolist()
    reason = stopper.reason or ("stop" if stops.stopped else _natural_finish(loaded, new_ids, params))
    return RawGeneration(streamer.text, reason, len(new_ids), streamer.first_text_at)


def _natural_finish(loaded: LoadedModel, new_ids: list[int], params: GenerationParams) -> FinishReason:
    eos = loaded.model.generation_config.eos_token_id or loaded.tokenizer.eos_token_id
    eos_ids = set(eos) if isinstance(eos, list) else {eos}
    if new_ids and new_ids[-1] in eos_ids:
        return "eos"
    return "length"
