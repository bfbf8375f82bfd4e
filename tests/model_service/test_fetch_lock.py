"""One fetch into a models dir at a time (``model_service.fetch``'s lock, a filelock).

No torch and no network here: the download and conversion are replaced by stand-ins that write
the files a finished fetch leaves, so what is tested is the lock and the check after it. The
conversion itself is tested in test_fetch.py.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from model_service import fetch, wheels
from model_service.fetch import DEFAULT_MODEL_NAME, REQUIRED_FILES

GGUF_BYTES = b"GGUF stand-in: the lock test never converts it"


def write_finished_fetch(models_dir: Path, gguf: Path) -> None:
    """What a fetch leaves behind: the folder with its marker, and the GGUF it came from beside it."""
    partial = models_dir / f".{DEFAULT_MODEL_NAME}.partial-test"
    partial.mkdir(parents=True)
    fake_convert(gguf, partial, lambda _line: None)
    fetch._write_marker(partial, source="test", gguf_sha256=wheels.sha256(gguf))
    partial.rename(fetch.model_folder(models_dir))
    fetch.kept_gguf_path(models_dir).write_bytes(gguf.read_bytes())


def fake_convert(gguf: Path, out: Path, log: fetch.Log) -> None:
    for name in REQUIRED_FILES:
        (out / name).write_text(f"{name} from {gguf.name}")


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "given.gguf"
    path.write_bytes(GGUF_BYTES)
    return path


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_two_threads_fetching_at_once_download_once(
    tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both start before either has a model; one downloads, the other waits and finds it done."""
    models_dir = tmp_path / "models"
    downloads: list[str] = []
    both_started = threading.Barrier(2)

    def obtain(from_file: Path | None, download_dir: Path, log: fetch.Log) -> tuple[Path, str, str]:
        downloads.append(threading.current_thread().name)
        time.sleep(0.5)  # long enough for the other thread to reach the lock
        copy = download_dir / "model.gguf"
        copy.write_bytes(GGUF_BYTES)
        return copy, "test", wheels.sha256(copy)

    monkeypatch.setattr(fetch, "_obtain_gguf", obtain)
    monkeypatch.setattr(fetch, "_convert", fake_convert)
    monkeypatch.setattr(fetch, "_verify", lambda folder, log: None)
    logs: dict[str, list[str]] = {"a": [], "b": []}
    results: dict[str, Path] = {}

    def run(name: str) -> None:
        both_started.wait()
        results[name] = fetch.ensure_default_model(models_dir, log=logs[name].append)

    threads = [threading.Thread(target=run, args=(name,), name=name) for name in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(downloads) == 1
    assert results == dict.fromkeys(logs, fetch.model_folder(models_dir))
    waited = next(name for name in logs if name not in downloads)
    assert any("waiting for it to finish" in line for line in logs[waited])
    assert any("by another fetch meanwhile" in line for line in logs[waited])
    assert fetch.folder_problem(fetch.model_folder(models_dir)) is None


HOLDER = """
import sys
from filelock import FileLock

with FileLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_fetch_waits_for_another_process_and_then_uses_its_model(
    tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the lock (a fetch under way elsewhere, e.g. a second container on the
    same models volume): this one waits, and once that one is done it downloads nothing."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()

    def no_download(*_args: object) -> None:
        raise AssertionError("downloaded although another process had set the model up")

    monkeypatch.setattr(fetch, "_obtain_gguf", no_download)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(fetch.lock_path(models_dir))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lines: list[str] = []
        result: list[Path] = []
        waiter = threading.Thread(
            target=lambda: result.append(fetch.ensure_default_model(models_dir, log=lines.append))
        )
        waiter.start()
        wait_for(lambda: any("waiting for it to finish" in line for line in lines))
        time.sleep(0.2)
        assert waiter.is_alive() and not result  # still waiting: the other process holds the lock

        write_finished_fetch(models_dir, gguf)  # what the other process's fetch leaves
        assert holder.stdin is not None
        holder.stdin.write("done\n")
        holder.stdin.flush()
        waiter.join(30)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(10)
    assert result == [fetch.model_folder(models_dir)]
    assert lines[-1].endswith("by another fetch meanwhile; nothing to do.")


def test_a_stuck_holder_is_named_after_the_wait(
    tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    monkeypatch.setattr(wheels, "LOCK_WAIT_S", 0.2)
    from filelock import FileLock

    with FileLock(fetch.lock_path(models_dir)):
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                fetch.ensure_default_model(models_dir, from_file=gguf, log=lambda _line: None)
            except fetch.FetchError as error:
                outcome.append(error)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)
    assert len(outcome) == 1 and "Another fetch has been working in" in str(outcome[0])
