"""What a checkpoint is, from its config alone: ``architectures``, ``id2label`` and the model type.

The kind decides the Auto class that loads it and the tasks it serves natively. Read before any
weights, so ``/status`` and ``/help`` can say which tasks a deployment has without loading them.
"""

from __future__ import annotations

from collections.abc import Mapping

from transformers import PretrainedConfig
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES,
    MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
    MODEL_MAPPING_NAMES,
)

from model_service.task_names import CAUSAL_FALLBACK, NATIVE_KIND, Kind, Task

# The model types that have each kind's Auto class (a forced task on another type can't load).
CLASSES: dict[Kind, Mapping[str, object]] = {
    "causal": MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    "masked": MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    "sequence-classification": MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    "token-classification": MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
    "question-answering": MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES,
    "seq2seq": MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    "features": MODEL_MAPPING_NAMES,
}
_HEAD_SUFFIXES: tuple[tuple[str, Kind], ...] = (
    ("ForSequenceClassification", "sequence-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
)


def labels(config: PretrainedConfig) -> list[str]:
    """The checkpoint's class names in id order (``id2label``)."""
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label[i]) for i in sorted(id2label, key=int)]


def has_own_labels(config: PretrainedConfig) -> bool:
    """``id2label`` names real classes, not transformers' placeholders (``LABEL_0``, ``LABEL_1``)."""
    names = labels(config)
    return bool(names) and any(name != f"LABEL_{i}" for i, name in enumerate(names))


def is_tagging(names: list[str]) -> bool:
    """BIO-style tags (``O``, ``B-PER``, ``I-LOC``): labels of tokens, not of whole texts."""
    return "O" in names and any(name.startswith(("B-", "I-", "E-", "S-")) for name in names)


def detect_kind(config: PretrainedConfig) -> Kind | None:
    """The kind the checkpoint's config says it is; None when nothing says."""
    model_type = getattr(config, "model_type", "")
    seq2seq_type = model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES
    for arch in getattr(config, "architectures", None) or []:
        for suffix, kind in _HEAD_SUFFIXES:
            if arch.endswith(suffix):
                return kind
        if seq2seq_type and arch.endswith(("ForConditionalGeneration", "MTModel", "LMHeadModel")):
            return "seq2seq"
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal"
        if arch.endswith(("ForMaskedLM", "ForPreTraining")):
            return "masked"
        if arch.endswith("Model") and "For" not in arch and not seq2seq_type:
            return "features"  # the body alone, as sentence-embedding checkpoints ship
    if has_own_labels(config):
        return "token-classification" if is_tagging(labels(config)) else "sequence-classification"
    if seq2seq_type:
        return "seq2seq"
    # A type with both (BERT has BertLMHeadModel too) is an encoder: masked unless it says otherwise.
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "masked"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    return None


def seq2seq_tasks(config: PretrainedConfig, forced: Task | None) -> tuple[Task, ...]:
    """Which of summarize and translate a seq2seq checkpoint does.

    Forced: that one. Else its ``task_specific_params`` (T5 lists its prefixes there); Marian
    checkpoints translate one pair; others (BART, Pegasus) are taken at their word for both.
    """
    if forced in ("summarize", "translate"):
        return (forced,)
    params = getattr(config, "task_specific_params", None) or {}
    if params:
        found: list[Task] = []
        if "summarization" in params:
            found.append("summarize")
        if any(key.startswith("translation") for key in params):
            found.append("translate")
        if found:
            return tuple(found)
    if getattr(config, "model_type", "") == "marian":
        return ("translate",)
    return ("summarize", "translate")


def serves(task: Task, kind: Kind | None, config: PretrainedConfig, forced: Task | None) -> bool:
    """The checkpoint does ``task`` with a head of its own (not a fallback)."""
    if kind is None or NATIVE_KIND[task] != kind:
        return False
    if kind == "seq2seq":
        return task in seq2seq_tasks(config, forced)
    return True


def falls_back(task: Task, kind: Kind | None) -> bool:
    """A causal LM does ``task`` honestly without a head for it (zero-shot, or asked in a prompt)."""
    return kind == "causal" and task in CAUSAL_FALLBACK and task != "fill-mask"
