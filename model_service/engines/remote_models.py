"""The remote models of the catalog: each one's server (watched for /status), its local
tokenizer and local copy (``REMOTE_TOKENIZERS``), and the line /status shows for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from model_service.config import ServiceConfig
from model_service.engines import remote_client
from model_service.engines.remote_client import RemoteServer, ServerFacts
from model_service.engines.remote_loop import RemoteLoop
from model_service.engines.remote_requests import RemoteModel
from model_service.errors import ServiceError
from model_service.loading import load_tokenizer, parse_source
from model_service.remote_source import FLAVOUR, is_remote, parse_remote
from model_service.types import ModelInfo


class RemoteModels:
    """Every remote catalog model's server, tokenizer and local copy (the registry's remote part)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.loop = RemoteLoop()
        self._servers = {
            name: RemoteServer(
                name,
                parse_remote(spec),
                config.remote_flavours.get(name, "auto"),
                api_key=config.remote_api_keys.get(name, config.remote_api_key),
                timeout_s=config.remote_timeout_s,
                loop=self.loop,
            )
            for name, spec in config.models.items()
            if is_remote(spec)
        }
        self._folders = dict(config.remote_tokenizers)
        # Read once: /status asks on the event loop.
        self._weights = {name: _holds_weights(folder) for name, folder in self._folders.items()}
        self._tokenizers: dict[str, PreTrainedTokenizerBase] = {}
        self._lock = threading.Lock()
        self._watcher: Future[None] | None = None

    @property
    def names(self) -> list[str]:
        return list(self._servers)

    def start(self) -> None:
        """Begin watching the servers: a first look at once, then every ``PROBE_INTERVAL_S``
        (``DOWN_PROBE_S`` while one does not answer)."""
        if self._servers and self._watcher is None:
            self._watcher = self.loop.submit(self._watch())

    async def _watch(self) -> None:
        servers = list(self._servers.values())
        while True:
            await asyncio.gather(*(self._probe_quietly(s) for s in servers))
            down = any(s.health.state != "reachable" for s in servers)
            await asyncio.sleep(remote_client.DOWN_PROBE_S if down else remote_client.PROBE_INTERVAL_S)

    @staticmethod
    async def _probe_quietly(server: RemoteServer) -> None:
        with contextlib.suppress(ServiceError):  # its health says what went wrong
            await server.probe()

    def server(self, name: str) -> RemoteServer:
        return self._servers[name]

    def facts(self, name: str) -> ServerFacts:
        """Blocking (on the executor): what the server serves, asked once; raises if unreachable."""
        return self.loop.call(self._servers[name].ensure_facts())

    def preload(self, name: str) -> None:
        """At start: the tokenizer (a bad folder stops the start), and one look at the server,
        which may be down: the bot starts anyway and /status says so."""
        self.tokenizer(name)
        self.loop.call(self._probe_quietly(self._servers[name]))

    def tokenizer(self, name: str) -> PreTrainedTokenizerBase | None:
        folder = self._folders.get(name)
        if folder is None:
            return None
        with self._lock:
            if name not in self._tokenizers:
                self._tokenizers[name] = load_tokenizer(name, parse_source(folder))
            return self._tokenizers[name]

    def prompt_model(self, name: str, facts: ServerFacts) -> RemoteModel | None:
        tokenizer = self.tokenizer(name)
        if tokenizer is None:
            return None
        limit = getattr(tokenizer, "model_max_length", 0)
        context = facts.context or (limit if 0 < limit < 1_000_000 else 2048)
        return RemoteModel(name, tokenizer, context)

    def has_weights(self, name: str) -> bool:
        """Whether the local folder holds the model itself (it can then fill where the server can't)."""
        return self._weights.get(name, False)

    def infos(self) -> tuple[ModelInfo, ...]:
        """/status's line for each remote model: where it is, what it is, whether it answers."""
        return tuple(self._info(name, server) for name, server in self._servers.items())

    def _info(self, name: str, server: RemoteServer) -> ModelInfo:
        facts, health = server.facts, server.health
        flavour = facts.flavour if facts else FLAVOUR.get(server.flavour_setting)
        if health.state == "unreachable":
            ago = time.monotonic() - health.at
            task = (
                f"unreachable ({health.detail}, {ago:.0f} s ago): its requests are refused until it answers"
            )
        elif health.state == "unknown":
            task = "not reached yet"
        elif facts is not None and facts.flavour.prompt_logprobs:
            task = "generate, fill-mask"
        else:
            task = "generate, fill-mask (on the local copy)" if self.has_weights(name) else "generate"
        served = (facts.model_id if facts else None) or server.source.model_id or "?"
        return ModelInfo(
            name=name,
            source=server.source.label,
            task=task,
            device=server.url,
            dtype=Path(served).name if served.endswith(".gguf") else served,
            parameters=(facts.parameters if facts else None) or 0,
            engine=f"{flavour.label} server" if flavour else "remote server",
        )

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        self.loop.close()


def _holds_weights(folder: str) -> bool:
    path = Path(folder).expanduser()
    return (path / "config.json").is_file() and any(
        any(path.glob(pattern)) for pattern in ("*.safetensors", "pytorch_model*.bin")
    )
