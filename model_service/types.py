"""Plain, frozen request and result types. No torch here: cogs import this module.

Requests are validated once, at the edge, into these types (``GenerationParams.from_values``
and friends); everything past the edge can trust them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from model_service.errors import ValidationError

MASK = "[MASK]"
# What users may write for the blank: BERT's and RoBERTa's spellings (a model's own token too).
MASK_FORMS = ("[MASK]", "<mask>")
MAX_NEW_TOKENS_LIMIT = 1024
MAX_PROMPT_CHARS = 8000
MAX_SYSTEM_PROMPT_CHARS = 2000
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 64
MAX_FILL_TOP_K = 20
SEED_MAX = 2**32 - 1

Mode = Literal["completion", "chat"]
FinishReason = Literal["length", "eos", "stop", "timeout", "cancelled"]
FillMethod = Literal["masked_lm", "causal_rescore"]


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(f"`{name}` must be a whole number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValidationError(f"`{name}` must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise ValidationError(f"`{name}` must be a whole number, got {value!r}")
    return int(number)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(f"`{name}` must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValidationError(f"`{name}` must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValidationError(f"`{name}` must be a finite number, got {value!r}")
    return number


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bracket = "(" if low_open else "["
        raise ValidationError(f"`{name}` must be in {bracket}{_num(low)}, {_num(high)}], got {_num(value)}")


def check_text(name: str, value: Any, *, limit: int, allow_empty: bool = False) -> str:
    """A user-supplied text: a string, not blank (unless allowed), at most ``limit`` chars."""
    if not isinstance(value, str):
        raise ValidationError(f"`{name}` must be text, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValidationError(f"`{name}` must not be empty")
    if len(value) > limit:
        raise ValidationError(f"`{name}` must be at most {limit} characters, got {len(value)}")
    return value


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings for one request. Build with ``from_values`` to validate."""

    max_new_tokens: int = 128
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 0.95
    top_k: int = 0  # 0 means off
    repetition_penalty: float = 1.0
    seed: int | None = None
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
        out: dict[str, Any] = {}
        cap = min(max_new_tokens_cap, MAX_NEW_TOKENS_LIMIT)
        if (v := values.get("max_new_tokens")) is not None:
            out["max_new_tokens"] = _as_int("max_new_tokens", v)
            _check_range("max_new_tokens", out["max_new_tokens"], 1, cap)
        if (v := values.get("temperature")) is not None:
            out["temperature"] = _as_float("temperature", v)
            _check_range("temperature", out["temperature"], 0, 2)
        if (v := values.get("top_p")) is not None:
            out["top_p"] = _as_float("top_p", v)
            _check_range("top_p", out["top_p"], 0, 1, low_open=True)
        if (v := values.get("top_k")) is not None:
            out["top_k"] = _as_int("top_k", v)
            _check_range("top_k", out["top_k"], 0, 1000)
        if (v := values.get("repetition_penalty")) is not None:
            out["repetition_penalty"] = _as_float("repetition_penalty", v)
            _check_range("repetition_penalty", out["repetition_penalty"], 1, 2)
        if (v := values.get("seed")) is not None:
            out["seed"] = _as_int("seed", v)
            _check_range("seed", out["seed"], 0, SEED_MAX)
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


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    params: GenerationParams = field(default_factory=GenerationParams)
    mode: Mode = "completion"
    system_prompt: str | None = None  # chat mode only: the persona
    model: str | None = None  # a catalog name; None means the service's default

    def __post_init__(self) -> None:
        check_text("prompt", self.prompt, limit=MAX_PROMPT_CHARS)
        if self.mode not in ("completion", "chat"):
            raise ValidationError(f"`mode` must be 'completion' or 'chat', got {self.mode!r}")
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
    top_k: int = 5
    model: str | None = None

    def __post_init__(self) -> None:
        check_text("text", self.text, limit=MAX_PROMPT_CHARS)
        split_mask(self.text)
        top_k = _as_int("top_k", self.top_k)
        _check_range("top_k", top_k, 1, MAX_FILL_TOP_K)


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
