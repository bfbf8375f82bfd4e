"""Mask-filling, batched: a masked LM when one is configured, else a causal LM that proposes and rescores.

Requests on one model are filled together in a ``FillBatch``: their texts (masked LM), their
proposal prompts and their candidate sentences (causal LM) share forward passes, packed up to
``FORWARD_TOKENS`` tokens each. The batch advances one forward at a time, so a scheduler can
run generation steps between them instead of stalling every stream behind a long fill.

The causal path: propose candidate words for the blank (from a few-shot "fill in the blank"
prompt and from the left context), then rank each whole filled sentence by the model's
likelihood. Ranking whole sentences lets the words after the blank vote, which the naive
"next token after the left context" cannot do.

Blocking code, called on the service's executor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, cast

import torch

from model_service.errors import ServiceError, ValidationError
from model_service.loading import LoadedModel
from model_service.types import FillMethod, FillPrediction, MaskedText, split_mask

FEW_SHOT = (
    "Fill in the blank with one word.\n"
    "Sentence: The cat sat on the ___.\nAnswer: mat\n"
    "Sentence: ___ is the largest planet.\nAnswer: Jupiter\n"
    "Sentence: {sentence}\nAnswer:"
)
PROPOSALS_PER_PROMPT = 40
# Rows x padded width of one forward (each row's own tokens; shared ones run once). Measured
# on 2 cores with the 135M default, 8 fills together: 128 took as long as 256 (the matmuls
# still run at full speed) while the peak memory fell from 1.67x to 1.50x the weights; 96 was
# slower. Small forwards also let generation steps run between them sooner.
FORWARD_TOKENS = 128

T = TypeVar("T")


@dataclass(eq=False)
class FillTask:
    """One request inside a batch: its input, then its predictions or its error."""

    text: str
    top_k: int
    predictions: list[FillPrediction] | None = None
    error: ServiceError | None = None
    dropped: bool = False  # its caller left; the batch skips its remaining work
    masked: MaskedText | None = None
    words: dict[str, None] = field(default_factory=dict)  # causal: candidates, best first
    placed: list[tuple[str, str]] = field(default_factory=list)  # causal: (token, sentence)
    totals: list[float] = field(default_factory=list)  # causal: log-likelihood per sentence

    @property
    def done(self) -> bool:
        return self.predictions is not None or self.error is not None

    @property
    def live(self) -> bool:
        return not self.done and not self.dropped


class Scorer(Protocol):
    """The forward passes fill-mask needs of an engine: log-probabilities, nothing generated.

    ``loaded`` gives the tokenizer, the head (masked or causal), the context and the lock.
    """

    loaded: LoadedModel

    def masked_logits(self, rows: list[list[int]]) -> torch.Tensor:
        """The logits at every position of each row (right-padded together): [rows, length, vocab]."""
        ...

    def next_token_logprobs(self, prompts: list[list[int]]) -> torch.Tensor:
        """The log-distribution of the token after each prompt: [prompts, vocab]."""
        ...

    def score_after_shared(
        self,
        groups: list[tuple[int, list[int], list[list[int]]]],
        use: Callable[[int, int, list[int], torch.Tensor, torch.Tensor], None],
        *,
        live: Callable[[int, int], bool],
    ) -> Iterator[None]:
        """Each group's shared tokens once, then each row's own tokens after them (one forward a yield).

        ``use(key, row, own, first, logits)`` gets the log-distribution after the shared tokens
        and the logits over the row's own tokens, for every row still ``live(key, row)``.
        """
        ...


class SteppedBatch:
    """A batch whose work is a generator that yields after each forward pass: ``advance`` runs the
    next one under the model's lock (fill-mask's batches, and the other heads' after them)."""

    loaded: LoadedModel
    _steps: Iterator[None]
    done: bool = False

    def advance(self) -> None:
        """Run the next forward pass (and whatever bookkeeping follows it)."""
        if self.done:
            return
        with self.loaded.lock, torch.inference_mode():
            try:
                next(self._steps)
            except StopIteration:
                self.done = True


class FillBatch(SteppedBatch):
    """Fill-mask requests on one model, worked through one forward pass per ``advance``."""

    def __init__(self, scorer: Scorer, tasks: Sequence[FillTask]) -> None:
        self.scorer = scorer
        loaded = self.loaded = scorer.loaded
        self.tasks = list(tasks)
        for task in self.tasks:
            try:
                self._check(task)
            except ValidationError as error:
                task.error = error
        self._steps = self._masked_lm() if loaded.head == "masked" else self._causal()
        self.done = False

    @property
    def method(self) -> FillMethod:
        return "masked_lm" if self.loaded.head == "masked" else "causal_rescore"

    def run(self) -> None:
        while not self.done:
            self.advance()

    # -- checks ---------------------------------------------------------------------------------

    def _check(self, task: FillTask) -> None:
        tok = self.loaded.tokenizer
        if self.loaded.head == "masked":
            task.masked = split_mask(task.text, tok.mask_token)
            check_length(self.loaded, task.masked.left + tok.mask_token + task.masked.right)
        else:
            task.masked = split_mask(task.text, None)
            check_length(self.loaded, FEW_SHOT.format(sentence=task.text))

    # -- masked LM ------------------------------------------------------------------------------

    def _masked_lm(self) -> Iterator[None]:
        tok = self.loaded.tokenizer
        live = [t for t in self.tasks if t.live]
        mask = tok.mask_token
        assert mask is not None  # the masked-LM path is taken only for tokenizers with a mask token
        texts = []
        for task in live:
            assert task.masked is not None  # checked when the task joined
            texts.append(task.masked.left + mask + task.masked.right)
        encoded = [tok(text, add_special_tokens=True)["input_ids"] for text in texts]
        for chunk in chunks(list(zip(live, encoded, strict=True)), lambda item: len(item[1])):
            chunk = [(t, ids) for t, ids in chunk if t.live]
            if not chunk:
                continue
            logits = self.scorer.masked_logits([ids for _, ids in chunk])
            for row, (task, row_ids) in enumerate(chunk):
                position = row_ids.index(tok.mask_token_id)
                task.predictions = self._masked_predictions(task, logits[row, position].float().softmax(-1))
            yield

    def _masked_predictions(self, task: FillTask, probs: torch.Tensor) -> list[FillPrediction]:
        tok, masked = self.loaded.tokenizer, task.masked
        assert masked is not None
        inside_word = masked.left[-1:].isalnum()
        out: list[FillPrediction] = []
        top = probs.topk(min(len(probs), task.top_k * 4 + len(tok.all_special_ids)))
        for score, token_id in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            token = _shown_piece(self.loaded, token_id, inside_word)
            if token is not None and len(out) < task.top_k:
                out.append(
                    FillPrediction(token=token, score=score, sequence=masked.left + token + masked.right)
                )
        return out

    # -- causal LM: propose, then rescore -------------------------------------------------------

    def _causal(self) -> Iterator[None]:
        tok = self.loaded.tokenizer
        live = [t for t in self.tasks if t.live]
        if not live:
            return
        # The few-shot prompts of all tasks share their instructions and examples: one group.
        few_shot = [tok(_few_shot_prompt(t))["input_ids"] for t in live]
        shared, owns = _split_shared(few_shot)

        def propose(group: int, row: int, own: list[int], first: torch.Tensor, logits: torch.Tensor) -> None:
            self._add_words(live[row], logits[len(own) - 1].float().log_softmax(-1))  # after the prompt

        yield from self.scorer.score_after_shared(
            [(0, shared, owns)], propose, live=lambda _, r: live[r].live
        )
        left = [
            (t, tok(t.masked.left.rstrip())["input_ids"]) for t in live if t.masked and t.masked.left.strip()
        ]
        for chunk in chunks(left, lambda item: len(item[1])):
            chunk = [(t, ids) for t, ids in chunk if t.live]
            if not chunk:
                continue
            for (task, _), row in zip(
                chunk, self.scorer.next_token_logprobs([ids for _, ids in chunk]), strict=True
            ):
                self._add_words(task, row)
            yield

        # Every candidate sentence of a task starts with the same tokens (the text before the
        # blank): run them once per task and score only what follows, on a copy of their cache.
        # The shared tokens' likelihood is the same for every candidate, so the ranking and the
        # scores, normalised among the candidates, are those of the whole sentences.
        # "\n" stands for the start of text (a tokenizer that drops it gets its end-of-text token).
        start = tok("\n", add_special_tokens=False)["input_ids"] or [tok.eos_token_id or 0]
        scored = []
        for task in (t for t in live if t.live):
            assert task.masked is not None
            task.placed = [_with_leading_space(task.masked, w) for w in task.words]
            task.totals = [0.0] * len(task.placed)
            if task.placed:
                sentences = [start + tok(s, add_special_tokens=False)["input_ids"] for _, s in task.placed]
                scored.append((task, _split_shared(sentences)))
        left_to_score = [len(owns) for _, (_, owns) in scored]

        def score(group: int, row: int, own: list[int], first: torch.Tensor, logits: torch.Tensor) -> None:
            task = scored[group][0]
            following = logits[: len(own) - 1].float().log_softmax(-1)
            targets = torch.tensor(own[1:], device=following.device)
            task.totals[row] = float(first[own[0]] + following.gather(-1, targets[:, None]).sum())
            left_to_score[group] -= 1
            if left_to_score[group] == 0:
                task.predictions = _ranked(task)  # answered as soon as its own rows are scored

        groups = [(g, shared, owns) for g, (_, (shared, owns)) in enumerate(scored)]
        for together in chunks(groups, lambda group: len(group[1])):
            yield from self.scorer.score_after_shared(together, score, live=lambda g, _: scored[g][0].live)

        for task in (t for t in live if t.live):
            task.predictions = _ranked(task)  # no candidates: an empty answer

    def _add_words(self, task: FillTask, logprobs: torch.Tensor) -> None:
        for token_id in logprobs.topk(PROPOSALS_PER_PROMPT).indices.tolist():
            piece = cast(str, self.loaded.tokenizer.decode([token_id]))  # one sequence: one str
            if _is_word(piece):
                task.words.setdefault(piece.strip(), None)


def fill(scorer: Scorer, text: str, top_k: int) -> list[FillPrediction]:
    """Fill one text on its own (a batch of one); raises the request's error."""
    task = FillTask(text, top_k)
    FillBatch(scorer, [task]).run()
    if task.error is not None:
        raise task.error
    assert task.predictions is not None
    return task.predictions


# -- helpers ----------------------------------------------------------------------------------


def check_length(loaded: LoadedModel, text: str, overhead: int = 0) -> None:
    """Refuse a text the model can't see whole (the mask's context matters on both sides)."""
    tokens = len(loaded.tokenizer(text, add_special_tokens=True)["input_ids"])
    limit = loaded.context_length - overhead
    if tokens > limit:
        raise ValidationError(
            f"`text` is too long for model `{loaded.name}`: {tokens} tokens, at most {limit}"
        )


def chunks(items: list[T], length: Callable[[T], int], budget: int | None = None) -> Iterator[list[T]]:
    """Consecutive runs of ``items`` whose rows x longest length stays within ``budget``."""
    budget = budget or FORWARD_TOKENS  # read now, not when this module was imported
    chunk: list[T] = []
    width = 0
    for item in items:
        n = length(item)
        if chunk and max(width, n) * (len(chunk) + 1) > budget:
            yield chunk
            chunk, width = [], 0
        chunk.append(item)
        width = max(width, n)
    if chunk:
        yield chunk


def on_device(loaded: LoadedModel, **tensors: torch.Tensor) -> dict[str, torch.Tensor]:
    return {name: t.to(loaded.device) for name, t in tensors.items()}


def _split_shared(sequences: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """``(the tokens every sequence starts with, each one's own tokens)``.

    Every sequence keeps at least one token of its own, so each has something to score.
    """
    shared = min(len(s) for s in sequences) - 1
    for position in range(shared):
        if any(s[position] != sequences[0][position] for s in sequences):
            shared = position
            break
    return sequences[0][:shared], [s[shared:] for s in sequences]


def _few_shot_prompt(task: FillTask) -> str:
    masked = task.masked
    assert masked is not None
    return FEW_SHOT.format(sentence=f"{masked.left}___{masked.right}")


def _ranked(task: FillTask) -> list[FillPrediction]:
    if not task.placed:
        return []
    # Scores are probabilities among the candidates, so they add up and compare at a glance.
    best = max(task.totals)
    weights = [math.exp(t - best) for t in task.totals]
    norm = sum(weights)
    ranked = sorted(zip(weights, task.placed, strict=True), key=lambda item: item[0], reverse=True)
    return [FillPrediction(token=t, score=w / norm, sequence=s) for w, (t, s) in ranked[: task.top_k]]


def _with_leading_space(masked: MaskedText, word: str) -> tuple[str, str]:
    """Where the word goes: ``(token, sentence)``; a word after a space carries the space."""
    if masked.left[-1:].isspace():
        token = " " + word
        return token, masked.left.rstrip() + token + masked.right
    return word, masked.left + word + masked.right


def _shown_piece(loaded: LoadedModel, token_id: int, inside_word: bool) -> str | None:
    """The word a vocabulary entry stands for, or None for pieces a person would not accept."""
    tok = loaded.tokenizer
    if token_id in tok.all_special_ids:
        return None
    piece = cast(str, tok.convert_ids_to_tokens(token_id))  # one id: one token
    if piece.startswith("##"):
        # A word-piece continues the word before it: right only when the mask is inside a word.
        return piece[2:] if inside_word else None
    text = cast(str, tok.decode([token_id])).strip()
    return text or None


def _is_word(text: str) -> bool:
    stripped = text.strip()
    return (
        bool(stripped)
        and any(c.isalnum() for c in stripped)
        and all(c.isalnum() or c in "'-" for c in stripped)
    )
