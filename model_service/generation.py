"""Text generation's preprocess: a request into prompt token ids, cut to fit the context.

The forward passes live in ``batching`` (many requests share each step) and the postprocess
(tokens -> text deltas, stop sequences) in ``output``. Blocking code, run on the service's
executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast

from transformers import PreTrainedTokenizerBase

from model_service.types import ChatTurn, GenerationRequest


class PromptModel(Protocol):
    """What turning a request into tokens needs of a model, whichever engine runs it."""

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase: ...

    @property
    def context_length(self) -> int: ...

    @property
    def has_chat_template(self) -> bool: ...


@dataclass(frozen=True)
class PreparedPrompt:
    input_ids: list[int]
    truncated: bool
    history_dropped: int = 0  # conversation turns left out, oldest first


class PromptFacts:
    """What a row tells of its prompt (``EngineRow.prompt_tokens`` and ``prompt_truncated``)."""

    prompt: PreparedPrompt

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt.input_ids)

    @property
    def prompt_truncated(self) -> bool:
        return self.prompt.truncated

    @property
    def history_dropped(self) -> int:
        return self.prompt.history_dropped


def prepare(loaded: PromptModel, request: GenerationRequest) -> PreparedPrompt:
    """Turn the request into token ids, cut from the left to leave room for the answer."""
    budget = max(1, loaded.context_length - request.params.max_new_tokens)
    if request.mode == "chat" and loaded.has_chat_template:
        return _prepare_chat(loaded, request, budget)
    ids = loaded.tokenizer(request.prompt + request.continuation, add_special_tokens=True)["input_ids"]
    if len(ids) > budget:
        return PreparedPrompt(ids[-budget:], True)
    return PreparedPrompt(ids, False)


def _chat_ids(
    loaded: PromptModel, request: GenerationRequest, history: tuple[ChatTurn, ...], message: str
) -> list[int]:
    messages = [{"role": "system", "content": request.system_prompt}] if request.system_prompt else []
    messages += [{"role": turn.role, "content": turn.content()} for turn in history]
    messages.append({"role": "user", "content": ChatTurn("user", message, request.author).content()})
    # With tokenize=False the template gives text (transformers types every form it can return).
    text = cast(
        str, loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    )
    # A continued reply is the assistant's turn begun: the model writes on from its last word.
    ids: list[int] = loaded.tokenizer(text + request.continuation, add_special_tokens=False)["input_ids"]
    return ids


def _prepare_chat(loaded: PromptModel, request: GenerationRequest, budget: int) -> PreparedPrompt:
    """The persona and the newest turns that fit; the oldest turns are left out first."""
    history = request.history
    for dropped in range(len(history) + 1):
        kept = history[dropped:]
        ids = _chat_ids(loaded, request, kept, request.prompt)
        if len(ids) <= budget:
            return PreparedPrompt(ids, False, dropped)
    # Not even the message alone fits: cut the user's message, not the template around it, so the
    # turn stays well-formed.
    overhead = len(_chat_ids(loaded, request, (), ""))
    keep = max(1, budget - overhead)
    message_ids = loaded.tokenizer(request.prompt, add_special_tokens=False)["input_ids"][-keep:]
    message = cast(str, loaded.tokenizer.decode(message_ids))  # one sequence decodes to one str
    return PreparedPrompt(_chat_ids(loaded, request, (), message)[-budget:], True, len(history))
