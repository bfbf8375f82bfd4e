"""The environment (and .env) read once into :class:`core.config.BotConfig`.

Nothing else in the project reads the environment. Every key is listed, with a comment,
in ``.env.example``; a malformed value fails at start-up with a message naming the key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from core.config import BotConfig
from model_service.config import DEVICES, DTYPES, ENGINES, PRIORITIES, ServiceConfig
from model_service.fetch_encoder import ENCODER_NAME
from model_service.remote_source import FLAVOURS, is_remote
from model_service.types import MAX_NEW_TOKENS_LIMIT

DEFAULT_MODEL_NAME = "smollm2"
DEFAULT_MODEL_FOLDER = "SmolLM2-135M-Instruct"  # its de-quantized twin, for transformers
DEFAULT_MODEL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # what the default catalog serves
# The sentence encoder the set-up fetches: out of the box, /similar's model.
DEFAULT_ENCODER_NAME = "minilm"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
N = TypeVar("N", int, float)


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the key (never its secret value)."""


def _text(env: Mapping[str, str], key: str, default: str | None = None) -> str | None:
    value = env.get(key)
    if value is None or not value.strip():
        return default
    return value.strip()


def _int(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    return _number(env, key, default, low, high, int, "a whole number")


def _float(env: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    return _number(env, key, default, low, high, float, "a number")


def _number(
    env: Mapping[str, str], key: str, default: N, low: N, high: N, kind: Callable[[str], N], what: str
) -> N:
    raw = _text(env, key)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{key} must be {what}, got {raw!r}") from None
    if not low <= value <= high:
        shown = (lambda x: f"{x:g}") if kind is float else str
        raise ConfigError(f"{key} must be in [{shown(low)}, {shown(high)}], got {shown(value)}")
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = _text(env, key)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _text(env, key, default)
    assert raw is not None
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {raw!r}")


def _guild_ids(env: Mapping[str, str]) -> tuple[int, ...]:
    raw = _text(env, "DISCORD_GUILD_IDS")
    if raw is None:
        return ()
    try:
        return tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"DISCORD_GUILD_IDS must be comma-separated guild ids, got {raw!r}") from None


def _shards(env: Mapping[str, str]) -> tuple[int | None, tuple[int, ...]]:
    """SHARD_COUNT, and SHARD_IDS (``0,1`` or ``0-3``): which of them this process runs."""
    raw_ids = _text(env, "SHARD_IDS")
    if _text(env, "SHARD_COUNT") is None:
        if raw_ids is not None:
            raise ConfigError("SHARD_IDS needs SHARD_COUNT (how many shards there are in all)")
        return None, ()
    count = _int(env, "SHARD_COUNT", 1, 1, 65536)
    if raw_ids is None:
        return count, tuple(range(count))
    ids: list[int] = []
    try:
        for part in (p.strip() for p in raw_ids.split(",") if p.strip()):
            low, dash, high = part.partition("-")
            ids += range(int(low), int(high) + 1) if dash else [int(part)]
    except ValueError:
        raise ConfigError(
            f"SHARD_IDS must be shard numbers or ranges such as 0,1 or 0-3, got {raw_ids!r}"
        ) from None
    bad = [i for i in ids if not 0 <= i < count]
    if not ids or bad or len(set(ids)) != len(ids):
        why = f"{bad[0]} is not below SHARD_COUNT {count}" if bad else "each shard once, at least one"
        raise ConfigError(f"SHARD_IDS must name shards 0 to {count - 1} ({why}), got {raw_ids!r}")
    return count, tuple(sorted(ids))


def _url(env: Mapping[str, str], key: str, schemes: tuple[str, ...]) -> str | None:
    raw = _text(env, key)
    if raw is not None and not raw.startswith(schemes):
        raise ConfigError(f"{key} must start with {' or '.join(schemes)}, got {raw!r}")
    return raw.rstrip("/") if raw else None


def _database_url(env: Mapping[str, str]) -> str | None:
    """A Postgres URL, or None (SQLite at DATABASE_PATH). Never quoted back: it may hold a password."""
    raw = _text(env, "DATABASE_URL")
    if raw is None:
        return None
    scheme, sep, _ = raw.partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres"):
        shown = f" (it starts with {scheme}://)" if sep and scheme.isalnum() else ""
        raise ConfigError("DATABASE_URL must be a postgresql://user:password@host:port/database URL" + shown)
    return raw


def _catalog(env: Mapping[str, str], models_dir: Path) -> dict[str, str]:
    raw = _text(env, "MODELS")
    if raw is None:
        return {
            DEFAULT_MODEL_NAME: str(models_dir / DEFAULT_MODEL_GGUF),
            DEFAULT_ENCODER_NAME: _local(models_dir / ENCODER_NAME),
        }
    catalog: dict[str, str] = {}
    for entry in raw.split(","):
        name, sep, source = entry.partition("=")
        if not sep or not name.strip() or not source.strip():
            raise ConfigError(f"MODELS entries must look like name=source, got {entry.strip()!r}")
        catalog[name.strip()] = source.strip()
    return catalog


def _local(path: Path) -> str:
    """A folder as a source that reads as a path even while it is missing (``./models/x``): a bare
    ``models/x`` would read as a hub id, and the hub is never asked for the set-up's models."""
    return str(path) if path.is_absolute() or str(path).startswith(".") else f"./{path}"


def _engines(env: Mapping[str, str], catalog: dict[str, str]) -> dict[str, str]:
    raw = _text(env, "MODEL_ENGINES")
    engines: dict[str, str] = {}
    for entry in (raw or "").split(","):
        if not entry.strip():
            continue
        name, sep, engine = (part.strip() for part in entry.partition("="))
        if not sep or name not in catalog or engine not in ENGINES:
            raise ConfigError(
                f"MODEL_ENGINES entries must look like name=engine with a name from MODELS "
                f"({', '.join(catalog)}) and an engine from {', '.join(ENGINES)}; got {entry.strip()!r}"
            )
        engines[name] = engine
    return engines


def _remote_pairs(
    env: Mapping[str, str], key: str, catalog: dict[str, str], what: str, choices: tuple[str, ...] = ()
) -> dict[str, str]:
    """``name=value`` pairs for the catalog's remote models (sources that are a server's URL)."""
    remote = [name for name, source in catalog.items() if is_remote(source)]
    pairs: dict[str, str] = {}
    for entry in (_text(env, key) or "").split(","):
        if not entry.strip():
            continue
        name, sep, value = (part.strip() for part in entry.partition("="))
        value = value.lower() if choices else value
        if not sep or name not in remote or not value or (choices and value not in choices):
            among = f" and a {what} from {', '.join(choices)}" if choices else ""
            raise ConfigError(
                f"{key} entries must look like name={what} with the name of a MODELS entry that is a "
                f"server's URL ({', '.join(remote) or 'there is none'}){among}; got {entry.strip()!r}"
            )
        pairs[name] = value
    return pairs


def load_config(env: Mapping[str, str], *, api_keys: Mapping[str, str] | None = None) -> BotConfig:
    """Build the config from a mapping (``os.environ`` after python-dotenv, or a test's dict).

    ``api_keys``: remote models' own keys (name -> key), which no single env key can carry; the
    config file (:mod:`app.config_file`) reads them from the variables its models name.
    """
    keys = dict(api_keys or {})
    try:
        return _load_config(env, keys)
    except ConfigError as exc:
        # Messages quote the bad value; a token pasted under another key must not be printed.
        message = str(exc)
        secrets = [(key, _text(env, key)) for key in ("DISCORD_TOKEN", "REMOTE_API_KEY")]
        secrets += [(f"`{name}` API key", key.strip()) for name, key in keys.items()]
        for key, secret in secrets:
            if secret and secret in message:
                message = message.replace(secret, f"<the {key} value>")
        if message != str(exc):
            raise ConfigError(message) from None
        raise


def _load_config(env: Mapping[str, str], api_keys: dict[str, str]) -> BotConfig:
    models_dir = Path(_text(env, "MODELS_DIR", "models") or "models")
    catalog = _catalog(env, models_dir)
    default_model = _text(env, "DEFAULT_MODEL", next(iter(catalog)))
    assert default_model is not None
    fill_model = _text(env, "FILL_MODEL")
    for key, name in (("DEFAULT_MODEL", default_model), ("FILL_MODEL", fill_model)):
        if name is not None and name not in catalog:
            raise ConfigError(f"{key} `{name}` is not in MODELS (known: {', '.join(catalog)})")
    api_base = _url(env, "DISCORD_API_BASE", ("http://", "https://"))
    gateway_url = _url(env, "DISCORD_GATEWAY_URL", ("ws://", "wss://"))
    if (api_base is None) != (gateway_url is None):
        given, missing = (
            ("DISCORD_API_BASE", "DISCORD_GATEWAY_URL")
            if api_base
            else ("DISCORD_GATEWAY_URL", "DISCORD_API_BASE")
        )
        raise ConfigError(
            "DISCORD_API_BASE and DISCORD_GATEWAY_URL go together: set both to use a Discord-compatible "
            f"server, or neither to use Discord ({given} is set, {missing} is not)"
        )
    cap = _int(env, "MAX_NEW_TOKENS_CAP", 512, 1, MAX_NEW_TOKENS_LIMIT)
    shard_count, shard_ids = _shards(env)
    try:
        service = _service_config(env, catalog, default_model, fill_model, cap, api_keys)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return BotConfig(
        token=_text(env, "DISCORD_TOKEN"),
        guild_ids=_guild_ids(env),
        api_base=api_base,
        gateway_url=gateway_url,
        database_path=Path(_text(env, "DATABASE_PATH", "data/transcord.sqlite3") or ""),
        database_url=_database_url(env),
        models_dir=models_dir,
        service=service,
        default_max_new_tokens=_int(env, "DEFAULT_MAX_NEW_TOKENS", min(128, cap), 1, cap),
        stream_edit_interval_s=_float(env, "STREAM_EDIT_INTERVAL_S", 1.0, 0.2, 10.0),
        shutdown_grace_s=_float(env, "SHUTDOWN_GRACE_S", 10.0, 0.0, 300.0),
        log_level=_choice(env, "LOG_LEVEL", "INFO", LOG_LEVELS),
        force_sync=_bool(env, "FORCE_COMMAND_SYNC", False),
        message_content=_bool(env, "MESSAGE_CONTENT_INTENT", False),
        shard_count=shard_count,
        shard_ids=shard_ids,
        metrics_port=None if _text(env, "METRICS_PORT") is None else _int(env, "METRICS_PORT", 0, 1, 65535),
        metrics_host=_text(env, "METRICS_HOST", "127.0.0.1") or "127.0.0.1",
    )


def _service_config(
    env: Mapping[str, str],
    catalog: dict[str, str],
    default_model: str,
    fill_model: str | None,
    cap: int,
    api_keys: dict[str, str],
) -> ServiceConfig:
    return ServiceConfig(
        models=catalog,
        default_model=default_model,
        fill_model=fill_model,
        engines=_engines(env, catalog),
        llama_context=_int(env, "LLAMA_CONTEXT", 1024, 64, 131072),
        llama_priority=_choice(env, "LLAMA_PRIORITY", "normal", PRIORITIES),
        device=_choice(env, "MODEL_DEVICE", "auto", DEVICES),
        dtype=_choice(env, "MODEL_DTYPE", "auto", DTYPES),
        offline=_bool(env, "MODEL_OFFLINE", False) or _bool(env, "HF_HUB_OFFLINE", False),
        max_new_tokens_cap=cap,
        queue_limit=_int(env, "QUEUE_LIMIT", 256, 1, 4096),
        max_batch_size=_int(env, "MAX_BATCH_SIZE", 8, 1, 64),
        threads=_int(env, "MODEL_THREADS", 0, 0, 1024),
        request_timeout_s=_float(env, "REQUEST_TIMEOUT_S", 120.0, 1.0, 3600.0),
        preload=_bool(env, "PRELOAD_MODELS", True),
        remote_flavours=_remote_pairs(env, "REMOTE_FLAVOURS", catalog, "flavour", FLAVOURS),
        remote_tokenizers=_remote_pairs(env, "REMOTE_TOKENIZERS", catalog, "folder"),
        remote_api_key=_text(env, "REMOTE_API_KEY"),
        remote_api_keys={name: key.strip() for name, key in api_keys.items()},
        remote_timeout_s=_float(env, "REMOTE_TIMEOUT_S", 30.0, 0.1, 600.0),
    )


class _Asked(Mapping[str, str]):
    """An empty env that remembers each key looked up in it."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def setting_keys() -> frozenset[str]:
    """Every key :func:`load_config` reads, learnt by asking it, so no second list can drift from
    it (an empty env reads them all: each key has a default). The config file accepts these."""
    asked = _Asked()
    load_config(asked)
    return frozenset(asked.asked)


def log_level_number(config: BotConfig) -> int:
    return logging.getLevelNamesMapping()[config.log_level]
