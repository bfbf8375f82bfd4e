"""Validation at the edge: what a user typing a slash command option is told when it's wrong."""

from __future__ import annotations

from typing import Any

import pytest

from model_service.errors import ErrorKind, ValidationError
from model_service.types import (
    MAX_FILL_TOP_K,
    MAX_NEW_TOKENS_LIMIT,
    MAX_PROMPT_CHARS,
    MAX_STOP_CHARS,
    MAX_STOP_SEQUENCES,
    MAX_SYSTEM_PROMPT_CHARS,
    SEED_MAX,
    FillMaskRequest,
    GenerationParams,
    GenerationRequest,
)


def refusal(values: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        GenerationParams.from_values(values, **kwargs)
    assert caught.value.kind is ErrorKind.VALIDATION
    return caught.value.message


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"top_p": 1.5}, "`top_p` must be in (0, 1], got 1.5"),
        ({"top_p": 0}, "`top_p` must be in (0, 1], got 0"),
        ({"temperature": 2.5}, "`temperature` must be in [0, 2], got 2.5"),
        ({"temperature": -0.1}, "`temperature` must be in [0, 2], got -0.1"),
        ({"max_new_tokens": 0}, f"`max_new_tokens` must be in [1, {MAX_NEW_TOKENS_LIMIT}], got 0"),
        ({"top_k": 1001}, "`top_k` must be in [0, 1000], got 1001"),
        ({"repetition_penalty": 0.9}, "`repetition_penalty` must be in [1, 2], got 0.9"),
        ({"seed": -1}, "`seed` must be in [0, "),
    ],
)
def test_out_of_range_names_parameter_bound_and_value(values: dict[str, Any], message: str) -> None:
    assert refusal(values).startswith(message)


def test_large_integer_bounds_are_written_exactly() -> None:
    assert refusal({"seed": 2**32}) == f"`seed` must be in [0, {SEED_MAX}], got {2**32}"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature", float("nan")),
        ("temperature", float("inf")),
        ("top_p", float("-inf")),
        ("temperature", "nan"),
        ("top_p", "inf"),
    ],
)
def test_non_finite_numbers_are_refused(name: str, value: Any) -> None:
    message = refusal({name: value})
    assert f"`{name}`" in message
    assert "finite" in message


@pytest.mark.parametrize("name", ["max_new_tokens", "top_k", "seed", "temperature", "top_p"])
def test_booleans_are_not_numbers(name: str) -> None:
    # True == 1 in Python; a user's "true" must not silently become a 1.
    message = refusal({name: True})
    assert f"`{name}`" in message
    assert "True" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_new_tokens", "lots"),
        ("max_new_tokens", 1.5),
        ("max_new_tokens", float("nan")),
        ("seed", "12abc"),
        ("top_k", [3]),
        ("temperature", "warm"),
        ("temperature", {"value": 1}),
    ],
)
def test_wrong_types_are_refused_naming_the_parameter(name: str, value: Any) -> None:
    message = refusal({name: value})
    assert message.startswith(f"`{name}` must be")


@pytest.mark.parametrize(
    ("name", "value"),
    [("max_new_tokens", 10**30), ("seed", 2**64), ("top_k", 1e300), ("temperature", 1e308)],
)
def test_huge_values_are_refused_not_overflowing(name: str, value: Any) -> None:
    assert f"`{name}` must be in" in refusal({name: value})


def test_numeric_strings_from_a_database_or_form_are_accepted() -> None:
    params = GenerationParams.from_values({"max_new_tokens": "32", "temperature": "0.5", "seed": "7"})
    assert (params.max_new_tokens, params.temperature, params.seed) == (32, 0.5, 7)


def test_unknown_keys_are_refused_with_the_known_ones_listed() -> None:
    message = refusal({"temprature": 0.5})
    assert "`temprature`" in message
    assert "temperature" in message.split("known settings:")[1]


def test_missing_keys_take_declared_defaults() -> None:
    assert GenerationParams.from_values({}) == GenerationParams()
    assert GenerationParams.from_values(None) == GenerationParams()


def test_cap_refuses_more_than_the_servers_limit() -> None:
    assert refusal({"max_new_tokens": 65}, max_new_tokens_cap=64) == (
        "`max_new_tokens` must be in [1, 64], got 65"
    )
    assert GenerationParams.from_values({"max_new_tokens": 64}, max_new_tokens_cap=64).max_new_tokens == 64


def test_default_is_clamped_to_a_small_cap_instead_of_refused() -> None:
    assert GenerationParams().max_new_tokens > 16
    assert GenerationParams.from_values({}, max_new_tokens_cap=16).max_new_tokens == 16


def test_cap_can_never_exceed_the_hard_limit() -> None:
    too_many = MAX_NEW_TOKENS_LIMIT + 1
    message = refusal({"max_new_tokens": too_many}, max_new_tokens_cap=10 * MAX_NEW_TOKENS_LIMIT)
    assert message == f"`max_new_tokens` must be in [1, {MAX_NEW_TOKENS_LIMIT}], got {too_many}"


def test_temperature_zero_means_greedy() -> None:
    assert GenerationParams.from_values({"temperature": 0}).greedy
    assert not GenerationParams.from_values({"temperature": 0.7}).greedy


# -- stop sequences ----------------------------------------------------------------------------


def test_a_newline_is_a_valid_stop_sequence() -> None:
    assert GenerationParams.from_values({"stop": "\n"}).stop == ("\n",)
    assert GenerationParams.from_values({"stop": ["\n\n", " END"]}).stop == ("\n\n", " END")


@pytest.mark.parametrize(
    ("stop", "fragment"),
    [
        ("", "non-empty"),
        ([""], "non-empty"),
        (["ok", 3], "non-empty"),
        (["x"] * (MAX_STOP_SEQUENCES + 1), f"at most {MAX_STOP_SEQUENCES} sequences"),
        (["x" * (MAX_STOP_CHARS + 1)], f"at most {MAX_STOP_CHARS} characters"),
        (42, "text or a list of texts"),
    ],
)
def test_bad_stop_sequences_are_refused(stop: Any, fragment: str) -> None:
    message = refusal({"stop": stop})
    assert message.startswith("`stop`")
    assert fragment in message


# -- requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t "])
def test_blank_prompt_is_refused(prompt: str) -> None:
    with pytest.raises(ValidationError, match="`prompt` must not be empty"):
        GenerationRequest(prompt)


def test_too_long_prompt_names_limit_and_length() -> None:
    with pytest.raises(ValidationError) as caught:
        GenerationRequest("a" * (MAX_PROMPT_CHARS + 5))
    assert caught.value.message == (
        f"`prompt` must be at most {MAX_PROMPT_CHARS} characters, got {MAX_PROMPT_CHARS + 5}"
    )
    assert GenerationRequest("a" * MAX_PROMPT_CHARS).prompt


def test_prompt_must_be_text() -> None:
    with pytest.raises(ValidationError, match="`prompt` must be text, got int"):
        GenerationRequest(123)  # type: ignore[arg-type]


def test_mode_and_persona_are_checked() -> None:
    with pytest.raises(ValidationError, match="`mode` must be 'completion' or 'chat'"):
        GenerationRequest("hi", mode="poem")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=f"`persona` must be at most {MAX_SYSTEM_PROMPT_CHARS}"):
        GenerationRequest("hi", mode="chat", system_prompt="p" * (MAX_SYSTEM_PROMPT_CHARS + 1))
    assert GenerationRequest("hi", mode="chat", system_prompt="").system_prompt == ""


@pytest.mark.parametrize(
    ("top_k", "message"),
    [
        (0, f"`top_k` must be in [1, {MAX_FILL_TOP_K}], got 0"),
        (MAX_FILL_TOP_K + 1, f"`top_k` must be in [1, {MAX_FILL_TOP_K}], got {MAX_FILL_TOP_K + 1}"),
        (2.5, "`top_k` must be a whole number, got 2.5"),
        (True, "`top_k` must be a whole number, got True"),
    ],
)
def test_fill_mask_top_k_bounds(top_k: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FillMaskRequest("The [MASK] barked.", top_k=top_k)
    assert caught.value.message == message


def test_fill_mask_text_is_checked() -> None:
    with pytest.raises(ValidationError, match="`text` must not be empty"):
        FillMaskRequest("  ")
    assert FillMaskRequest("The [MASK] barked.", top_k=MAX_FILL_TOP_K).top_k == MAX_FILL_TOP_K
