"""ChannelSettings and validate_setting: what a moderator sees when setting a value."""

from __future__ import annotations

import pytest

from domain.settings import SETTING_KEYS, ChannelSettings, validate_setting
from model_service.errors import ValidationError
from model_service.types import MAX_SYSTEM_PROMPT_CHARS, GenerationParams

MODELS = ("smollm2", "tiny")


def check(key: str, value: object, *, cap: int = 256, models: tuple[str, ...] | None = MODELS) -> object:
    return validate_setting(key, value, max_new_tokens_cap=cap, model_names=models)


def test_defaults_are_the_services_sampling_defaults() -> None:
    settings = ChannelSettings()
    assert settings.generation_params() == GenerationParams()
    assert settings.model is None
    assert settings.persona == ""
    assert (settings.listen, settings.threads, settings.thinking, settings.bot_turns) == (
        "mentions",
        "off",
        "hidden",
        0,
    )


def test_a_choice_setting_takes_only_its_words() -> None:
    assert check("listen", "all") == "all" and check("thinking", "spoiler") == "spoiler"
    with pytest.raises(ValidationError, match="`listen` must be one of mentions, all, off, got 'everything'"):
        check("listen", "everything")
    with pytest.raises(ValidationError, match="`bot_turns` must be"):
        check("bot_turns", 21)


def test_setting_keys_are_the_declared_fields() -> None:
    assert SETTING_KEYS == (
        "model",
        "max_new_tokens",
        "temperature",
        "top_p",
        "top_k",
        "repetition_penalty",
        "chat_memory_minutes",
        "bot_turns",
        "queue_weight",
        "persona",
        "listen",
        "threads",
        "thinking",
        "classify_model",
        "entities_model",
        "answer_model",
        "summarize_model",
        "translate_model",
        "similar_model",
    )


def test_unknown_key_names_the_key_and_the_known_ones() -> None:
    with pytest.raises(ValidationError) as info:
        check("foo", 1)
    assert "unknown setting `foo`" in info.value.message
    assert "temperature" in info.value.message and "persona" in info.value.message


def test_per_request_params_are_not_channel_settings() -> None:
    with pytest.raises(ValidationError, match="unknown setting `seed`"):
        check("seed", 3)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("top_p", 1.5, "`top_p` must be in (0, 1], got 1.5"),
        ("temperature", 2.5, "`temperature` must be in [0, 2], got 2.5"),
        ("max_new_tokens", 512, "`max_new_tokens` must be in [1, 256], got 512"),
        ("top_k", 2.5, "`top_k` must be a whole number, got 2.5"),
        ("repetition_penalty", "lots", "`repetition_penalty` must be a number, got 'lots'"),
        ("temperature", None, "`temperature` needs a value, got None"),
    ],
)
def test_out_of_range_values_name_parameter_bound_and_value(key: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        check(key, value)
    assert info.value.message == message


def test_values_from_text_are_normalised() -> None:
    assert check("temperature", "0.5") == 0.5
    assert check("max_new_tokens", "64") == 64
    assert ChannelSettings(temperature="0.5") == ChannelSettings(temperature=0.5)  # type: ignore[arg-type]


def test_model_must_be_in_the_catalog() -> None:
    assert check("model", "tiny") == "tiny"
    with pytest.raises(ValidationError) as info:
        check("model", "gpt-9")
    assert info.value.message == "unknown model `gpt-9`; available: smollm2, tiny"


def test_model_none_means_service_default_and_catalog_check_can_be_skipped() -> None:
    assert check("model", None) is None
    assert check("model", "anything", models=None) == "anything"


def test_persona_may_be_empty_but_not_too_long() -> None:
    assert check("persona", "") == ""
    assert check("persona", "You are a pirate.") == "You are a pirate."
    with pytest.raises(ValidationError, match=f"`persona` must be at most {MAX_SYSTEM_PROMPT_CHARS}"):
        check("persona", "x" * (MAX_SYSTEM_PROMPT_CHARS + 1))


def test_settings_cannot_hold_invalid_values() -> None:
    with pytest.raises(ValidationError, match="`top_p` must be in"):
        ChannelSettings(top_p=0)


def test_merged_applies_overrides_and_refuses_unknown_keys() -> None:
    base = ChannelSettings(temperature=0.2)
    merged = base.merged({"top_k": 40, "persona": "terse"})
    assert (merged.temperature, merged.top_k, merged.persona) == (0.2, 40, "terse")
    assert base.top_k == 50  # frozen: the original is untouched (the default, as transformers has it)
    with pytest.raises(ValidationError, match="unknown setting `colour`"):
        base.merged({"colour": "blue"})
    with pytest.raises(ValidationError, match="`temperature` must be in"):
        base.merged({"temperature": 9})


def test_generation_params_carry_every_sampling_field() -> None:
    settings = ChannelSettings(
        max_new_tokens=64, temperature=0.0, top_p=0.5, top_k=40, repetition_penalty=1.3
    )
    params = settings.generation_params(seed=7, stop=["THE END"])
    assert params == GenerationParams(
        max_new_tokens=64,
        temperature=0.0,
        top_p=0.5,
        top_k=40,
        repetition_penalty=1.3,
        seed=7,
        stop=("THE END",),
    )
    assert params.greedy


def test_generation_params_clamp_a_value_stored_before_the_cap_was_lowered() -> None:
    settings = ChannelSettings(max_new_tokens=512)
    assert settings.generation_params(max_new_tokens_cap=100).max_new_tokens == 100


def test_the_defaults_are_transformers_generate_with_the_seed_documents_sampling() -> None:
    """The seed document's example, ``generate(do_sample=True, top_p=0.95, temperature=0.7)``,
    runs with GenerationConfig's top_k 50 and no repetition penalty: a channel that sets nothing
    samples the same way."""
    from transformers import GenerationConfig

    settings = ChannelSettings()
    reference = GenerationConfig._get_default_generation_params()  # what generate() fills in when unset
    assert (settings.temperature, settings.top_p) == (0.7, 0.95)
    assert (settings.top_k, settings.repetition_penalty) == (
        reference["top_k"],
        reference["repetition_penalty"],
    )
