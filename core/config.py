"""What the bot runs with: one frozen dataclass, built once by :func:`app.environment.load_config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from model_service.config import ServiceConfig


@dataclass(frozen=True)
class BotConfig:
    token: str | None = field(default=None, repr=False)  # never printed
    guild_ids: tuple[int, ...] = ()
    api_base: str | None = None
    gateway_url: str | None = None
    database_path: Path = Path("data/transcord.sqlite3")
    database_url: str | None = field(default=None, repr=False)  # Postgres; it may hold a password
    models_dir: Path = Path("models")
    service: ServiceConfig = field(default_factory=ServiceConfig)
    default_max_new_tokens: int = 128
    stream_edit_interval_s: float = 1.0
    shutdown_grace_s: float = 10.0
    log_level: str = "INFO"
    force_sync: bool = False
    # Discord's Message Content intent (privileged; enabled in the developer portal first): the
    # text of every message, for channels that `listen: all`. Without it, mentions and replies only.
    message_content: bool = False
    shard_count: int | None = None  # None: one unsharded connection
    shard_ids: tuple[int, ...] = ()  # this process's shards (all of them when sharded and unset)
    # /metrics, /healthz and /readyz (app/metrics.py) on this port; None: no such server. Bound to
    # the loopback unless metrics_host says otherwise (0.0.0.0 inside a container).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    @property
    def token_set(self) -> bool:
        return bool(self.token)

    @property
    def elsewhere(self) -> bool:
        """True: a Discord-compatible server of its own (both addresses set); False: Discord itself."""
        return self.api_base is not None and self.gateway_url is not None
