"""The service's own settings, read once by bot.py and handed in (nothing here reads the env)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from model_service.remote_source import FLAVOURS, is_remote, parse_remote
from model_service.task_names import split_task
from model_service.types import MAX_NEW_TOKENS_LIMIT

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# auto: llama.cpp for a .gguf source when xllamacpp is installed, remote for a server's URL,
# transformers for the rest.
ENGINES = ("auto", "transformers", "llama.cpp", "remote")
# The scheduling of llama.cpp's compute threads (its --prio): normal, or real-time (SCHED_FIFO)
# at medium, high or realtime level, so a busy neighbour can't stall them (needs CAP_SYS_NICE).
PRIORITIES = ("normal", "medium", "high", "realtime")


def is_gguf(spec: str) -> bool:
    """A source written as a .gguf file (llama.cpp's format; transformers de-quantizes it)."""
    if is_remote(spec):
        return False  # a server's URL, even where the name it serves ends in .gguf
    try:
        source, _ = split_task(spec)
    except ValueError:
        source = spec.strip()
    return source.lower().endswith(".gguf")


@dataclass(frozen=True)
class ServiceConfig:
    # Catalog: the names users pick (in /settings) mapped to model sources
    # (a local folder, a hub id, or a .gguf file).
    models: Mapping[str, str] = field(default_factory=dict)
    default_model: str = ""
    fill_model: str | None = None  # None: fill with the default model
    # The engine a catalog name runs on, where it is not "auto" (see ENGINES).
    engines: Mapping[str, str] = field(default_factory=dict)
    device: str = "auto"
    dtype: str = "auto"
    offline: bool = False  # True: never touch the network, even for hub ids
    max_new_tokens_cap: int = 512
    # Admitted requests (running + waiting for a slot); more are refused at once. Those beyond the
    # slots wait their turn (``scheduler.FairQueue``), each a prompt of at most 8,000 characters.
    queue_limit: int = 256
    max_batch_size: int = 8  # generations decoded together in one forward pass
    request_timeout_s: float = 120.0
    threads: int = 0  # CPU threads for a forward pass (torch and llama.cpp); 0: one per core
    llama_context: int = 1024  # tokens (prompt + reply) each llama.cpp slot holds
    llama_priority: str = "normal"  # see PRIORITIES; above normal falls back where not permitted
    preload: bool = True  # load the default (and fill) model at start, not on first use
    # Remote models (a source that is a server's http(s) URL; see remote_source):
    remote_flavours: Mapping[str, str] = field(default_factory=dict)  # name -> FLAVOURS; unset: auto
    remote_tokenizers: Mapping[str, str] = field(default_factory=dict)  # name -> a local tokenizer folder
    remote_api_key: str | None = field(default=None, repr=False)  # sent as a bearer token; never shown
    # name -> its own key, for servers that each want theirs (the config file's api_key_env);
    # the others get remote_api_key. Never shown.
    remote_api_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    remote_timeout_s: float = 30.0  # the longest a server may stay silent (connect, first token, between)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", MappingProxyType(dict(self.models)))
        object.__setattr__(self, "engines", MappingProxyType(dict(self.engines)))
        object.__setattr__(self, "remote_flavours", MappingProxyType(dict(self.remote_flavours)))
        object.__setattr__(self, "remote_tokenizers", MappingProxyType(dict(self.remote_tokenizers)))
        object.__setattr__(self, "remote_api_keys", MappingProxyType(dict(self.remote_api_keys)))
        problems = self._remote_problems()
        for name, spec in self.models.items():
            if is_remote(spec):
                continue  # checked by _remote_problems (a URL may hold a colon after its path)
            try:
                split_task(spec)  # `source:task` forces a task; the task must be one there is
            except ValueError as exc:
                problems.append(f"model `{name}`: {exc}")
        for name, engine in self.engines.items():
            if name not in self.models:
                problems.append(f"engine given for `{name}`, which is not in the catalog")
            elif engine not in ENGINES:
                problems.append(f"engine for `{name}` must be one of {', '.join(ENGINES)}, got {engine!r}")
            elif engine == "llama.cpp" and not is_gguf(self.models[name]):
                problems.append(
                    f"engine llama.cpp for `{name}` needs a .gguf source, not `{self.models[name]}`"
                )
        if self.llama_priority not in PRIORITIES:
            problems.append(f"llama_priority must be one of {', '.join(PRIORITIES)}")
        if self.llama_context < 64:
            problems.append("llama_context must be at least 64 tokens")
        if self.default_model not in self.models:
            problems.append(f"default model `{self.default_model}` is not in the catalog")
        if self.fill_model is not None and self.fill_model not in self.models:
            problems.append(f"fill model `{self.fill_model}` is not in the catalog")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not 1 <= self.max_new_tokens_cap <= MAX_NEW_TOKENS_LIMIT:
            problems.append(f"max_new_tokens_cap must be in [1, {MAX_NEW_TOKENS_LIMIT}]")
        if self.queue_limit < 1:
            problems.append("queue_limit must be at least 1")
        if self.threads < 0:
            problems.append("threads must be 0 (torch's choice) or more")
        if self.max_batch_size < 1:
            problems.append("max_batch_size must be at least 1")
        if self.request_timeout_s <= 0:
            problems.append("request_timeout_s must be positive")
        if problems:
            raise ValueError("; ".join(problems))

    def _remote_problems(self) -> list[str]:
        """What is wrong with the remote models' entries and settings, each naming its entry."""
        problems = []
        for name, spec in self.models.items():
            if is_remote(spec):
                try:
                    parse_remote(spec)
                except ValueError as exc:
                    problems.append(f"model `{name}`: {exc}")
        for name, engine in self.engines.items():
            spec = self.models.get(name, "")
            if engine == "remote" and name in self.models and not is_remote(spec):
                problems.append(f"engine remote for `{name}` needs a server's http(s) URL, not `{spec}`")
            elif engine == "transformers" and is_remote(spec):
                problems.append(
                    f"`{name}` is a server's URL (`{spec}`): its engine is remote, not transformers"
                )
        settings = (
            ("flavour", self.remote_flavours),
            ("tokenizer", self.remote_tokenizers),
            ("api key", self.remote_api_keys),
        )
        for setting, values in settings:
            for name, value in values.items():
                if not is_remote(self.models.get(name, "")):
                    problems.append(
                        f"remote {setting} given for `{name}`, which is not a server's URL in the catalog"
                    )
                elif setting == "flavour" and value not in FLAVOURS:
                    problems.append(
                        f"flavour for `{name}` must be one of {', '.join(FLAVOURS)}, got {value!r}"
                    )
        if self.remote_timeout_s <= 0:
            problems.append("remote_timeout_s must be positive")
        return problems
