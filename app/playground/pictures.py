"""The pictures the bot attaches (``/next``, ``/tokenize``, ``/generate show: probabilities``), saved
where a terminal can't show them: each image to a file of its own, its path printed with its alt text.

The files go to one folder per session, made at the first picture, in the system's temporary
folder (or ``folder``); a picture is saved once, however often its message is shown.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from loopback.records import FileRecord, MessageRecord

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")


def is_picture(file: FileRecord) -> bool:
    kind = (file.content_type or "").split(";")[0].strip().lower()
    return kind.startswith("image/") or PurePosixPath(file.filename).suffix.lower() in IMAGE_SUFFIXES


class PictureSaver:
    """Saves each picture attachment once; ``save`` returns ``(path, alt text)`` of those new."""

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder
        self._saved: set[int] = set()

    @property
    def folder(self) -> Path:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="transcord-pictures-"))
        self._folder.mkdir(parents=True, exist_ok=True)
        return self._folder

    def save(self, messages: Iterable[MessageRecord]) -> list[tuple[Path, str]]:
        saved = []
        for message in messages:
            if message.deleted:
                continue
            for file in message.attachments:
                if file.id in self._saved or not is_picture(file):
                    continue
                name = PurePosixPath(file.filename).name or "picture.png"
                path = self.folder / f"{file.id}-{name}"
                path.write_bytes(file.data)
                self._saved.add(file.id)
                saved.append((path, file.description or ""))
        return saved
