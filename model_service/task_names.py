"""The tasks, the kinds of checkpoint that serve them, and how a catalog entry forces a task.

No torch and no transformers here: the config (``MODELS``), the cogs and ``/help`` import it.

A catalog entry is ``name=source`` (``MODELS``); ``name=source:task`` forces the task when the
checkpoint's config does not say it (no ``architectures``) or says something else (a masked LM
used for sentence features). A forced task still needs the head's weights in the checkpoint: a
GPT-2 forced to ``entities`` is refused rather than answering with a random classifier.
"""

from __future__ import annotations

import re
from typing import Literal

Task = Literal["generate", "fill-mask", "classify", "entities", "answer", "summarize", "translate", "similar"]
TASKS: tuple[Task, ...] = (
    "generate",
    "fill-mask",
    "classify",
    "entities",
    "answer",
    "summarize",
    "translate",
    "similar",
)
# The tasks beyond generation and mask-filling: each has a command and a per-channel model setting.
HEAD_TASKS: tuple[Task, ...] = ("classify", "entities", "answer", "summarize", "translate", "similar")

# What a checkpoint is: the head its weights carry (the Auto class that loads it).
Kind = Literal[
    "causal",
    "masked",
    "sequence-classification",
    "token-classification",
    "question-answering",
    "seq2seq",
    "features",
]

# The kind of checkpoint that serves a task natively.
NATIVE_KIND: dict[Task, Kind] = {
    "generate": "causal",
    "fill-mask": "masked",
    "classify": "sequence-classification",
    "entities": "token-classification",
    "answer": "question-answering",
    "summarize": "seq2seq",
    "translate": "seq2seq",
    "similar": "features",
}
# Tasks a causal LM does honestly without a head of their own (and how, in words for replies).
CAUSAL_FALLBACK: dict[Task, str] = {
    "fill-mask": "causal LM, sentences rescored",
    "classify": "zero-shot: the likelihood of each label",
    "summarize": "the instruct model, asked",
    "translate": "the instruct model, asked",
}

KIND_WORDS: dict[Kind, str] = {
    "causal": "a causal LM (text generation)",
    "masked": "a masked LM (fill-mask)",
    "sequence-classification": "a text classifier",
    "token-classification": "a token classifier (entities)",
    "question-answering": "an extractive question-answering model",
    "seq2seq": "a sequence-to-sequence model (summaries, translation)",
    "features": "a feature extractor (sentence embeddings)",
}
AUTO_CLASS: dict[Kind, str] = {
    "causal": "AutoModelForCausalLM",
    "masked": "AutoModelForMaskedLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "features": "AutoModel",
}

# Well-known checkpoints for each task, for the message that says one is missing.
CHECKPOINTS: dict[Task, str] = {
    "classify": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
    "entities": "dslim/bert-base-NER",
    "answer": "distilbert/distilbert-base-cased-distilled-squad",
    "summarize": "sshleifer/distilbart-cnn-12-6",
    "translate": "Helsinki-NLP/opus-mt-en-fr",
    "similar": "sentence-transformers/all-MiniLM-L6-v2",
}
SHORT_NAMES: dict[Task, str] = {
    "classify": "sentiment",
    "entities": "ner",
    "answer": "qa",
    "summarize": "summarizer",
    "translate": "en-fr",
    "similar": "minilm",
}

_TASK_LIKE = re.compile(r"[a-z][a-z-]*")


def setting_key(task: Task) -> str:
    """The per-channel setting that picks the model of a task: ``classify_model``."""
    return f"{task}_model"


def split_task(spec: str) -> tuple[str, Task | None]:
    """``(source, forced task)`` of a catalog entry's value; ``source:task`` forces the task.

    Raises ValueError for a suffix that reads as a task but is none; a colon elsewhere (a
    Windows drive) belongs to the source.
    """
    source, sep, suffix = spec.strip().rpartition(":")
    if not sep or not _TASK_LIKE.fullmatch(suffix.strip()):
        return spec.strip(), None
    suffix = suffix.strip()
    if suffix not in TASKS:
        raise ValueError(f"unknown task `{suffix}` after `{source}`; tasks: {', '.join(TASKS)}")
    return source.strip(), suffix


def missing(task: Task) -> str:
    """Where no model serves ``task`` here: the setting to configure and a checkpoint for it."""
    kind = NATIVE_KIND[task]
    return (
        f"No model here can `/{task}`: it needs {KIND_WORDS[kind]} (`{AUTO_CLASS[kind]}`). "
        f"Add one to `MODELS`, e.g. `{SHORT_NAMES[task]}={CHECKPOINTS[task]}` (downloaded once, then "
        f"loaded from the cache) or a local folder, and a channel picks it with "
        f"`/config set {setting_key(task)}`."
    )
