"""The remote models' settings: a MODELS entry that is a server's URL, and the REMOTE_* keys."""

from __future__ import annotations

import pytest

from app.environment import ConfigError, load_config
from model_service.remote_source import RemoteSource, parse_remote

SERVER = "http://10.0.0.5:8000/v1"


def remote_env(**extra: str) -> dict[str, str]:
    return {"MODELS": f"local=models/a,qwen={SERVER}#Qwen/Qwen2.5-0.5B-Instruct,llama={SERVER}", **extra}


def test_a_servers_url_is_a_remote_model_with_its_settings() -> None:
    env = remote_env(
        REMOTE_FLAVOURS="qwen=vLLM, llama=llama.cpp",
        REMOTE_TOKENIZERS="qwen=models/qwen-tokenizer",
        REMOTE_API_KEY="sk-123",
        REMOTE_TIMEOUT_S="12.5",
        MODEL_ENGINES="qwen=remote",
    )
    service = load_config(env).service
    assert dict(service.remote_flavours) == {"qwen": "vllm", "llama": "llama.cpp"}
    assert dict(service.remote_tokenizers) == {"qwen": "models/qwen-tokenizer"}
    assert (service.remote_api_key, service.remote_timeout_s) == ("sk-123", 12.5)
    assert dict(service.engines) == {"qwen": "remote"}
    assert "sk-123" not in repr(load_config(env))


def test_the_defaults_are_auto_no_key_and_thirty_seconds() -> None:
    service = load_config(remote_env()).service
    assert dict(service.remote_flavours) == dict(service.remote_tokenizers) == {}
    assert (service.remote_api_key, service.remote_timeout_s) == (None, 30.0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("http://h:8000/v1", RemoteSource("http://h:8000/v1")),
        ("https://api.example.com/v1/", RemoteSource("https://api.example.com/v1")),
        ("http://h:8080", RemoteSource("http://h:8080/v1")),  # a bare host means the usual /v1
        # A colon in the served name (Ollama's tags) is not a forced task.
        ("http://h:11434/v1#llama3:8b", RemoteSource("http://h:11434/v1", "llama3:8b")),
    ],
)
def test_the_url_and_the_served_name(spec: str, expected: RemoteSource) -> None:
    assert parse_remote(spec) == expected
    load_config({"MODELS": f"m={spec}"})  # accepted whole, a colon after the path included


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MODEL_ENGINES": "local=remote"},
            "engine remote for `local` needs a server's http(s) URL, not `models/a`",
        ),
        (
            {"MODEL_ENGINES": "qwen=transformers"},
            f"`qwen` is a server's URL (`{SERVER}#Qwen/Qwen2.5-0.5B-Instruct`): its engine is remote, "
            "not transformers",
        ),
        (
            {"MODEL_ENGINES": "llama=llama.cpp"},
            f"engine llama.cpp for `llama` needs a .gguf source, not `{SERVER}`",
        ),
        (
            {"REMOTE_FLAVOURS": "qwen=mistral"},
            "REMOTE_FLAVOURS entries must look like name=flavour with the name of a MODELS entry that is a "
            "server's URL (qwen, llama) and a flavour from auto, vllm, sglang, llama.cpp, tgi, openai; "
            "got 'qwen=mistral'",
        ),
        (
            {"REMOTE_TOKENIZERS": "local=models/a"},
            "REMOTE_TOKENIZERS entries must look like name=folder with the name of a MODELS entry that is a "
            "server's URL (qwen, llama); got 'local=models/a'",
        ),
        ({"REMOTE_TIMEOUT_S": "0"}, "REMOTE_TIMEOUT_S must be in [0.1, 600], got 0"),
    ],
)
def test_a_bad_remote_setting_names_its_entry(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(remote_env(**env))
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("http://bot:hunter2@h:8000/v1", "model `m`: `h`: put the API key in REMOTE_API_KEY, not in the URL"),
        ("http://:8000/v1", "model `m`: `http://:8000/v1` is not an http(s) URL with a host"),
        (
            "http://h:port/v1",
            "model `m`: `http://h:port/v1` is not a valid URL (Port could not be cast to integer value as 'port')",
        ),
        (
            "http://h:8000/v1?model=x",
            "model `m`: `http://h:8000/v1?model=x`: the server's URL takes no query (the served name goes after `#`)",
        ),
    ],
)
def test_a_bad_url_is_refused_at_start(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"MODELS": f"m={spec}"})
    assert str(caught.value) == message
    assert "hunter2" not in str(caught.value)


def test_the_api_key_is_never_quoted_back() -> None:
    key = "sk-live-Abc123"
    with pytest.raises(ConfigError) as caught:
        load_config(remote_env(REMOTE_API_KEY=key, REMOTE_FLAVOURS=f"qwen={key}"))  # pasted in the wrong key
    assert key not in str(caught.value) and "<the REMOTE_API_KEY value>" in str(caught.value)
