"""The remote engine's preprocess: a generation request into one OpenAI-API request.

With a local tokenizer for the model (``REMOTE_TOKENIZERS``) and a server that takes token ids
(vLLM, SGLang, llama.cpp), the prompt is made exactly as on the local engines: our chat template,
our cut to fit the context (``generation.prepare``), sent as token ids to ``/v1/completions``; the
same model then writes the same text. Without one, ``/v1/completions`` gets the text and chat mode
goes to ``/v1/chat/completions`` as messages (the persona as the system message, the history as
turns, a continued reply as the assistant's unfinished last message), and the server applies its
own template; the fit to the context is then an estimate, the server having the only tokenizer.

Stop sequences are not sent: the engine cuts at them (``StopFilter``, as on the other engines) and
closes the stream, so the cut and the finish reason are the same whichever engine runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from model_service import generation
from model_service.engines.remote_client import ServerFacts
from model_service.remote_source import sampling
from model_service.types import ChatTurn, GenerationRequest

# Characters a token is taken to hold where no tokenizer counts them: on the low side of English
# text (3.5-4.5 with BPE vocabularies), so an estimate errs towards cutting a little too much.
CHARS_PER_TOKEN = 3


@dataclass(frozen=True)
class RemoteModel:
    """A remote model with a local tokenizer: what ``generation.prepare`` needs of it."""

    name: str
    tokenizer: PreTrainedTokenizerBase
    context_length: int

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


@dataclass(frozen=True)
class Prepared:
    path: str  # /completions or /chat/completions
    body: dict[str, Any]
    prompt_tokens: int  # 0: not counted here (the server's usage tells)
    truncated: bool
    history_dropped: int


def prepare(name: str, request: GenerationRequest, facts: ServerFacts, model: RemoteModel | None) -> Prepared:
    """The request for the server; raises ValidationError for a setting it cannot take."""
    context = model.context_length if model is not None else facts.context
    body: dict[str, Any] = {
        **({"model": facts.model_id} if facts.model_id else {}),
        **sampling(facts.flavour, name, request.params, context),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    max_new = request.params.max_new_tokens
    if model is not None and facts.flavour.token_prompts:
        prompt = generation.prepare(model, request)
        room = max(1, model.context_length - len(prompt.input_ids))
        body |= {"prompt": prompt.input_ids, "max_tokens": min(max_new, room)}
        return Prepared("/completions", body, len(prompt.input_ids), prompt.truncated, prompt.history_dropped)
    budget = None if context is None else max(1, context - max_new) * CHARS_PER_TOKEN
    body["max_tokens"] = max_new
    if request.mode == "chat":
        messages, dropped, cut = _messages(request, budget)
        body["messages"] = messages
        if request.continuation and facts.flavour.name in ("vllm", "sglang"):
            # llama-server continues a final assistant message by itself; these need telling.
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        return Prepared("/chat/completions", body, 0, cut, dropped)
    text = request.prompt + request.continuation
    cut = budget is not None and len(text) > budget
    body["prompt"] = text[-budget:] if cut and budget is not None else text
    return Prepared("/completions", body, 0, cut, 0)


def _messages(request: GenerationRequest, budget: int | None) -> tuple[list[dict[str, str]], int, bool]:
    """The persona and the newest turns that fit ``budget`` characters; the oldest go first."""
    history = request.history
    for dropped in range(len(history) + 1):
        messages = _chat(request, history[dropped:], request.prompt)
        if budget is None or sum(len(m["content"]) for m in messages) <= budget:
            return messages, dropped, False
    # Not even the message alone fits: keep its end, as the local engines keep its last tokens.
    overhead = sum(len(m["content"]) for m in _chat(request, (), ""))
    assert budget is not None
    return _chat(request, (), request.prompt[-max(1, budget - overhead) :]), len(history), True


def _chat(request: GenerationRequest, history: tuple[ChatTurn, ...], message: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": request.system_prompt}] if request.system_prompt else []
    messages += [{"role": turn.role, "content": turn.content()} for turn in history]
    messages.append({"role": "user", "content": ChatTurn("user", message, request.author).content()})
    if request.continuation:
        messages.append({"role": "assistant", "content": request.continuation})
    return messages
