"""Plain, frozen request and result types. No torch here: cogs import this module.

Requests are validated once, at the edge, into these types (``GenerationParams.from_values``
and friends); everything past the edge can trust them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from model_service.errors import ValidationError
from model_service.params import check_text, param, specs
from model_service.task_names import Task

MASK = "[MASK]"
# What users may write for the blank: BERT's and RoBERTa's spellings (a model's own token too).
MASK_FORMS = ("[MASK]", "<mask>")
MAX_NEW_TOKENS_LIMIT = 1024
MAX_PROMPT_CHARS = 8000
# How a reasoning model's thinking is marked in its text (a remote server's reasoning_content too).
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
MAX_SYSTEM_PROMPT_CHARS = 2000
MAX_CONTINUATION_CHARS = 16000  # a reply continued up to the token cap, with room to spare
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 64
MAX_FILL_TOP_K = 20
SEED_MAX = 2**32 - 1

Mode = Literal["completion", "chat"]
DEFAULT_TOP_K = 50
FinishReason = Literal["length", "eos", "stop", "timeout", "cancelled"]
FillMethod = Literal["masked_lm", "causal_rescore"]


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings for one request. Build with ``from_values`` to validate.

    Each numeric field is declared once here (:func:`model_service.params.param`): its type,
    bounds, default and description, whether a channel may set it and whether ``/generate``
    takes it. The slash options, the channel settings, the validation and ``/help`` read it.
    """

    max_new_tokens: int = param(
        128, 1, MAX_NEW_TOKENS_LIMIT, "How many tokens to write at most", channel=True, command=True
    )
    temperature: float = param(
        0.7, 0, 2, "Randomness: 0 is always the likeliest word, higher is wilder", channel=True, command=True
    )
    top_p: float = param(
        0.95,
        0,
        1,
        "Sample only from the likeliest words that add up to this share",
        low_open=True,
        channel=True,
        command=True,
    )
    # 50 as transformers' generate (GenerationConfig) has it, so the seed document's example samples
    # the same way; 0 turns it off (top-p over the whole vocabulary).
    top_k: int = param(DEFAULT_TOP_K, 0, 1000, "Keep only the k likeliest words (0 = off)", channel=True)
    repetition_penalty: float = param(1.0, 1, 2, "Above 1 discourages repeating words", channel=True)
    seed: int | None = param(None, 0, SEED_MAX, "The same seed and settings give the same text", command=True)
    stop: tuple[str, ...] = ()

    @classmethod
    def from_values(
        cls, values: Mapping[str, Any] | None = None, *, max_new_tokens_cap: int = MAX_NEW_TOKENS_LIMIT
    ) -> GenerationParams:
        """Validate loose values (from Discord, a database, a config file) into params.

        Unknown keys are rejected; missing keys take the declared defaults.
        """
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValidationError(
                f"unknown setting `{unknown[0]}`; known settings: {', '.join(sorted(known))}"
            )
        cap = min(max_new_tokens_cap, MAX_NEW_TOKENS_LIMIT)
        out: dict[str, Any] = {}
        for spec in GENERATION_PARAMS:
            if (v := values.get(spec.name)) is not None:
                out[spec.name] = spec.validate(v, high=cap if spec.name == "max_new_tokens" else None)
        if (v := values.get("stop")) is not None:
            out["stop"] = _check_stop(v)
        params = cls(**out)
        if params.max_new_tokens > cap:
            # The declared default may exceed a small server-side cap: clamp, don't refuse.
            params = cls(**{**out, "max_new_tokens": cap})
        return params

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def seeded(self) -> GenerationParams:
        """These params with a seed: the given one, else a fresh one, so any reply can be redone."""
        if self.seed is not None:
            return self
        return replace(self, seed=secrets.randbelow(SEED_MAX + 1))


GENERATION_PARAMS = specs(GenerationParams)


def _check_stop(value: Any) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValidationError(f"`stop` must be text or a list of texts, got {type(value).__name__}")
    if len(items) > MAX_STOP_SEQUENCES:
        raise ValidationError(f"`stop` may hold at most {MAX_STOP_SEQUENCES} sequences, got {len(items)}")
    for item in items:
        # A newline is a common stop sequence, so only the empty string counts as blank here.
        if not isinstance(item, str) or not item:
            raise ValidationError(f"`stop` sequences must be non-empty text, got {item!r}")
        check_text("stop", item, limit=MAX_STOP_CHARS, allow_empty=True)
    return tuple(items)


MAX_HISTORY_TURNS = 40


@dataclass(frozen=True)
class ChatTurn:
    """One earlier turn of a conversation; ``author`` names who spoke where several people share it."""

    role: Literal["user", "assistant"]
    text: str
    author: str | None = None

    def content(self) -> str:
        return f"{self.author}: {self.text}" if self.author and self.role == "user" else self.text


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    params: GenerationParams = field(default_factory=GenerationParams)
    mode: Mode = "completion"
    system_prompt: str | None = None  # chat mode only: the persona
    model: str | None = None  # a catalog name; None means the service's default
    # chat mode only: the conversation so far, oldest first; the oldest turns go first if it won't fit
    history: tuple[ChatTurn, ...] = ()
    author: str | None = None  # chat mode only: who says ``prompt``, where several people share it
    # The reply written so far (Continue): the model goes on from its end instead of starting anew.
    continuation: str = ""

    def __post_init__(self) -> None:
        check_text("prompt", self.prompt, limit=MAX_PROMPT_CHARS)
        if self.history and self.mode != "chat":
            raise ValidationError("`history` is for chat mode only")
        if len(self.history) > MAX_HISTORY_TURNS:
            raise ValidationError(
                f"`history` may hold at most {MAX_HISTORY_TURNS} turns, got {len(self.history)}"
            )
        for turn in self.history:
            if turn.role not in ("user", "assistant"):
                raise ValidationError(f"a history turn's role must be user or assistant, got {turn.role!r}")
            check_text("history", turn.text, limit=MAX_PROMPT_CHARS, allow_empty=True)
        if self.mode not in ("completion", "chat"):
            raise ValidationError(f"`mode` must be 'completion' or 'chat', got {self.mode!r}")
        if self.continuation:
            check_text("continuation", self.continuation, limit=MAX_CONTINUATION_CHARS, allow_empty=True)
        if self.system_prompt is not None:
            check_text("persona", self.system_prompt, limit=MAX_SYSTEM_PROMPT_CHARS, allow_empty=True)


@dataclass(frozen=True)
class GenerationResult:
    text: str  # the model's continuation only, never the prompt
    finish_reason: FinishReason
    prompt_tokens: int
    generated_tokens: int
    prompt_truncated: bool  # the prompt was cut from the left to fit the context
    model: str
    elapsed_s: float
    first_token_s: float | None = None
    params: GenerationParams | None = None  # what it ran with, the seed included
    history_dropped: int = 0  # the oldest conversation turns left out to fit the context

    @property
    def timed_out(self) -> bool:
        return self.finish_reason == "timeout"


@dataclass(frozen=True)
class MaskedText:
    left: str
    right: str


def split_mask(text: str, model_mask: str | None = None) -> MaskedText:
    """Exactly one mask, written ``[MASK]``, ``<mask>`` or the model's own mask token."""
    marks = list(dict.fromkeys([*MASK_FORMS, *([model_mask] if model_mask else [])]))
    count = sum(text.count(m) for m in marks)
    shown = ", ".join(f"`{m}`" for m in marks)
    if count != 1:
        found = "none" if count == 0 else str(count)
        raise ValidationError(f"`text` must contain exactly one mask ({shown}), found {found}")
    mark = next(m for m in marks if m in text)
    index = text.index(mark)
    return MaskedText(text[:index], text[index + len(mark) :])


@dataclass(frozen=True)
class FillMaskRequest:
    text: str
    top_k: int = param(5, 1, MAX_FILL_TOP_K, "How many guesses to show", command=True)
    model: str | None = None

    def __post_init__(self) -> None:
        check_text("text", self.text, limit=MAX_PROMPT_CHARS)
        split_mask(self.text)
        FILL_PARAMS[0].validate(self.top_k)


FILL_PARAMS = specs(FillMaskRequest)


@dataclass(frozen=True)
class FillPrediction:
    token: str  # what fills the mask, as the model writes it (leading space included)
    score: float  # probability in [0, 1]; scores of one result are comparable
    sequence: str  # the whole text with the mask filled


@dataclass(frozen=True)
class FillMaskResult:
    predictions: tuple[FillPrediction, ...]
    model: str
    method: FillMethod
    elapsed_s: float


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str
    task: str
    device: str
    dtype: str
    parameters: int
    engine: str = "transformers"


@dataclass(frozen=True)
class StatusSample:
    """The service as it was a while ago (``model_service.samples``): for /status's chart."""

    ago_s: float  # how long before the status it is part of
    tokens_per_s: float  # generated tokens a second over the last few seconds (0: none)
    queue_depth: int  # admitted requests not yet finished
    latency_s: float | None  # mean latency of the requests finished since the sample before; None: none


@dataclass(frozen=True)
class ServiceStatus:
    models: tuple[ModelInfo, ...]
    catalog: tuple[str, ...]
    queue_depth: int  # admitted requests not yet finished
    queue_limit: int
    running: int
    batch_size: int
    recent_latency_s: float | None
    tokens_per_s: float | None
    uptime_s: float
    filling: int = 0  # fill-mask requests being filled together now
    waiting: int = 0  # generation requests waiting for a slot
    oldest_wait_s: float = 0.0  # how long the one waiting longest has waited
    shares: tuple[tuple[str, int], ...] = ()  # waiting requests by group (a channel), most first
    samples: tuple[StatusSample, ...] = ()  # the last sample_span_s, oldest first, sample_interval_s apart
    sample_interval_s: float = 0.0
    sample_span_s: float = 0.0


# -- the source document's other Auto classes: tokenizer view, classify, entities, answer, ... ----

MAX_LABELS = 10
MAX_LABEL_CHARS = 50
MAX_LANGUAGE_CHARS = 30
# /summarize and /translate wrap the text in an instruction; the whole stays a valid prompt.
MAX_REWRITE_CHARS = MAX_PROMPT_CHARS - 500
TaskMethod = Literal["classifier", "nli", "causal-zero-shot", "seq2seq", "instruct", "prompt"]
RewriteKind = Literal["summarize", "translate"]


def check_labels(labels: tuple[str, ...]) -> tuple[str, ...]:
    """Two to :data:`MAX_LABELS` distinct labels (case aside), each short and not blank."""
    if len(labels) < 2:
        raise ValidationError(
            f"`labels` needs at least 2 labels to choose between, got {len(labels)}; "
            "separate them with commas, e.g. `positive, negative`"
        )
    if len(labels) > MAX_LABELS:
        raise ValidationError(f"`labels` may hold at most {MAX_LABELS} labels, got {len(labels)}")
    seen: dict[str, str] = {}
    for label in labels:
        check_text("labels", label, limit=MAX_LABEL_CHARS)
        key = label.strip().casefold()
        if key in seen:
            raise ValidationError(f"`labels` has `{label.strip()}` twice; give each label once")
        seen[key] = label
    return tuple(label.strip() for label in labels)


def parse_labels(raw: str | None) -> tuple[str, ...]:
    """Comma-separated labels as a user types them (``positive, negative``); empty: none."""
    if raw is None or not raw.strip():
        return ()
    parts = tuple(part.strip() for part in raw.split(","))
    if any(not part for part in parts):
        raise ValidationError(
            "`labels` has an empty label; separate labels with single commas, e.g. `positive, negative`"
        )
    return check_labels(parts)


def check_language(value: str | None) -> str | None:
    """A language name (``French``) or code (``fr``): letters, spaces and hyphens, short."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if len(text) > MAX_LANGUAGE_CHARS or not all(c.isalpha() or c in " -" for c in text):
        raise ValidationError(
            f"`to` must be a language name such as `French` (letters only, at most "
            f"{MAX_LANGUAGE_CHARS} characters), got {text[:40]!r}"
        )
    return text


@dataclass(frozen=True)
class TokenizeRequest:
    text: str
    pair: str | None = None  # a second text: a sentence pair, as QA and NLI models take them
    model: str | None = None

    def __post_init__(self) -> None:
        check_text("text", self.text, limit=MAX_PROMPT_CHARS)
        if self.pair is not None:
            check_text("pair", self.pair, limit=MAX_PROMPT_CHARS)


@dataclass(frozen=True)
class TokenPiece:
    """One token as the tokenizer made it."""

    id: int
    piece: str  # the vocabulary entry as stored: `Ġworld`, `##ing`, `▁the`, `<0xE4>`
    text: str  # what it stands for, readable; empty when it holds only part of a character
    partial: tuple[int, ...]  # its bytes, when they are part of a character (byte-level pieces)
    special: bool  # added by the tokenizer (`[CLS]`, `<s>`), not from the text
    start: int  # the characters of the input it covers (both 0 for an added special token)
    end: int
    sequence: int | None  # 0: the text, 1: the pair, None: a special token


@dataclass(frozen=True)
class TokenizeResult:
    model: str
    pieces: tuple[TokenPiece, ...]
    input_ids: tuple[int, ...]
    attention_mask: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None  # None: this tokenizer makes none
    context_length: int  # the model's context, in tokens
    serving_length: int | None  # what this bot lets one request hold, where it is less (llama.cpp)
    algorithm: str  # e.g. "byte-level BPE", "WordPiece"
    vocabulary: int

    @property
    def count(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class ClassifyRequest:
    text: str
    labels: tuple[str, ...] = ()  # empty: the classifier's own labels (or positive/negative)
    model: str | None = None  # the channel's classify model; None: the first that classifies
    channel_model: str | None = None  # the channel's model, for the zero-shot fallback

    def __post_init__(self) -> None:
        check_text("text", self.text, limit=MAX_PROMPT_CHARS)
        if self.labels:
            check_labels(self.labels)


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float  # a probability; a result's scores add up to 1 (unless multi-label)


@dataclass(frozen=True)
class ClassifyResult:
    scores: tuple[LabelScore, ...]  # best first
    model: str
    method: TaskMethod
    elapsed_s: float
    multi_label: bool = False  # each score on its own (sigmoid), not shares of one whole


@dataclass(frozen=True)
class EntitiesRequest:
    text: str
    model: str | None = None

    def __post_init__(self) -> None:
        check_text("text", self.text, limit=MAX_PROMPT_CHARS)


@dataclass(frozen=True)
class Entity:
    group: str  # the tag without its B-/I- prefix: PER, LOC
    score: float  # the mean of its words' scores
    word: str  # as the tokenizer writes it back
    start: int  # its characters in the text
    end: int


@dataclass(frozen=True)
class EntitiesResult:
    text: str
    entities: tuple[Entity, ...]  # in text order
    model: str
    elapsed_s: float


@dataclass(frozen=True)
class AnswerRequest:
    question: str
    context: str
    model: str | None = None

    def __post_init__(self) -> None:
        check_text("question", self.question, limit=MAX_PROMPT_CHARS)
        if not isinstance(self.context, str) or not self.context.strip():
            raise ValidationError(
                "`context` must not be empty: the answer is a span of the text you give as context"
            )
        check_text("context", self.context, limit=MAX_PROMPT_CHARS)


@dataclass(frozen=True)
class AnswerResult:
    answer: str
    start: int  # its characters in the context
    end: int
    score: float  # P(start) x P(end), over the context's tokens
    model: str
    elapsed_s: float


MAX_SIMILAR_TEXTS = 8  # texts /similar compares at once: an 8 x 8 table still reads


def parse_texts(raw: str | None) -> tuple[str, ...]:
    """More texts as a user types them in one option: separated by ``|`` or line breaks."""
    if raw is None or not raw.strip():
        return ()
    return tuple(part.strip() for part in raw.replace("\n", "|").split("|") if part.strip())


@dataclass(frozen=True)
class SimilarRequest:
    """Two texts, or more (``more``): each compared with every other."""

    text_a: str
    text_b: str
    model: str | None = None
    more: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_text("text_a", self.text_a, limit=MAX_PROMPT_CHARS)
        check_text("text_b", self.text_b, limit=MAX_PROMPT_CHARS)
        object.__setattr__(self, "more", tuple(self.more))
        if len(self.texts) > MAX_SIMILAR_TEXTS:
            raise ValidationError(
                f"`texts` may add at most {MAX_SIMILAR_TEXTS - 2} texts to `text_a` and `text_b` "
                f"({MAX_SIMILAR_TEXTS} in all), got {len(self.texts)} in all"
            )
        for text in self.more:
            check_text("texts", text, limit=MAX_PROMPT_CHARS)

    @property
    def texts(self) -> tuple[str, ...]:
        return (self.text_a, self.text_b, *self.more)


@dataclass(frozen=True)
class SimilarResult:
    """Every text's cosine similarity with every other (``matrix[i][j]``, in the request's order)."""

    matrix: tuple[tuple[float, ...], ...]  # each in [-1, 1], 1 on the diagonal
    model: str
    tokens: tuple[int, ...]  # each text's length in tokens
    elapsed_s: float
    pooling: tuple[str, ...] = ("mean_tokens",)  # how token vectors became a text's vector (pooling.MODES)

    @property
    def cosine(self) -> float:
        """``text_a`` against ``text_b``."""
        return self.matrix[0][1]


@dataclass(frozen=True)
class RewriteRequest:
    """/summarize or /translate: text in, new text streamed out."""

    kind: RewriteKind
    text: str
    to: str | None = None  # translate: the language to translate into
    params: GenerationParams = field(default_factory=GenerationParams)
    model: str | None = None  # the channel's model for this task; None: the first that does it
    channel_model: str | None = None  # the channel's model, for the instruct fallback

    def __post_init__(self) -> None:
        if self.kind not in ("summarize", "translate"):
            raise ValidationError(f"`kind` must be summarize or translate, got {self.kind!r}")
        check_text("text", self.text, limit=MAX_REWRITE_CHARS)
        object.__setattr__(self, "to", check_language(self.to))
        if self.to is not None and self.kind != "translate":
            raise ValidationError("`to` is for translate only")


@dataclass(frozen=True)
class TaskModels:
    """Which models do a task here: natively, or through the default model's fallback."""

    task: Task
    models: tuple[str, ...]  # catalog models with a head for it
    fallback: str | None = None  # the causal model that stands in when ``models`` is empty
    fallback_method: str | None = None  # how it does it, in words
    hint: str | None = None  # nothing does it: the setting to configure and a checkpoint

    @property
    def available(self) -> bool:
        return bool(self.models) or self.fallback is not None


# -- inside the model: next-token probabilities, and how sure it was of each token it wrote ---------

MAX_NEXT_TOP_K = 20  # llama-server's and vLLM's default cap on alternatives per position
ProbabilitySource = Literal["transformers", "llama.cpp", "remote", "transformers twin"]


@dataclass(frozen=True)
class NextTokenRequest:
    """The likeliest next tokens after ``prompt``, as the model weighs them (no sampling settings)."""

    prompt: str
    top_k: int = param(10, 1, MAX_NEXT_TOP_K, "How many of the likeliest next tokens to show", command=True)
    model: str | None = None

    def __post_init__(self) -> None:
        check_text("prompt", self.prompt, limit=MAX_PROMPT_CHARS)
        NEXT_PARAMS[0].validate(self.top_k)

    def generation(self) -> GenerationRequest:
        """The prompt as a one-token greedy completion: cut to fit as a generation's prompt is."""
        return GenerationRequest(
            self.prompt, GenerationParams(max_new_tokens=1, temperature=0), model=self.model
        )


NEXT_PARAMS = specs(NextTokenRequest)


@dataclass(frozen=True)
class TokenChance:
    """One token and the probability the model gave it: the softmax of its raw logits (no
    temperature, top-k or top-p), so the figures are the model's own."""

    token: str  # its text as the model writes it, a leading space included (U+FFFD: part of a character)
    id: int | None  # its vocabulary id, where the engine says it
    probability: float  # in [0, 1]


@dataclass(frozen=True)
class NextTokenResult:
    tokens: tuple[TokenChance, ...]  # likeliest first
    model: str
    source: ProbabilitySource  # which engine weighed them
    prompt_tokens: int  # 0 where the server did not say
    prompt_truncated: bool  # cut from the left to fit the context
    elapsed_s: float


@dataclass(frozen=True)
class TokenProbabilitiesRequest:
    """How sure the model was of each token of ``text``, written after ``request``'s prompt.

    Scored after the fact, by one forward over prompt and text (teacher forcing): each token's
    probability is the softmax, at its position, of the raw logits, whatever sampling wrote it.
    """

    request: GenerationRequest  # what was asked (prompt, mode, persona, history), as generated
    text: str  # what the model wrote

    def __post_init__(self) -> None:
        check_text("text", self.text, limit=MAX_CONTINUATION_CHARS)


@dataclass(frozen=True)
class TokenProbabilitiesResult:
    tokens: tuple[TokenChance, ...]  # the text's tokens in order, each with its probability
    model: str
    source: ProbabilitySource
    cut: int  # tokens of the text left out at its end, past the model's context
    elapsed_s: float
