"""transcord.toml: read into the env-shaped mapping load_config checks, the environment winning."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config_file import find_path, load_settings, read_file
from app.environment import ConfigError, load_config

KEY = "sk-or-v1-very-secret"
SERVER = "http://10.0.0.5:8000/v1"


def write(tmp_path: Path, text: str, name: str = "transcord.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env or {}, write(tmp_path, text))
    return str(caught.value)


FULL = f"""
[settings]
queue_limit = 64
preload_models = false
request_timeout_s = 30.5
discord_guild_ids = [111, 222]
log_level = "debug"
default_model = "qwen"

[models.small]
source = "models/small.gguf"
engine = "llama.cpp"

[models.bert]
source = "bert-base-uncased"
task = "fill-mask"

[models.qwen]
url = "{SERVER}#Qwen/Qwen2.5-0.5B-Instruct"
flavour = "vLLM"
tokenizer = "models/qwen-tokenizer"
api_key_env = "QWEN_KEY"

[models.llama]
url = "{SERVER}"
"""


def test_every_kind_of_entry_reaches_the_config(tmp_path: Path) -> None:
    settings = load_settings({"QWEN_KEY": KEY, "REMOTE_API_KEY": "sk-shared"}, write(tmp_path, FULL))
    config, service = settings.config, settings.config.service
    assert (service.queue_limit, service.preload, service.request_timeout_s) == (64, False, 30.5)
    assert config.guild_ids == (111, 222) and config.log_level == "DEBUG"
    assert dict(service.models) == {
        "small": "models/small.gguf",
        "bert": "bert-base-uncased:fill-mask",
        "qwen": f"{SERVER}#Qwen/Qwen2.5-0.5B-Instruct",
        "llama": SERVER,
    }
    assert service.default_model == "qwen" and dict(service.engines) == {"small": "llama.cpp"}
    assert dict(service.remote_flavours) == {"qwen": "vllm"}
    assert dict(service.remote_tokenizers) == {"qwen": "models/qwen-tokenizer"}
    # Its own key for qwen; llama gets the one for every server.
    assert dict(service.remote_api_keys) == {"qwen": KEY} and service.remote_api_key == "sk-shared"
    assert settings.file is not None and settings.file.api_key_envs == {"qwen": "QWEN_KEY"}
    assert KEY not in repr(config)


def test_each_model_gets_its_own_key_at_the_remote_client(tmp_path: Path) -> None:
    from model_service.engines.remote_models import RemoteModels

    settings = load_settings({"QWEN_KEY": KEY, "REMOTE_API_KEY": "sk-shared"}, write(tmp_path, FULL))
    remote = RemoteModels(settings.config.service)
    try:
        assert remote.server("qwen")._headers() == {"Authorization": f"Bearer {KEY}"}
        assert remote.server("llama")._headers() == {"Authorization": "Bearer sk-shared"}
    finally:
        remote.close()


def test_the_environment_overrides_the_file_key_by_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[settings]\nqueue_limit = 64\nmax_batch_size = 4\n")
    settings = load_settings({"QUEUE_LIMIT": "9", "MAX_BATCH_SIZE": "  "}, path)  # blank: unset
    assert (settings.config.service.queue_limit, settings.config.service.max_batch_size) == (9, 4)
    assert settings.overridden == ("QUEUE_LIMIT",)


def test_models_in_the_environment_replace_the_files_tables(tmp_path: Path) -> None:
    # The file's qwen would need QWEN_KEY; with MODELS set, its tables are not used at all.
    text = FULL.replace('default_model = "qwen"', "")
    settings = load_settings({"MODELS": "a=models/a"}, write(tmp_path, text))
    assert dict(settings.config.service.models) == {"a": "models/a"}
    assert dict(settings.config.service.remote_api_keys) == {}
    assert "MODELS" in settings.overridden
    # A default_model the file still sets must be in the environment's catalog.
    message = refused(tmp_path, FULL, {"MODELS": "a=models/a"})
    assert message.endswith("[settings] default_model `qwen` is not in MODELS (known: a)")


def test_no_file_is_exactly_the_environment() -> None:
    env = {"QUEUE_LIMIT": "12", "MODELS": "a=models/a"}
    assert load_settings(env, None).config == load_config(env)


def test_an_unset_api_key_variable_is_named(tmp_path: Path) -> None:
    message = refused(tmp_path, FULL)
    assert message == (
        f"{tmp_path / 'transcord.toml'}: [models.qwen] api_key_env names QWEN_KEY, which is not set "
        "in the environment (or .env)"
    )


def test_a_literal_api_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    message = refused(tmp_path, f'[models.qwen]\nurl = "{SERVER}"\napi_key = "{KEY}"\n')
    assert "[models.qwen] api_key: a key is never stored in the file" in message
    assert 'api_key_env = "OPENROUTER_KEY"' in message and KEY not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[settings]\nquue_limit = 3\n",
            "[settings] has no setting `quue_limit` (did you mean `queue_limit`?)",
        ),
        (
            "[settings]\nQUEUE_LIMIT = 3\n",
            "[settings] has no setting `QUEUE_LIMIT` (did you mean `queue_limit`?)",
        ),
        ('[models.a]\nsource = "x"\nsorce = "y"\n', "[models.a] has no key `sorce` (known: source, url,"),
        ("[setings]\nqueue_limit = 3\n", "unknown table or key `setings` (did you mean `settings`?)"),
        (
            '[models.smollm2]\nsource = "m.gguf"\nengine = "gpu"\n',
            "[models.smollm2] engine must be one of auto, transformers, llama.cpp, remote, got 'gpu'",
        ),
        (
            '[models.a]\nsource = "x"\nthreads = 2\n',
            "[models.a] threads: threads are one setting for every model",
        ),
        ('[models.a]\nsource = "x"\nflavour = "vllm"\n', "[models.a] flavour is for a model on a server"),
        (f'[models.a]\nsource = "{SERVER}"\n', "[models.a] source is a server's URL: write it as url = \""),
        (
            '[models.a]\ntask = "classify"\n',
            "[models.a] needs a source (a folder, a hub id, a .gguf file) or a url",
        ),
        (
            f'[models.a]\nurl = "{SERVER}"\nengine = "transformers"\n',
            "[models.a] engine must be remote (or auto)",
        ),
        ('[models.a]\nsource = "x"\ntask = "dance"\n', "[models.a] task must be one of generate, fill-mask,"),
        ('[models.a]\nsource = "x,y"\n', "[models.a] source must not contain a comma"),
        ("[settings]\nqueue_limit = 0\n", "[settings] queue_limit must be in [1, 4096], got 0"),
        (
            "[settings]\nqueue_limit = {a = 1}\n",
            "[settings] queue_limit must be a string, a number, true or false",
        ),
        (
            '[settings]\ndefault_model = "b"\n',
            "[settings] default_model `b` is not in MODELS (known: smollm2, minilm)",
        ),
        (
            '[settings]\nmodels = "a=b"\n',
            "[settings] models: describe each model in a [models.NAME] table instead",
        ),
        (
            "[settings]\ndiscord_token = 'x'\n",
            "[settings] discord_token is a secret, and secrets are never read",
        ),
        ("[settings]\nremote_api_key = 'x'\n", "[settings] remote_api_key is a secret"),
        (
            '[models.a]\nsource = "models/a"\nengine = "llama.cpp"\n',
            "[models] engine llama.cpp for `a` needs a .gguf",
        ),
        ("[settings\n", "not valid TOML ("),
    ],
)
def test_errors_name_the_file_the_table_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    message = refused(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'transcord.toml'}: "), message
    assert expected in message, message


def test_a_database_password_stays_out_of_the_file_and_the_message(tmp_path: Path) -> None:
    message = refused(tmp_path, '[settings]\ndatabase_url = "postgresql://bot:pg-secret@db/t"\n')
    assert "[settings] database_url holds a password" in message and "pg-secret" not in message
    ok = load_settings({}, write(tmp_path, '[settings]\ndatabase_url = "postgresql://bot@db/t"\n'))
    assert ok.config.database_url == "postgresql://bot@db/t"


def test_a_model_key_pasted_into_another_setting_is_not_echoed(tmp_path: Path) -> None:
    text = FULL.replace('log_level = "debug"', f'log_level = "{KEY}"')
    message = refused(tmp_path, text, {"QWEN_KEY": KEY})
    assert message.startswith(f"{tmp_path / 'transcord.toml'}: [settings] log_level must be one of")
    assert KEY not in message and "<the `qwen` API key value>" in message


def test_toml_values_are_written_as_the_environment_would(tmp_path: Path) -> None:
    path = write(tmp_path, "[settings]\nmodel_offline = true\nshard_ids = [0, 2]\nshard_count = 4\n")
    assert read_file(path).env == {"MODEL_OFFLINE": "true", "SHARD_IDS": "0,2", "SHARD_COUNT": "4"}


def test_where_the_file_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_path({}) is None  # none here: the environment alone, as before
    write(tmp_path, "")
    assert find_path({}) == Path("transcord.toml")
    other = write(tmp_path, "", "other.toml")
    assert find_path({"TRANSCORD_CONFIG": str(other)}) == other
    assert find_path({"TRANSCORD_CONFIG": str(other)}, "transcord.toml") == Path("transcord.toml")
    with pytest.raises(ConfigError, match=r"TRANSCORD_CONFIG names missing\.toml, which is not a file"):
        find_path({"TRANSCORD_CONFIG": "missing.toml"})
    with pytest.raises(ConfigError, match=r"--config names gone\.toml"):
        find_path({}, "gone.toml")


def test_the_example_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[2] / "transcord.example.toml"
    settings = load_settings({}, example)
    assert settings.config.service.queue_limit == 64
    assert dict(settings.config.service.models) == {
        "smollm2": "models/SmolLM2-135M-Instruct.Q4_1.gguf",
        "minilm": "./models/all-MiniLM-L6-v2",
    }
