"""The container files read as text: no image is built here (there is no container daemon), so
these check what can be checked without one. compose.yaml has the bot, PostgreSQL with a
healthcheck the bot waits for, and only settings that .env.example documents; the Dockerfile's
healthcheck, its METRICS_PORT, compose's and Prometheus's agree. ``make check`` also runs
hadolint on the Dockerfile."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")  # ${KEY}, ${KEY:-default}, ${KEY?error}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    # Instructions joined across their line continuations.
    return re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())


def documented_keys() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.MULTILINE))


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment``, in either of compose's spellings (mapping or KEY=value list)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.partition("=")[::2] for item in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def test_the_bot_runs_beside_postgres_and_waits_for_it_to_be_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    bot, postgres = services["bot"], services["postgres"]
    assert bot["build"] == "." and bot["restart"] == "unless-stopped" and bot["env_file"] == ".env"
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert postgres["image"].startswith("postgres:") and postgres["restart"] == "unless-stopped"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    # The URL names the service, the user and the database PostgreSQL is started with.
    pg_env = environment(postgres)
    url = environment(bot)["DATABASE_URL"]
    assert f"@postgres:5432/{pg_env['POSTGRES_DB']}" in url
    assert f"//{pg_env['POSTGRES_USER']}:" in url
    volumes = {entry.split(":")[1] for entry in bot["volumes"]}
    assert {"/data", "/data/models"} <= volumes
    assert set(compose["volumes"]) >= {entry.split(":")[0] for entry in bot["volumes"]}


def test_the_bot_is_given_only_settings_env_example_documents(compose: dict[str, Any]) -> None:
    bot = compose["services"]["bot"]
    given = set(environment(bot))
    referenced = set(REFERENCE.findall(yaml.safe_dump(bot)))
    documented = documented_keys()
    assert given and given <= documented, given - documented
    assert referenced <= documented, referenced - documented
    # The paths are the image's volumes, not .env's working-directory defaults.
    env = environment(bot)
    assert env["MODELS_DIR"] == "/data/models" and env["DATABASE_PATH"] == "/data/transcord.sqlite3"


def test_the_llama_server_profile_serves_the_default_gguf_from_the_models_volume(
    compose: dict[str, Any],
) -> None:
    server = compose["services"]["llama-server"]
    assert server["profiles"] == ["llama-server"]
    assert server["image"] == "ghcr.io/ggml-org/llama.cpp:server"
    assert "models:/models:ro" in server["volumes"]
    model = server["command"][server["command"].index("--model") + 1]
    assert model == "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    # The bot's entrypoint fetches the GGUF before the bot turns healthy.
    assert server["depends_on"]["bot"]["condition"] == "service_healthy"
    assert "llama-server" not in compose["services"]["bot"].get("depends_on", {})


def test_the_healthcheck_port_is_the_metrics_port_everywhere(
    compose: dict[str, Any], dockerfile: str
) -> None:
    image_env = dict(re.findall(r"\b([A-Z][A-Z0-9_]*)=(\S+)", _instruction(dockerfile, "ENV PATH")))
    port = image_env["METRICS_PORT"]
    assert image_env["METRICS_HOST"] == "0.0.0.0"
    healthcheck = _instruction(dockerfile, "HEALTHCHECK")
    assert re.search(rf"127\.0\.0\.1:' \+ \(os\.environ\.get\('METRICS_PORT'\) or '{port}'\)", healthcheck)
    assert "/healthz" in healthcheck
    assert f"EXPOSE {port}" in dockerfile
    bot = compose["services"]["bot"]
    assert environment(bot)["METRICS_PORT"] == port and environment(bot)["METRICS_HOST"] == "0.0.0.0"
    assert f"127.0.0.1:{port}:{port}" in bot["ports"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"bot:{port}"]


def test_the_image_runs_the_bot_as_a_user_with_its_data_in_the_volume(dockerfile: str) -> None:
    assert re.search(r"^USER (?!0\b|root\b)\S+", dockerfile, re.MULTILINE)
    assert 'CMD ["python", "bot.py"]' in dockerfile
    assert "torch==2.13.0" in dockerfile and "https://download.pytorch.org/whl/cpu" in dockerfile
    image_env = dict(re.findall(r"\b([A-Z][A-Z0-9_]*)=(\S+)", _instruction(dockerfile, "ENV PATH")))
    assert image_env["MODELS_DIR"] == "/data/models"
    assert image_env["DATABASE_PATH"] == "/data/transcord.sqlite3"
    assert (ROOT / "deploy" / "entrypoint.sh").stat().st_mode & 0o111


def test_the_dashboard_reads_only_metrics_the_bot_serves() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    names = {n for expr in exprs for n in re.findall(r"\b(transcord_[a-z_]+)", expr)}
    served = (ROOT / "app" / "metrics.py").read_text()
    for name in names:
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert f'"{base}"' in served, name


def _instruction(dockerfile: str, start: str) -> str:
    lines = [line for line in dockerfile.splitlines() if line.startswith(start)]
    assert len(lines) == 1, (start, lines)
    return lines[0]
