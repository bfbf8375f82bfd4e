"""The bot's configuration: every key, its default, and a clear error for each malformed value."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from app.environment import ConfigError, load_config, log_level_number
from core.config import BotConfig

TOKEN = "MTAxOTk.secret-token.value"
ROOT = Path(__file__).resolve().parents[2]

FULL_ENV = {
    "DISCORD_TOKEN": f"  {TOKEN}  ",
    "DISCORD_GUILD_IDS": "111, 222,",
    "DISCORD_API_BASE": "http://127.0.0.1:8080/api/v10/",
    "DISCORD_GATEWAY_URL": "ws://127.0.0.1:8080/gateway",
    "FORCE_COMMAND_SYNC": "yes",
    "DATABASE_PATH": "/tmp/t.sqlite3",
    "DATABASE_URL": "postgresql://bot:pg-secret@db.example:5433/transcord",
    "MODELS_DIR": "/srv/models",
    "MODELS": "small = /srv/models/small , bert=bert-base-uncased,gguf=/m/x.gguf",
    "DEFAULT_MODEL": "gguf",
    "FILL_MODEL": "bert",
    "MODEL_DEVICE": "cuda",
    "MODEL_DTYPE": "bfloat16",
    "MODEL_OFFLINE": "1",
    "PRELOAD_MODELS": "off",
    "MAX_NEW_TOKENS_CAP": "256",
    "DEFAULT_MAX_NEW_TOKENS": "64",
    "QUEUE_LIMIT": "3",
    "MAX_BATCH_SIZE": "4",
    "REQUEST_TIMEOUT_S": "30.5",
    "STREAM_EDIT_INTERVAL_S": "0.5",
    "SHUTDOWN_GRACE_S": "0",
    "LOG_LEVEL": "debug",
}


def test_every_key_is_parsed() -> None:
    config = load_config(FULL_ENV)
    assert config.token == TOKEN and config.token_set
    assert config.guild_ids == (111, 222)
    assert config.api_base == "http://127.0.0.1:8080/api/v10"
    assert config.gateway_url == "ws://127.0.0.1:8080/gateway"
    assert config.force_sync is True
    assert config.database_path == Path("/tmp/t.sqlite3")
    assert config.database_url == "postgresql://bot:pg-secret@db.example:5433/transcord"
    assert config.models_dir == Path("/srv/models")
    service = config.service
    assert dict(service.models) == {
        "small": "/srv/models/small",
        "bert": "bert-base-uncased",
        "gguf": "/m/x.gguf",
    }
    assert (service.default_model, service.fill_model) == ("gguf", "bert")
    assert (service.device, service.dtype, service.offline, service.preload) == (
        "cuda",
        "bfloat16",
        True,
        False,
    )
    assert (service.max_new_tokens_cap, service.queue_limit, service.max_batch_size) == (256, 3, 4)
    assert service.request_timeout_s == 30.5
    assert config.default_max_new_tokens == 64
    assert config.stream_edit_interval_s == 0.5
    assert config.shutdown_grace_s == 0.0
    assert config.log_level == "DEBUG" and log_level_number(config) == logging.DEBUG


def test_defaults_need_no_settings_at_all() -> None:
    config = load_config({})
    assert config == BotConfig(service=config.service)
    assert not config.token_set and config.guild_ids == () and config.api_base is None
    # The default model's GGUF (its engine is auto: llama.cpp when installed) and the set-up's encoder.
    assert dict(config.service.models) == {
        "smollm2": "models/SmolLM2-135M-Instruct.Q4_1.gguf",
        "minilm": "./models/all-MiniLM-L6-v2",
    }
    assert dict(config.service.engines) == {} and config.service.llama_context == 1024
    assert config.service.default_model == "smollm2" and config.service.fill_model is None
    assert (config.service.device, config.service.dtype) == ("auto", "auto")
    assert config.service.offline is False and config.service.preload is True
    assert (config.service.max_new_tokens_cap, config.service.queue_limit) == (512, 256)
    assert config.default_max_new_tokens == 128
    assert (config.stream_edit_interval_s, config.shutdown_grace_s, config.log_level) == (1.0, 10.0, "INFO")
    assert config.database_path == Path("data/transcord.sqlite3")
    assert config.database_url is None  # SQLite unless a Postgres URL is given


def test_blank_values_mean_unset_as_in_env_example() -> None:
    blank = dict.fromkeys(FULL_ENV, "")
    assert load_config(blank) == load_config({})


def test_the_default_model_lives_under_models_dir_and_the_cap_bounds_the_default() -> None:
    config = load_config({"MODELS_DIR": "/opt/m", "MAX_NEW_TOKENS_CAP": "50"})
    assert dict(config.service.models) == {
        "smollm2": "/opt/m/SmolLM2-135M-Instruct.Q4_1.gguf",
        "minilm": "/opt/m/all-MiniLM-L6-v2",
    }
    assert config.default_max_new_tokens == 50


def test_the_first_catalog_entry_is_the_default_and_hf_hub_offline_counts() -> None:
    config = load_config({"MODELS": "a=x=y,b=z", "HF_HUB_OFFLINE": "true"})
    assert dict(config.service.models) == {"a": "x=y", "b": "z"}  # a source may contain "="
    assert config.service.default_model == "a" and config.service.offline


@pytest.mark.parametrize(
    ("key", "value"),
    [("MODEL_DEVICE", "CPU"), ("MODEL_DTYPE", "Float32"), ("LOG_LEVEL", "Warning")],
)
def test_choices_ignore_case(key: str, value: str) -> None:
    config = load_config({key: value})
    chosen = {"MODEL_DEVICE": config.service.device, "MODEL_DTYPE": config.service.dtype}.get(
        key, config.log_level
    )
    assert chosen.lower() == value.lower()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QUEUE_LIMIT": "lots"}, "QUEUE_LIMIT must be a whole number, got 'lots'"),
        ({"QUEUE_LIMIT": "0"}, "QUEUE_LIMIT must be in [1, 4096], got 0"),
        ({"MAX_BATCH_SIZE": "65"}, "MAX_BATCH_SIZE must be in [1, 64], got 65"),
        ({"MAX_NEW_TOKENS_CAP": "2048"}, "MAX_NEW_TOKENS_CAP must be in [1, 1024], got 2048"),
        (
            {"MAX_NEW_TOKENS_CAP": "100", "DEFAULT_MAX_NEW_TOKENS": "200"},
            "DEFAULT_MAX_NEW_TOKENS must be in [1, 100], got 200",
        ),
        ({"REQUEST_TIMEOUT_S": "soon"}, "REQUEST_TIMEOUT_S must be a number, got 'soon'"),
        ({"STREAM_EDIT_INTERVAL_S": "0.05"}, "STREAM_EDIT_INTERVAL_S must be in [0.2, 10], got 0.05"),
        ({"STREAM_EDIT_INTERVAL_S": "nan"}, "STREAM_EDIT_INTERVAL_S must be in [0.2, 10], got nan"),
        ({"SHUTDOWN_GRACE_S": "-1"}, "SHUTDOWN_GRACE_S must be in [0, 300], got -1"),
        ({"FORCE_COMMAND_SYNC": "maybe"}, "FORCE_COMMAND_SYNC must be true or false, got 'maybe'"),
        ({"MODEL_OFFLINE": "2"}, "MODEL_OFFLINE must be true or false, got '2'"),
        ({"MODEL_DEVICE": "tpu"}, "MODEL_DEVICE must be one of auto, cpu, cuda, mps, got 'tpu'"),
        ({"MODEL_DTYPE": "int8"}, "MODEL_DTYPE must be one of auto, float32, bfloat16, float16, got 'int8'"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'"),
        (
            {"DISCORD_GUILD_IDS": "123,abc"},
            "DISCORD_GUILD_IDS must be comma-separated guild ids, got '123,abc'",
        ),
        (
            {"DISCORD_API_BASE": "127.0.0.1:8080"},
            "DISCORD_API_BASE must start with http:// or https://, got '127.0.0.1:8080'",
        ),
        (
            {"DISCORD_GATEWAY_URL": "http://x/gateway"},
            "DISCORD_GATEWAY_URL must start with ws:// or wss://, got 'http://x/gateway'",
        ),
        ({"MODELS": "tiny"}, "MODELS entries must look like name=source, got 'tiny'"),
        ({"MODELS": "a=x, =y"}, "MODELS entries must look like name=source, got '=y'"),
        ({"MODELS": "a=x", "DEFAULT_MODEL": "b"}, "DEFAULT_MODEL `b` is not in MODELS (known: a)"),
        ({"MODELS": "a=x,c=y", "FILL_MODEL": "bert"}, "FILL_MODEL `bert` is not in MODELS (known: a, c)"),
        ({"DEFAULT_MODEL": "bert"}, "DEFAULT_MODEL `bert` is not in MODELS (known: smollm2, minilm)"),
    ],
)
def test_a_malformed_value_names_its_key_and_not_the_token(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"DISCORD_TOKEN": TOKEN, **env})
    text = str(info.value)
    assert text == message
    assert text.startswith(next(k for k in env if k in text.split()[0]))
    assert TOKEN not in text


@pytest.mark.parametrize(
    "key", ["DISCORD_GUILD_IDS", "DISCORD_API_BASE", "MODELS", "QUEUE_LIMIT", "LOG_LEVEL"]
)
def test_a_token_pasted_into_the_wrong_key_is_not_echoed(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"DISCORD_TOKEN": TOKEN, key: TOKEN})
    assert str(info.value).startswith(key)
    assert TOKEN not in str(info.value)


def test_the_token_is_not_in_the_configs_repr() -> None:
    config = load_config({"DISCORD_TOKEN": TOKEN})
    assert TOKEN not in repr(config) and TOKEN not in str(config)


def test_the_database_password_is_not_in_the_configs_repr() -> None:
    config = load_config({"DATABASE_URL": "postgres://bot:pg-secret@db/transcord"})
    assert config.database_url == "postgres://bot:pg-secret@db/transcord"
    assert "pg-secret" not in repr(config)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://bot:pg-secret@db/transcord", " (it starts with mysql://)"),
        ("bot:pg-secret@db/transcord", ""),
        ("db.example:5432", ""),
    ],
)
def test_a_database_url_that_is_not_postgres_is_refused_without_echoing_it(url: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"DATABASE_URL": url})
    assert str(info.value) == (
        "DATABASE_URL must be a postgresql://user:password@host:port/database URL" + shown
    )


class Recording(dict[str, str]):
    """An env that remembers every key the config asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def test_env_example_lists_exactly_the_keys_the_config_reads() -> None:
    env = Recording()
    load_config(env)
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    # HF_HUB_OFFLINE is Hugging Face's own switch, honoured too; .env.example mentions it in a comment.
    assert env.asked - {"HF_HUB_OFFLINE"} == listed


def test_model_engines_force_an_engine_per_model() -> None:
    env = {"MODELS": "a=models/a.gguf,b=models/b", "MODEL_ENGINES": "a=transformers, b=auto"}
    assert dict(load_config(env).service.engines) == {"a": "transformers", "b": "auto"}


@pytest.mark.parametrize(
    ("engines", "named"),
    [
        ("a=vllm", "vllm"),  # no such engine
        ("c=llama.cpp", "c=llama.cpp"),  # not in the catalog
        ("a", "'a'"),  # no engine at all
    ],
)
def test_bad_model_engines_name_the_entry(engines: str, named: str) -> None:
    with pytest.raises(ConfigError, match="MODEL_ENGINES") as caught:
        load_config({"MODELS": "a=models/a.gguf,b=models/b", "MODEL_ENGINES": engines})
    assert named in str(caught.value)


def test_llama_cpp_is_refused_for_a_source_that_is_not_gguf() -> None:
    with pytest.raises(ConfigError, match=r"llama.cpp for `b` needs a .gguf source"):
        load_config({"MODELS": "a=models/a.gguf,b=models/b", "MODEL_ENGINES": "b=llama.cpp"})


def test_shards_unset_is_one_unsharded_connection() -> None:
    config = load_config({})
    assert config.shard_count is None and config.shard_ids == ()


@pytest.mark.parametrize(
    ("ids", "expected"), [(None, (0, 1, 2, 3)), ("2", (2,)), ("0-1,3", (0, 1, 3)), (" 3 , 1 ", (1, 3))]
)
def test_shard_ids_name_this_processs_share_of_the_shards(ids: str | None, expected: tuple[int, ...]) -> None:
    env = {"SHARD_COUNT": "4", **({"SHARD_IDS": ids} if ids else {})}
    config = load_config(env)
    assert config.shard_count == 4 and config.shard_ids == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHARD_IDS": "0"}, "SHARD_IDS needs SHARD_COUNT"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "2"}, "2 is not below SHARD_COUNT 2"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "0,0"}, "each shard once"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "one"}, "shard numbers or ranges"),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT"),
    ],
)
def test_bad_shards_are_refused_naming_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env)
