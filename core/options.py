"""Slash-command options made from the declared request parameters (``model_service.params``).

``@param_options(*specs)`` gives a command one optional option per parameter: its type and
bounds as an ``app_commands.Range`` (Discord's client enforces them, the bot checks again), its
description from the declaration. The callback takes them as ``**options``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal, Optional, TypeVar

from discord import app_commands

from domain.settings import ChoiceSpec
from model_service.params import ParamSpec

F = TypeVar("F", bound=Callable[..., Any])
TEXT_OPTION_LIMIT = 6000  # Discord's limit for a string option


def option_type(spec: ParamSpec) -> Any:
    """The parameter as discord.py reads an optional, bounded option."""
    low, high = (float(spec.low), float(spec.high)) if spec.type is float else (spec.low, spec.high)
    return Optional[app_commands.Range[spec.type, low, high]]  # noqa: UP045  (a runtime typing object)


def param_options(*specs: ParamSpec) -> Callable[[F], F]:
    """Append one optional option per spec to the callback's signature (it takes ``**options``)."""

    def decorator(func: F) -> F:
        signature = inspect.signature(func)
        written = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        added = [
            inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=option_type(s))
            for s in specs
        ]
        func.__signature__ = signature.replace(parameters=[*written, *added])  # type: ignore[attr-defined]  # read by discord.py
        return app_commands.describe(**{s.name: s.description for s in specs})(func)

    return decorator


def choice_options(*specs: ChoiceSpec) -> Callable[[F], F]:
    """Append one optional option per choice setting, its words as Discord's choices."""

    def decorator(func: F) -> F:
        signature = inspect.signature(func)
        written = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        added = [
            inspect.Parameter(
                s.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Optional[Literal[s.choices]],  # noqa: UP045  (a runtime typing object)
            )
            for s in specs
        ]
        func.__signature__ = signature.replace(parameters=[*written, *added])  # type: ignore[attr-defined]  # read by discord.py
        return app_commands.describe(**{s.name: s.description for s in specs})(func)

    return decorator


def name_options(described: Mapping[str, str], *, limit: int = 100) -> Callable[[F], F]:
    """Append one optional text option per name (e.g. a catalog model per task); ``**options`` takes them."""

    def decorator(func: F) -> F:
        signature = inspect.signature(func)
        written = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        kind = Optional[app_commands.Range[str, 1, limit]]  # noqa: UP045  (a runtime typing object)
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
            for name in described
        ]
        func.__signature__ = signature.replace(parameters=[*written, *added])  # type: ignore[attr-defined]  # read by discord.py
        return app_commands.describe(**described)(func)

    return decorator


def matching_choices(names: list[str], current: str) -> list[app_commands.Choice[str]]:
    """Autocomplete: the names containing what was typed so far (Discord shows 25 at most)."""
    return [app_commands.Choice(name=n, value=n) for n in names if current.lower() in n.lower()][:25]
