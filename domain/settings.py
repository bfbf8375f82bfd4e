"""Per-channel settings: the model, the persona, every sampling parameter a channel may set, and
the model of each task beyond generation (``classify_model``, ``entities_model``, ...).

The sampling parameters are those ``GenerationParams`` declares with ``channel=True``
(:data:`CHANNEL_PARAMS`); their types, bounds, defaults and descriptions come from there, so a
parameter added there is a channel setting, a ``/config set`` option and a ``/config reset``
choice without being named again here.

A ``ChannelSettings`` always holds valid values (checked against the service's absolute bounds
when built); ``validate_setting`` is the stricter edge check that also knows the deployment's
cap on ``max_new_tokens`` and its model catalog.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from model_service.errors import ValidationError
from model_service.params import ParamSpec, check_text
from model_service.task_names import HEAD_TASKS, setting_key
from model_service.types import (
    GENERATION_PARAMS,
    MAX_NEW_TOKENS_LIMIT,
    MAX_SYSTEM_PROMPT_CHARS,
    GenerationParams,
)

MAX_MODEL_NAME_CHARS = 100
SAMPLING_PARAMS: tuple[ParamSpec, ...] = tuple(spec for spec in GENERATION_PARAMS if spec.channel)
# How long /chat remembers a member's exchange in a channel (a thread's conversation is the thread).
CHAT_MEMORY = ParamSpec(
    "chat_memory_minutes",
    int,
    60,
    0,
    10080,
    "Minutes /chat remembers a member's exchange here (0: none)",
    channel=True,
)
# How many other bots' messages in a row the bot answers here, so two bots never talk forever.
BOT_TURNS = ParamSpec(
    "bot_turns",
    int,
    0,
    0,
    20,
    "Other bots' messages answered in a row here (0: bots are ignored)",
    channel=True,
)
# A channel's requests per turn when the queue is shared (round robin between channels).
QUEUE_WEIGHT = ParamSpec(
    "queue_weight",
    int,
    1,
    1,
    10,
    "This channel's requests per turn when many wait (others have 1)",
    channel=True,
)
CHANNEL_PARAMS: tuple[ParamSpec, ...] = (*SAMPLING_PARAMS, CHAT_MEMORY, BOT_TURNS, QUEUE_WEIGHT)  # numeric


@dataclass(frozen=True)
class ChoiceSpec:
    """A channel setting that is one of a few words (a ``/config set`` option with choices)."""

    name: str
    choices: tuple[str, ...]  # the first is the default
    description: str  # at most 100 characters (Discord's limit)

    @property
    def default(self) -> str:
        return self.choices[0]

    def validate(self, value: object) -> str:
        if value not in self.choices:
            raise ValidationError(f"`{self.name}` must be one of {', '.join(self.choices)}, got {value!r}")
        return str(value)


# Which members' messages are for the bot, with no command (``all`` needs the Message Content intent).
LISTEN = ChoiceSpec("listen", ("mentions", "all", "off"), "Messages here for the bot: @mentions, all, or off")
# An @mention in a text channel opens a thread from the message, where the bot answers every message.
THREADS = ChoiceSpec("threads", ("off", "on"), "on: an @mention opens a thread where the bot answers")
# A reasoning model's <think>…</think> text: left out of the answer, or shown as a spoiler.
THINKING = ChoiceSpec(
    "thinking", ("hidden", "spoiler"), "A reasoning model's thinking: hidden, or as a spoiler"
)
CHOICE_SETTINGS: tuple[ChoiceSpec, ...] = (LISTEN, THREADS, THINKING)
COMMAND_PARAMS: tuple[ParamSpec, ...] = tuple(
    spec for spec in GENERATION_PARAMS if spec.command
)  # /generate's
SAMPLING_KEYS = tuple(spec.name for spec in SAMPLING_PARAMS)
# The model each task uses here (a catalog name; None: the first model that does the task, else
# the channel's model where it can stand in): classify_model, entities_model, ...
TASK_MODEL_SETTINGS: dict[str, str] = {
    setting_key(task): f"Which model /{task} uses here" for task in HEAD_TASKS
}
SETTING_KEYS: tuple[str, ...] = (
    "model",
    *(spec.name for spec in CHANNEL_PARAMS),
    "persona",
    *(spec.name for spec in CHOICE_SETTINGS),
    *TASK_MODEL_SETTINGS,
)
_DEFAULTS: dict[str, object] = {
    "model": None,
    **{s.name: s.default for s in CHANNEL_PARAMS},
    "persona": "",
    **{spec.name: spec.default for spec in CHOICE_SETTINGS},
    **dict.fromkeys(TASK_MODEL_SETTINGS),
}
_ALL_SPECS: tuple[ParamSpec | ChoiceSpec, ...] = (*CHANNEL_PARAMS, *CHOICE_SETTINGS)
_SPECS: dict[str, ParamSpec | ChoiceSpec] = {spec.name: spec for spec in _ALL_SPECS}

# /config reset's choices: every setting, or all of them (an Enum: discord.py checks it on arrival).
ResetChoice = enum.Enum("ResetChoice", {"all": "all", **{key: key for key in SETTING_KEYS}})  # type: ignore[misc]  # names known at import


class ChannelSettings:
    """What a channel uses when a command doesn't say otherwise; immutable, always valid.

    Attributes are the :data:`SETTING_KEYS`: ``model`` (a catalog name; None means the
    service's default), each channel parameter, ``persona`` (the chat system prompt; empty
    means none), and each choice (``listen``, ``threads``, ``thinking``).
    """

    __slots__ = ("_values",)

    def __init__(self, **values: object) -> None:
        for key in values:
            check_setting_key(key)
        merged = {**_DEFAULTS, **values}
        # Normalised ("0.5" -> 0.5) so equal settings compare equal.
        clean = {
            key: validate_setting(key, merged[key], max_new_tokens_cap=MAX_NEW_TOKENS_LIMIT, model_names=None)
            for key in SETTING_KEYS
        }
        object.__setattr__(self, "_values", clean)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("ChannelSettings is immutable; use merged()")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChannelSettings) and self._values == other._values

    def __hash__(self) -> int:
        return hash(tuple(self._values.items()))

    def __repr__(self) -> str:
        return f"ChannelSettings({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"

    def merged(self, overrides: Mapping[str, object]) -> ChannelSettings:
        """These settings with ``overrides`` applied; unknown keys are refused."""
        return ChannelSettings(**{**self._values, **overrides})

    def generation_params(
        self,
        *,
        max_new_tokens_cap: int = MAX_NEW_TOKENS_LIMIT,
        seed: int | None = None,
        stop: Sequence[str] = (),
        given: Mapping[str, object] | None = None,
    ) -> GenerationParams:
        """The sampling part of these settings, with what a user ``given`` for one request on top.

        A stored ``max_new_tokens`` above today's cap (the cap was lowered after it was set) is
        clamped rather than refused, so the channel keeps working; a given one is refused.
        """
        values: dict[str, object] = {key: self._values[key] for key in SAMPLING_KEYS}
        values["max_new_tokens"] = min(self.max_new_tokens, max_new_tokens_cap)
        values.update({k: v for k, v in (given or {}).items() if v is not None})
        values["seed"] = seed if seed is not None else values.get("seed")
        values["stop"] = tuple(stop) or None
        return GenerationParams.from_values(values, max_new_tokens_cap=max_new_tokens_cap)


def validate_setting(
    key: str, value: object, *, max_new_tokens_cap: int, model_names: Collection[str] | None
) -> object:
    """Check one setting as a user gave it; return the value to store.

    ``model_names`` is the service's catalog; None skips the catalog check.
    """
    check_setting_key(key)
    if key == "model" or key in TASK_MODEL_SETTINGS:
        return _check_model(value, model_names, key)
    if key == "persona":
        return check_text("persona", value, limit=MAX_SYSTEM_PROMPT_CHARS, allow_empty=True)
    if value is None:
        # from_values reads None as "not given" and would quietly return the default.
        raise ValidationError(f"`{key}` needs a value, got None")
    spec = _SPECS[key]
    if isinstance(spec, ChoiceSpec):
        return spec.validate(value)
    high = min(max_new_tokens_cap, MAX_NEW_TOKENS_LIMIT) if key == "max_new_tokens" else None
    return spec.validate(value, high=high)


def check_setting_key(key: str) -> None:
    """Refuse a key that is not a channel setting, naming the ones that are."""
    if key not in SETTING_KEYS:
        raise ValidationError(f"unknown setting `{key}`; known settings: {', '.join(SETTING_KEYS)}")


def _check_model(value: object, model_names: Collection[str] | None, key: str = "model") -> str | None:
    if value is None:
        return None
    name = check_text(key, value, limit=MAX_MODEL_NAME_CHARS)
    if model_names is not None and name not in model_names:
        available = ", ".join(sorted(model_names)) or "none"
        raise ValidationError(f"unknown model `{name}`; available: {available}")
    return name


def check_scope(scope: str) -> None:
    """Settings and audit entries belong to a server ('guild') or a channel (a thread is one)."""
    if scope not in ("guild", "channel"):
        raise ValueError(f"scope must be 'guild' or 'channel', got {scope!r}")
