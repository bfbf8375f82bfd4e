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

MASK = "[MASK]"
# What users may write for the blank: BERT's and RoBERTa's spellings (a model's own token too).
MASK_FORMS = ("[MASK]", "<mask>")
MAX_NEW_TOKENS_LIMIT = 1024
MAX_PROMPT_CHARS = 8000
MAX_SYSTEM_PROMPT_CHARS = 2000
MAX_CONTINUATION_CHARS = 16000  # a reply continued up to the token cap, with room to spare
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 64
MAX_FILL_TOP_K = 20
SEED_MAX = 2**32 - 1

Mode = Literal["completion", "chat"]
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
    top_k: int = param(0, 0, 1000, "Keep only the k likeliest words (0 = off)", channel=True)
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
