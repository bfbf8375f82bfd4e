"""Per-channel settings: declared defaults, validated values, and the params they make.

A ``ChannelSettings`` always holds valid values (checked against the service's absolute
bounds when built); ``validate_setting`` is the stricter edge check that also knows the
deployment's cap on ``max_new_tokens`` and its model catalog.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace

from model_service.errors import ValidationError
from model_service.types import (
    MAX_NEW_TOKENS_LIMIT,
    MAX_SYSTEM_PROMPT_CHARS,
    GenerationParams,
    check_text,
)

MAX_MODEL_NAME_CHARS = 100
SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty")


@dataclass(frozen=True)
class ChannelSettings:
    """What a channel uses when a command doesn't say otherwise."""

    model: str | None = None  # a catalog name; None means the service's default
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 0
    repetition_penalty: float = 1.0
    persona: str = ""  # the chat system prompt; empty means none

    def __post_init__(self) -> None:
        for key in SETTING_KEYS:
            value = validate_setting(
                key, getattr(self, key), max_new_tokens_cap=MAX_NEW_TOKENS_LIMIT, model_names=None
            )
            # Normalise ("0.5" -> 0.5) so equal settings compare equal.
            object.__setattr__(self, key, value)

    def merged(self, overrides: Mapping[str, object]) -> ChannelSettings:
        """These settings with ``overrides`` applied; unknown keys are refused."""
        for key in overrides:
            check_setting_key(key)
        return replace(self, **overrides)

    def generation_params(
        self,
        *,
        max_new_tokens_cap: int = MAX_NEW_TOKENS_LIMIT,
        seed: int | None = None,
        stop: Sequence[str] = (),
    ) -> GenerationParams:
        """The sampling part of these settings, as the service takes it.

        A stored ``max_new_tokens`` above today's cap (the cap was lowered after it was
        set) is clamped rather than refused, so the channel keeps working.
        """
        values: dict[str, object] = {key: getattr(self, key) for key in SAMPLING_KEYS}
        values["max_new_tokens"] = min(self.max_new_tokens, max_new_tokens_cap)
        values["seed"] = seed
        values["stop"] = tuple(stop) or None
        return GenerationParams.from_values(values, max_new_tokens_cap=max_new_tokens_cap)


SETTING_KEYS: tuple[str, ...] = tuple(f.name for f in fields(ChannelSettings))


def validate_setting(
    key: str, value: object, *, max_new_tokens_cap: int, model_names: Collection[str] | None
) -> object:
    """Check one setting as a user gave it; return the value to store.

    ``model_names`` is the service's catalog; None skips the catalog check.
    """
    check_setting_key(key)
    if key == "model":
        return _check_model(value, model_names)
    if key == "persona":
        return check_text("persona", value, limit=MAX_SYSTEM_PROMPT_CHARS, allow_empty=True)
    if value is None:
        # from_values reads None as "not given" and would quietly return the default.
        raise ValidationError(f"`{key}` needs a value, got None")
    params = GenerationParams.from_values({key: value}, max_new_tokens_cap=max_new_tokens_cap)
    return getattr(params, key)


def check_setting_key(key: str) -> None:
    """Refuse a key that is not a channel setting, naming the ones that are."""
    if key not in SETTING_KEYS:
        raise ValidationError(f"unknown setting `{key}`; known settings: {', '.join(SETTING_KEYS)}")


def _check_model(value: object, model_names: Collection[str] | None) -> str | None:
    if value is None:
        return None
    name = check_text("model", value, limit=MAX_MODEL_NAME_CHARS)
    if model_names is not None and name not in model_names:
        available = ", ".join(sorted(model_names)) or "none"
        raise ValidationError(f"unknown model `{name}`; available: {available}")
    return name
