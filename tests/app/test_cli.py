"""``transcord``, the installed command: its help, check-config, migrate, and what it passes through."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli

ROOT = Path(__file__).resolve().parents[2]
TRANSCORD = Path(sys.executable).parent / "transcord"  # `pip install -e .` (make setup) puts it there
TOKEN = "MTAxOTk.cli-secret.token"
KEY = "sk-or-v1-cli-secret"
SHARED = "sk-shared-cli-secret"
PASSWORD = "pg-cli-secret"
SECRETS = (TOKEN, KEY, SHARED, PASSWORD)

pytestmark = pytest.mark.skipif(not TRANSCORD.exists(), reason="no transcord script: run `make setup`")


def transcord(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "COLUMNS": "80", **env}
    return subprocess.run(
        [str(TRANSCORD), *args], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_command_on_one_line(tmp_path: Path) -> None:
    done = transcord(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in ("run", "playground", "fetch", "check-config", "migrate", "bench"):
        (line,) = [line for line in lines if line.split()[:1] == [name]]
        assert len(line.split()) > 3, line  # its name, then what it does, on the same line


def test_check_config_prints_the_settings_and_no_secret(tmp_path: Path) -> None:
    (tmp_path / "transcord.toml").write_text(
        '[settings]\nqueue_limit = 64\n\n[models.local]\nsource = "models/a"\n\n'
        '[models.qwen]\nurl = "http://10.0.0.5:8000/v1"\napi_key_env = "QWEN_KEY"\n\n'
        '[models.llama]\nurl = "http://10.0.0.6:8000/v1"\n'
    )
    (tmp_path / ".env").write_text(f"QWEN_KEY={KEY}\nMAX_BATCH_SIZE=4\n")
    done = transcord(
        tmp_path,
        "check-config",
        DISCORD_TOKEN=TOKEN,
        REMOTE_API_KEY=SHARED,
        DATABASE_URL=f"postgresql://bot:{PASSWORD}@db.example:5432/transcord",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "config file: transcord.toml" in out and "queue_limit: 64" in out and "max_batch_size: 4" in out
    assert "discord token: set" in out
    assert "database: PostgreSQL postgresql://bot@db.example:5432/transcord" in out
    assert "qwen = http://10.0.0.5:8000/v1 (engine auto, flavour auto, API key from QWEN_KEY)" in out
    assert "llama = http://10.0.0.6:8000/v1 (engine auto, flavour auto, API key from REMOTE_API_KEY)" in out
    assert not any(secret in out + done.stderr for secret in SECRETS)


def test_check_config_exits_2_with_the_message(tmp_path: Path) -> None:
    (tmp_path / "custom.toml").write_text('[models.smollm2]\nsource = "m.gguf"\nengine = "gpu"\n')
    done = transcord(tmp_path, "check-config", "--config", "custom.toml", DISCORD_TOKEN=TOKEN)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "configuration error: custom.toml: [models.smollm2] engine must be one of auto, transformers, "
        "llama.cpp, remote, got 'gpu'\n"
    )
    bad_env = transcord(tmp_path, "check-config", QUEUE_LIMIT=TOKEN, DISCORD_TOKEN=TOKEN)
    assert bad_env.returncode == 2 and bad_env.stderr.startswith("configuration error: QUEUE_LIMIT")
    assert TOKEN not in bad_env.stderr


def test_migrate_creates_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "db" / "t.sqlite3"
    (tmp_path / "transcord.toml").write_text(f'[settings]\ndatabase_path = "{path}"\n')
    done = transcord(tmp_path, "migrate", DISCORD_TOKEN=TOKEN)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"SQLite {path}: up to date (schema version ")
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"settings", "meta", "stories", "replies"} <= tables
    assert TOKEN not in done.stdout + done.stderr


def test_migrate_says_why_a_database_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = transcord(tmp_path, "migrate", DATABASE_PATH=str(tmp_path / "file" / "t.sqlite3"))
    assert done.returncode == 2
    assert done.stderr.startswith(f"could not open the database {tmp_path / 'file' / 't.sqlite3'} (")


def test_bot_py_reads_the_config_file_too(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text("[settings]\nqueue_limit = 0\n")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--config", "t.toml"],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == "configuration error: t.toml: [settings] queue_limit must be in [1, 4096], got 0\n"


# -- the pass-through commands, in process ----------------------------------------------------------


def test_fetch_sets_up_the_model_where_the_bot_will_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(cli.fetcher, "main", lambda args: calls.append(list(args)) or 0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODELS_DIR", raising=False)
    monkeypatch.delenv("TRANSCORD_CONFIG", raising=False)
    (tmp_path / "transcord.toml").write_text('[settings]\nmodels_dir = "/srv/models"\n')
    assert cli.main(["fetch", "--check-only"]) == 0
    assert cli.main(["fetch", "--models-dir", "elsewhere"]) == 0
    assert calls == [["--models-dir", "/srv/models", "--check-only"], ["--models-dir", "elsewhere"]]


def test_bench_runs_the_benchmark_with_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        assert str(ROOT) in env["PYTHONPATH"].split(os.pathsep)
        ran.append(argv[1:])

    monkeypatch.setattr(cli.os, "execve", execve)
    cli.main(["bench", "--quick", "--json-only"])
    assert ran == [["-m", "benchmarks.throughput", "--quick", "--json-only"]]


def test_other_commands_refuse_unknown_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["check-config", "--quick"])
    assert caught.value.code == 2 and "unrecognized arguments: --quick" in capsys.readouterr().err
