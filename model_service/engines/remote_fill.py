"""Fill-mask on a server that gives prompt log-probabilities (vLLM, SGLang): the causal path of
``fill_mask`` (propose candidate words, rank each whole filled sentence by its likelihood), with
the server's answers in place of our forward passes.

Proposals are the top alternatives (``logprobs``) for the token after the few-shot prompt and
after the left context, all tasks in one request; each task's candidate sentences are then scored
in one request with ``echo`` and ``logprobs``, whose ``token_logprobs`` over the echoed prompt are
the log-likelihood of each sentence token given those before it. With a local tokenizer the
prompts are sent as token ids, built exactly as the local engines build them, so the ranking is
the same as the transformers engine's on the same weights (fewer proposals: servers cap
``logprobs``, vLLM at 20 by default, where the local path takes 40).

Blocking: each ``advance`` is one request, on the service's executor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from model_service.engines.remote_client import RemoteServer, ServerFacts
from model_service.engines.remote_requests import CHARS_PER_TOKEN
from model_service.errors import ModelUnavailableError, ValidationError
from model_service.fill_mask import FEW_SHOT, FillTask, _is_word, _ranked, _with_leading_space
from model_service.types import FillMethod, split_mask

Prompt = str | list[int]


class EchoFill:
    """Fill-mask requests on one remote model, one request per ``advance`` (``FillWork``)."""

    method: FillMethod = "causal_rescore"

    def __init__(
        self,
        server: RemoteServer,
        facts: ServerFacts,
        tokenizer: PreTrainedTokenizerBase | None,
        tasks: Sequence[FillTask],
    ) -> None:
        self._server = server
        self._facts = facts
        self._tokenizer = tokenizer
        self.tasks = list(tasks)
        for task in self.tasks:
            try:
                task.masked = split_mask(task.text, None)
                self._check_length(FEW_SHOT.format(sentence=task.text))
            except ValidationError as error:
                task.error = error
        self._steps = self._work()
        self.done = False

    def advance(self) -> None:
        if self.done:
            return
        try:
            next(self._steps)
        except StopIteration:
            self.done = True

    def _work(self) -> Iterator[None]:
        live = [t for t in self.tasks if t.live]
        if not live:
            return
        # Candidates: after the few-shot prompt, and after the text before the blank.
        prompts: list[Prompt] = []
        owners: list[FillTask] = []
        for task in live:
            assert task.masked is not None
            left = task.masked.left.rstrip()
            for text in (FEW_SHOT.format(sentence=f"{task.masked.left}___{task.masked.right}"), left):
                if text.strip():
                    prompts.append(self._encode(text, special=True))
                    owners.append(task)
        reply = self._complete(prompts, logprobs=self._facts.flavour.top_logprobs, echo=False)
        for index, choice in _choices(reply, len(prompts)):
            for token in _alternatives(choice):
                if _is_word(token):
                    owners[index].words.setdefault(token.strip(), None)
        yield
        # Each task's candidate sentences, scored whole in one request ("\n" stands for the start).
        for task in (t for t in live if t.live):
            assert task.masked is not None
            task.placed = [_with_leading_space(task.masked, w) for w in task.words]
            if task.placed:
                sentences = [self._sentence(s) for _, s in task.placed]
                reply = self._complete(sentences, logprobs=1, echo=True)
                task.totals = [self._likelihood(c, sentences[i]) for i, c in _choices(reply, len(sentences))]
            task.predictions = _ranked(task)
            yield

    # -- prompts ----------------------------------------------------------------------------------

    def _encode(self, text: str, *, special: bool) -> Prompt:
        if self._tokenizer is None or not self._facts.flavour.token_prompts:
            return text
        return list(self._tokenizer(text, add_special_tokens=special)["input_ids"])

    def _sentence(self, sentence: str) -> Prompt:
        if self._tokenizer is None or not self._facts.flavour.token_prompts:
            return "\n" + sentence
        tok = self._tokenizer
        start = tok("\n", add_special_tokens=False)["input_ids"] or [tok.eos_token_id or 0]
        return list(start) + list(tok(sentence, add_special_tokens=False)["input_ids"])

    def _check_length(self, text: str) -> None:
        limit = self._facts.context
        if limit is None:
            return
        if self._tokenizer is not None:
            tokens = len(self._tokenizer(text)["input_ids"])
        else:
            tokens = len(text) // CHARS_PER_TOKEN
        if tokens > limit:
            raise ValidationError(
                f"`text` is too long for model `{self._server.name}`: {tokens} tokens, at most {limit}"
            )

    # -- the server ---------------------------------------------------------------------------------

    def _complete(self, prompts: list[Prompt], *, logprobs: int, echo: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            **({"model": self._facts.model_id} if self._facts.model_id else {}),
            "prompt": prompts,
            "max_tokens": 1,  # SGLang refuses 0; the one token written is not used
            "temperature": 0.0,
            "logprobs": logprobs,
            "echo": echo,
        }
        return self._server.loop.call(self._server.post("/completions", body))

    def _likelihood(self, choice: dict[str, Any], prompt: Prompt) -> float:
        """The sum of the echoed prompt's token log-probabilities (the first has none)."""
        logprobs = choice.get("logprobs") or {}
        values = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
        if not isinstance(values, list) or len(values) < 2:
            raise ModelUnavailableError(
                f"model `{self._server.name}`: its {self._facts.flavour.label} server at {self._server.url} "
                "returned no log-probabilities of prompt tokens for `echo` with `logprobs`, which /fill needs"
            )
        if isinstance(prompt, list):
            count = len(prompt)
        elif isinstance(offsets := logprobs.get("text_offset"), list) and len(offsets) == len(values):
            # The prompt's own tokens are those that start inside it; the written one follows.
            count = sum(1 for offset in offsets if isinstance(offset, int) and offset < len(prompt))
        else:
            count = len(values) - 1
        return float(sum(v for v in values[1:count] if isinstance(v, int | float)))


def _choices(reply: dict[str, Any], expected: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """The answer's choices by prompt index (one per prompt)."""
    choices = [c for c in reply.get("choices") or [] if isinstance(c, dict)]
    for position, choice in enumerate(choices):
        index = choice.get("index", position)
        if isinstance(index, int) and 0 <= index < expected:
            yield index, choice


def _alternatives(choice: dict[str, Any]) -> list[str]:
    """The top tokens offered for the first written position, likeliest first."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return []
    top = logprobs.get("top_logprobs")  # OpenAI completions: [{token: logprob}, ...] per position
    if isinstance(top, list) and top and isinstance(top[0], dict):
        return [t for t, _ in sorted(top[0].items(), key=lambda item: item[1], reverse=True)]
    content = logprobs.get("content")  # the chat shape, which llama-server also uses here
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return [str(alt.get("token", "")) for alt in content[0].get("top_logprobs") or []]
    return []
