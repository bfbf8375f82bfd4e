"""``transcord.toml``: the settings as a file, read into the same env-shaped mapping as ``.env``.

The file adds no setting of its own: ``[settings]`` holds the env keys in lower case and each
``[models.NAME]`` table is packed into ``MODELS``, ``MODEL_ENGINES``, ``REMOTE_FLAVOURS`` and
``REMOTE_TOKENIZERS``, so :func:`app.environment.load_config` still checks every value once. The
one thing it adds is a key per remote model, read from the variable its ``api_key_env`` names
(never from the file). The environment (and ``.env``) overrides the file key by key; an
environment that sets ``MODELS`` replaces the file's model tables as a whole.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from app.environment import ConfigError, load_config, setting_keys
from core.config import BotConfig
from model_service.config import ENGINES
from model_service.remote_source import FLAVOURS, is_remote
from model_service.task_names import TASKS

DEFAULT_PATH = Path("transcord.toml")
PATH_KEY = "TRANSCORD_CONFIG"
# The keys the [models.NAME] tables stand for; [settings] may not set them.
MODEL_KEYS = ("MODELS", "MODEL_ENGINES", "REMOTE_FLAVOURS", "REMOTE_TOKENIZERS")
# Never in a file (files get copied, committed and shown): these come from the environment only.
SECRET_KEYS = ("DISCORD_TOKEN", "REMOTE_API_KEY")
MODEL_FIELDS = ("source", "url", "task", "engine", "flavour", "tokenizer", "api_key_env")
REMOTE_ONLY = ("flavour", "tokenizer", "api_key_env")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MODEL_NAME = re.compile(r"[^\s,=]+")


@dataclass(frozen=True)
class ConfigFile:
    """What one file says, env-shaped: ``env`` holds env keys, ``api_key_envs`` model -> variable."""

    path: Path
    env: dict[str, str]
    api_key_envs: dict[str, str]


@dataclass(frozen=True)
class Settings:
    """The config, and where it came from (for ``transcord check-config`` and the start's log)."""

    config: BotConfig
    file: ConfigFile | None = None
    overridden: tuple[str, ...] = ()  # the file's keys the environment overrides


def find_path(env: Mapping[str, str], given: str | None = None) -> Path | None:
    """``--config``, else ``$TRANSCORD_CONFIG``, else ``./transcord.toml`` if there is one.

    A file named on purpose must exist: a typo must not silently start the bot on defaults.
    """
    named = given or (env.get(PATH_KEY) or "").strip() or None
    if named is None:
        return DEFAULT_PATH if DEFAULT_PATH.is_file() else None
    path = Path(named).expanduser()
    if not path.is_file():
        where = "--config" if given else PATH_KEY
        raise ConfigError(f"{where} names {path}, which is not a file")
    return path


def read_file(path: Path) -> ConfigFile:
    """Parse and shape the file; a ConfigError names the file, the table and the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for key in data:
        if key not in ("settings", "models"):
            raise ConfigError(f"{path}: unknown table or key `{key}`{_hint(key, ('settings', 'models'))}")
    env = _settings(path, _table(path, data, "settings"))
    api_key_envs = _models(path, _table(path, data, "models"), env)
    return ConfigFile(path, env, api_key_envs)


def load_settings(env: Mapping[str, str], path: Path | None) -> Settings:
    """The config from ``env`` (environment + ``.env``) over the file at ``path`` (None: no file)."""
    if path is None:
        return Settings(load_config(env))
    file = read_file(path)
    set_here = {key for key, value in env.items() if value.strip()}
    taken = {key: value for key, value in file.env.items() if key not in set_here}
    if "MODELS" in set_here:  # the environment's catalog replaces the file's tables, all of them
        taken = {key: value for key, value in taken.items() if key not in MODEL_KEYS}
        file = ConfigFile(file.path, file.env, {})
    # Only the keys of the file's own models, and only when its models are the catalog.
    keys = {name: _api_key(path, name, var, env) for name, var in file.api_key_envs.items()}
    try:
        config = load_config({**env, **taken}, api_keys=keys)
    except ConfigError as exc:
        raise _located(exc, path, taken) from None
    overridden = tuple(sorted(key for key in file.env if key in set_here))
    return Settings(config, file, overridden)


# -- [settings] -----------------------------------------------------------------------------------


def _settings(path: Path, table: dict[str, Any]) -> dict[str, str]:
    known = setting_keys() - {"HF_HUB_OFFLINE"}  # Hugging Face's own switch; model_offline is ours
    env: dict[str, str] = {}
    for name, value in table.items():
        key = name.upper()
        where = f"{path}: [settings] {name}"
        if key in SECRET_KEYS:
            raise ConfigError(
                f"{where} is a secret, and secrets are never read from the file: set {key} in the "
                "environment (or .env)"
            )
        if key in MODEL_KEYS:
            raise ConfigError(f"{where}: describe each model in a [models.NAME] table instead")
        if key not in known or name != name.lower():
            raise ConfigError(f"{path}: [settings] has no setting `{name}`{_hint(name.lower(), known)}")
        env[key] = _flat(where, value)
        if key == "DATABASE_URL" and _has_password(env[key]):
            raise ConfigError(
                f"{where} holds a password: set DATABASE_URL in the environment (or .env) instead, "
                "or leave the password out of the URL (PGPASSWORD and ~/.pgpass are read)"
            )
    return env


def _flat(where: str, value: object) -> str:
    """A TOML value as the env writes it: true/false, numbers, lists comma-separated."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, int | str) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    raise ConfigError(f"{where} must be a string, a number, true or false, or a list of numbers or strings")


def _has_password(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return bool(parts.password) or any(key == "password" for key, _ in parse_qsl(parts.query))
    except ValueError:
        return False  # malformed: load_config says so without quoting it


# -- [models.NAME] --------------------------------------------------------------------------------


def _models(path: Path, table: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """Pack the model tables into ``env``'s MODELS etc.; the api_key_env of each model that has one."""
    packed: dict[str, list[str]] = {key: [] for key in MODEL_KEYS}
    api_key_envs: dict[str, str] = {}
    for name, model in table.items():
        where = f"{path}: [models.{name}]"
        if not isinstance(model, dict):
            raise ConfigError(f'{where} must be a table, e.g. [models.{name}] with source = "..."')
        if not MODEL_NAME.fullmatch(name):
            raise ConfigError(f"{where}: a model's name takes no spaces, commas or `=`")
        fields = _model_fields(where, model)
        source = fields.get("url") or fields["source"]
        packed["MODELS"].append(f"{name}={source}" + (f":{fields['task']}" if "task" in fields else ""))
        if "engine" in fields:
            packed["MODEL_ENGINES"].append(f"{name}={fields['engine']}")
        for key, field in (("REMOTE_FLAVOURS", "flavour"), ("REMOTE_TOKENIZERS", "tokenizer")):
            if field in fields:
                packed[key].append(f"{name}={fields[field]}")
        if "api_key_env" in fields:
            api_key_envs[name] = fields["api_key_env"]
    env.update({key: ",".join(entries) for key, entries in packed.items() if entries})
    return api_key_envs


def _model_fields(where: str, model: dict[str, Any]) -> dict[str, str]:
    """One model table's keys, checked: each known, a string, and what goes with what."""
    if "api_key" in model:
        raise ConfigError(
            f"{where} api_key: a key is never stored in the file; put it in an environment variable "
            'and name that variable here, e.g. api_key_env = "OPENROUTER_KEY"'
        )
    if "threads" in model:
        raise ConfigError(
            f"{where} threads: threads are one setting for every model: model_threads in [settings]"
        )
    fields: dict[str, str] = {}
    for key, value in model.items():
        if key not in MODEL_FIELDS:
            raise ConfigError(f"{where} has no key `{key}` (known: {', '.join(MODEL_FIELDS)})")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where} {key} must be a non-empty string")
        if "," in value:
            raise ConfigError(f"{where} {key} must not contain a comma")
        fields[key] = value.strip()
    if ("source" in fields) == ("url" in fields):
        raise ConfigError(
            f"{where} needs a source (a folder, a hub id, a .gguf file) or a url (a server's), one of them"
        )
    if "source" in fields and is_remote(fields["source"]):
        raise ConfigError(f'{where} source is a server\'s URL: write it as url = "..." instead')
    if "url" in fields and not is_remote(fields["url"]):
        raise ConfigError(f"{where} url must start with http:// or https://")
    remote_only = [key for key in REMOTE_ONLY if key in fields and "url" not in fields]
    if remote_only:
        raise ConfigError(f"{where} {remote_only[0]} is for a model on a server (a url), not a source")
    if "task" in fields and "url" in fields:
        raise ConfigError(f"{where} task is for a source; a server's model is asked what it is")
    for key, choices in (("engine", ENGINES), ("flavour", FLAVOURS), ("task", TASKS)):
        if key in fields and fields[key].lower() not in choices:
            raise ConfigError(f"{where} {key} must be one of {', '.join(choices)}, got {fields[key]!r}")
        if key in fields:
            fields[key] = fields[key].lower()
    if "url" in fields and fields.get("engine", "remote") not in ("auto", "remote"):
        raise ConfigError(f"{where} engine must be remote (or auto) for a url, got {fields['engine']!r}")
    if "api_key_env" in fields and not ENV_NAME.fullmatch(fields["api_key_env"]):
        raise ConfigError(
            f"{where} api_key_env must be the name of an environment variable, such as OPENROUTER_KEY"
        )
    return fields


def _api_key(path: Path, name: str, var: str, env: Mapping[str, str]) -> str:
    key = (env.get(var) or "").strip()
    if not key:
        raise ConfigError(
            f"{path}: [models.{name}] api_key_env names {var}, which is not set in the environment (or .env)"
        )
    return key


# -- helpers --------------------------------------------------------------------------------------


def _table(path: Path, data: dict[str, Any], name: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: `{name}` must be a table ([{name}])")
    return table


def _hint(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(k.lower() for k in known), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _located(exc: ConfigError, path: Path, taken: Mapping[str, str]) -> ConfigError:
    """load_config's message, naming the file's key where the value came from the file."""
    message = str(exc)
    key, _, rest = message.partition(" ")
    if key in taken and key not in MODEL_KEYS:
        return ConfigError(f"{path}: [settings] {key.lower()} {rest}")
    starts_with_key = re.match(r"[A-Z][A-Z0-9_]+\b", message) is not None
    if "MODELS" in taken and (key in MODEL_KEYS or not starts_with_key):
        return ConfigError(f"{path}: [models] {message}")
    return exc
