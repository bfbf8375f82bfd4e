"""Text classification: a classifier head's own labels, an NLI model's zero-shot, or a causal LM's.

- **A classifier** (``AutoModelForSequenceClassification``): one forward, a softmax over the
  logits (a sigmoid each for a multi-label checkpoint), named by the config's ``id2label``.
  Given labels must be some of its own; it can't be asked about others.
- **An NLI model** (its labels include ``entailment``): the zero-shot recipe of transformers'
  zero-shot pipeline, each label a hypothesis ("This example is positive."); the softmax of
  the entailment logits over the labels.
- **A causal LM** (the default model, zero-shot): the likelihood of each label written after the
  text ("... The text above is positive"), calibrated by the same prompt with no text (the
  label's prior), so a label the model likes in general does not win by that alone; the
  softmax over the calibrated log-likelihoods. The prompt and its label continuations share a
  forward (``TransformersScorer.score_after_shared``, as fill-mask's rescoring does).

Blocking; on the executor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from model_service import checkpoint_kinds as kinds
from model_service.engines.transformers import TransformersScorer
from model_service.errors import ServiceError, ValidationError
from model_service.fill_mask import SteppedBatch, chunks
from model_service.loading import LoadedModel
from model_service.tasks.batcher import TaskItem
from model_service.tasks.forward import EncoderBatch, Encoding, check_fits, encoding
from model_service.types import ClassifyRequest, ClassifyResult, LabelScore, TaskMethod

DEFAULT_LABELS = ("positive", "negative")
HYPOTHESIS = "This example is {}."  # transformers' zero-shot pipeline's template
ZERO_SHOT_PROMPT = "{text}\nThe text above is"


def nli_ids(loaded: LoadedModel) -> tuple[int, int | None] | None:
    """``(entailment id, contradiction id)`` of an NLI checkpoint, else None."""
    names = [name.lower() for name in kinds.labels(loaded.model.config)]
    entail = next((i for i, name in enumerate(names) if name.startswith("entail")), None)
    if entail is None:
        return None
    contra = next((i for i, name in enumerate(names) if name.startswith("contra")), None)
    return entail, contra


def method(loaded: LoadedModel) -> TaskMethod:
    if loaded.head == "causal":
        return "causal-zero-shot"
    return "nli" if nli_ids(loaded) is not None else "classifier"


def head_batch(loaded: LoadedModel, items: Sequence[TaskItem]) -> EncoderBatch:
    """A classifier's or an NLI model's batch."""
    nli = nli_ids(loaded)
    tok = loaded.tokenizer

    def prepare(item: TaskItem) -> list[Encoding]:
        request: ClassifyRequest = item.request
        if nli is None:
            own_labels(loaded, request.labels)  # refuse foreign labels before the forward
            rows = [tok(request.text)]
        else:
            labels = request.labels or DEFAULT_LABELS
            rows = [tok(request.text, HYPOTHESIS.format(label)) for label in labels]
        for row in rows:
            check_fits(loaded, len(row["input_ids"]))
        return [encoding(row) for row in rows]

    def take(output: Any, row: int, length: int) -> torch.Tensor:
        logits: torch.Tensor = output.logits[row]  # the head's ModelOutput, fields per model class
        return logits.float().cpu()

    def finish(item: TaskItem, logits: list[torch.Tensor]) -> ClassifyResult:
        request: ClassifyRequest = item.request
        if nli is not None:
            entail = torch.stack([row[nli[0]] for row in logits])
            scores = list(zip(request.labels or DEFAULT_LABELS, entail.softmax(-1).tolist(), strict=True))
            return _result(scores, loaded, "nli", item)
        return _classified(loaded, request.labels, logits[0], item)

    return EncoderBatch(loaded, items, prepare, take, finish)


def own_labels(loaded: LoadedModel, asked: tuple[str, ...]) -> list[int]:
    """The label ids the request asks about (all, if it names none); refuses labels not the model's."""
    names = kinds.labels(loaded.model.config)
    if not asked:
        return list(range(len(names)))
    index = {name.casefold(): i for i, name in enumerate(names)}
    unknown = [label for label in asked if label.casefold() not in index]
    if unknown:
        raise ValidationError(
            f"model `{loaded.name}` classifies into its own labels ({', '.join(names)}), not "
            f"{', '.join(f'`{u}`' for u in unknown)}; leave `labels` empty, pick some of its own, or "
            "use a zero-shot model"
        )
    return [index[label.casefold()] for label in asked]


def _classified(
    loaded: LoadedModel, asked: tuple[str, ...], logits: torch.Tensor, item: TaskItem
) -> ClassifyResult:
    names = kinds.labels(loaded.model.config) or [f"LABEL_{i}" for i in range(len(logits))]
    ids = own_labels(loaded, asked)
    multi = getattr(loaded.model.config, "problem_type", None) == "multi_label_classification"
    chosen = logits[ids]
    probs = chosen.sigmoid() if multi else chosen.softmax(-1)
    scores = [(names[i], float(p)) for i, p in zip(ids, probs.tolist(), strict=True)]
    return _result(scores, loaded, "classifier", item, multi=multi)


def _result(
    scores: list[tuple[str, float]],
    loaded: LoadedModel,
    how: TaskMethod,
    item: TaskItem,
    *,
    multi: bool = False,
) -> ClassifyResult:
    ranked = sorted(scores, key=lambda pair: pair[1], reverse=True)
    return ClassifyResult(
        tuple(LabelScore(label, score) for label, score in ranked),
        loaded.name,
        how,
        time.monotonic() - item.submitted,
        multi_label=multi,
    )


class ZeroShotBatch(SteppedBatch):
    """Causal zero-shot: each text's prompt once, each label's tokens after it; and the calibration."""

    def __init__(
        self,
        loaded: LoadedModel,
        items: Sequence[TaskItem],
        priors: dict[tuple[str, ...], list[float]],
    ) -> None:
        self.loaded = loaded
        self.scorer = TransformersScorer(loaded)
        self.items = list(items)
        self._priors = priors  # the calibration of a label set, kept across batches
        self._labels: dict[int, list[list[int]]] = {}
        self._prompts: dict[int, list[int]] = {}
        for item in self.items:
            try:
                self._prepare(item)
            except ServiceError as error:
                item.error = error
        self._steps = self._run()
        self.done = False

    def _label_tokens(self, labels: tuple[str, ...]) -> list[list[int]]:
        tok = self.loaded.tokenizer
        return [tok(" " + label, add_special_tokens=False)["input_ids"] for label in labels]

    def _prepare(self, item: TaskItem) -> None:
        request: ClassifyRequest = item.request
        labels = request.labels or DEFAULT_LABELS
        prompt = self.loaded.tokenizer(ZERO_SHOT_PROMPT.format(text=request.text))["input_ids"]
        owns = self._label_tokens(labels)
        check_fits(self.loaded, len(prompt) + max(len(own) for own in owns))
        self._prompts[id(item)] = prompt
        self._labels[id(item)] = owns

    def _run(self) -> Iterator[None]:
        live = [item for item in self.items if item.live]
        label_sets = {self._labels_of(item) for item in live}
        # key: an item's index, or -1 - n for the n-th label set's calibration (no text).
        groups: list[tuple[int, list[int], list[list[int]]]] = []
        calibrating = [labels for labels in label_sets if labels not in self._priors]
        for n, labels in enumerate(calibrating):
            empty = self.loaded.tokenizer(ZERO_SHOT_PROMPT.format(text=""))["input_ids"]
            groups.append((-1 - n, empty, self._label_tokens(labels)))
        for i, item in enumerate(live):
            groups.append((i, self._prompts[id(item)], self._labels[id(item)]))
        totals: dict[int, list[float | None]] = {key: [None] * len(owns) for key, _, owns in groups}

        def use(key: int, row: int, own: list[int], first: torch.Tensor, logits: torch.Tensor) -> None:
            following = logits[: len(own) - 1].float().log_softmax(-1)
            targets = torch.tensor(own[1:], device=following.device)
            totals[key][row] = float(first[own[0]] + following.gather(-1, targets[:, None]).sum())
            done = [t for t in totals[key] if t is not None]
            if len(done) == len(totals[key]):
                self._scored(key, done, live, calibrating)

        def still(key: int, _row: int) -> bool:
            return key < 0 or live[key].live

        for together in chunks(groups, lambda group: len(group[1])):
            yield from self.scorer.score_after_shared(together, use, live=still)

    def _labels_of(self, item: TaskItem) -> tuple[str, ...]:
        return item.request.labels or DEFAULT_LABELS

    def _scored(
        self, key: int, totals: list[float], live: list[TaskItem], calibrating: list[tuple[str, ...]]
    ) -> None:
        if key < 0:
            self._priors[calibrating[-1 - key]] = totals
            return
        item = live[key]
        labels = self._labels_of(item)
        prior = self._priors.get(labels)
        assert prior is not None, "calibration groups run first"
        calibrated = [t - p for t, p in zip(totals, prior, strict=True)]
        best = max(calibrated)
        weights = [math.exp(c - best) for c in calibrated]
        norm = sum(weights)
        item.result = _result(
            [(label, w / norm) for label, w in zip(labels, weights, strict=True)],
            self.loaded,
            "causal-zero-shot",
            item,
        )
