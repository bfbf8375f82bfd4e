"""Request parameters, each declared once: type, bounds, default, description, and where it shows.

A request type declares its numeric parameters as dataclass fields made with :func:`param`;
:func:`specs` reads them back as :class:`ParamSpec` rows. From those rows come the validation
(with messages that name the parameter, the bound and the value), the slash-command options and
their descriptions, the channel settings and their reset choices, and ``/help``. Adding a
parameter is one :func:`param` field (and the code that uses its value).

No torch and no Discord here: cogs import this module.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from model_service.errors import ValidationError

SPEC_KEY = "param"


@dataclass(frozen=True)
class ParamSpec:
    """One numeric request parameter as declared (see :func:`param`)."""

    name: str
    type: type[int] | type[float]
    default: int | float | None
    low: int | float
    high: int | float
    description: str  # at most 100 characters: Discord's limit for an option's description
    low_open: bool = False  # the bound is (low, high] rather than [low, high]
    channel: bool = False  # a channel may set it (/config set and /config reset)
    command: bool = False  # /generate takes it as an option

    def validate(self, value: Any, *, high: int | float | None = None) -> int | float:
        """``value`` as this parameter's type, in bounds (``high`` lowers the upper bound), or refused."""
        number = as_int(self.name, value) if self.type is int else as_float(self.name, value)
        check_range(self.name, number, self.low, self.high if high is None else high, low_open=self.low_open)
        return number

    def bounds(self) -> str:
        """The bounds as a message writes them: ``[0, 2]``, ``(0, 1]``."""
        return f"{'(' if self.low_open else '['}{num(self.low)}, {num(self.high)}]"


def param(
    default: int | float | None,
    low: int | float,
    high: int | float,
    description: str,
    *,
    low_open: bool = False,
    channel: bool = False,
    command: bool = False,
) -> Any:
    """A dataclass field declaring a numeric parameter; ``specs`` reads the declaration back."""
    if len(description) > 100:
        raise ValueError(f"a parameter description may have at most 100 characters: {description!r}")
    spec = {"low": low, "high": high, "description": description, "low_open": low_open}
    spec |= {"channel": channel, "command": command}
    return dataclasses.field(default=default, metadata={SPEC_KEY: spec})


_TYPES: dict[object, type[int] | type[float]] = {"int": int, "float": float, "int | None": int}


def specs(cls: type[Any]) -> tuple[ParamSpec, ...]:
    """The parameters ``cls`` declares with :func:`param`, in declaration order."""
    out = []
    for f in dataclasses.fields(cls):
        if SPEC_KEY in f.metadata:
            kind = _TYPES.get(f.type, f.type if f.type in (int, float) else float)
            out.append(ParamSpec(f.name, kind, f.default, **f.metadata[SPEC_KEY]))  # type: ignore[arg-type]  # param()'s own keywords
    return tuple(out)


# -- coercion and checks, shared by every request type -----------------------------------------


def as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(f"`{name}` must be a whole number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValidationError(f"`{name}` must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise ValidationError(f"`{name}` must be a whole number, got {value!r}")
    return int(value) if isinstance(value, int) else int(number)


def as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(f"`{name}` must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValidationError(f"`{name}` must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValidationError(f"`{name}` must be a finite number, got {value!r}")
    return number


def num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bracket = "(" if low_open else "["
        raise ValidationError(f"`{name}` must be in {bracket}{num(low)}, {num(high)}], got {num(value)}")


def check_text(name: str, value: Any, *, limit: int, allow_empty: bool = False) -> str:
    """A user-supplied text: a string, not blank (unless allowed), at most ``limit`` chars."""
    if not isinstance(value, str):
        raise ValidationError(f"`{name}` must be text, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValidationError(f"`{name}` must not be empty")
    if len(value) > limit:
        raise ValidationError(f"`{name}` must be at most {limit} characters, got {len(value)}")
    return value
