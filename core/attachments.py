"""Text files attached to a message or a command, read as part of what a member said.

A file is read when it is text: a known text suffix or a ``text/*`` (or JSON, XML, YAML) content
type, UTF-8, at most :data:`MAX_FILE_BYTES`. Anything else — an image, a binary, a file too
big — is skipped with a short notice naming it and why, shown above the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import discord

from core import render

MAX_FILE_BYTES = 32_000  # a file's size at most; the prompt's own limit cuts what is read further
MAX_FILES = 5
TEXT_SUFFIXES = frozenset(
    ".txt .md .markdown .rst .py .pyi .js .ts .jsx .tsx .json .jsonl .csv .tsv .yaml .yml .toml .ini .cfg "
    ".xml .html .css .sql .sh .bash .c .h .cpp .hpp .cs .java .kt .go .rs .rb .php .lua .swift .log "
    ".tex .srt .vtt".split()
)
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-yaml", "application/yaml")


@dataclass(frozen=True)
class ReadFiles:
    texts: tuple[tuple[str, str], ...] = ()  # (file name, its text)
    skipped: tuple[str, ...] = ()  # "photo.png (not a text file)"

    def into(self, message: str, limit: int) -> str:
        """``message`` with each file's text after it, cut so the whole stays within ``limit``."""
        out = message
        for name, text in self.texts:
            block = f"\n\n--- {name} ---\n"
            room = limit - len(out) - len(block)
            if room <= 0:
                break
            out += block + (text if len(text) <= room else text[: room - 1] + "…")
        return out

    def listing(self) -> str:
        """A line per file read, under the quoted message."""
        return "".join(f"-# 📎 {render.escape(name)}\n" for name, _ in self.texts)

    def notice(self) -> str:
        """A line above the answer naming what was skipped, or nothing."""
        return f"-# 📎 skipped: {', '.join(self.skipped)}\n" if self.skipped else ""


def is_text(attachment: discord.Attachment) -> bool:
    suffix = PurePosixPath(attachment.filename).suffix.lower()
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    return suffix in TEXT_SUFFIXES or kind.startswith(TEXT_TYPES)


async def read_files(attachments: Sequence[discord.Attachment]) -> ReadFiles:
    texts: list[tuple[str, str]] = []
    skipped: list[str] = []
    for i, attachment in enumerate(attachments):
        name = render.escape(attachment.filename)
        if i >= MAX_FILES:
            skipped.append(f"{name} (only {MAX_FILES} files are read)")
        elif not is_text(attachment):
            skipped.append(f"{name} (not a text file)")
        elif attachment.size > MAX_FILE_BYTES:
            skipped.append(
                f"{name} ({attachment.size // 1000} kB; files up to {MAX_FILE_BYTES // 1000} kB are read)"
            )
        else:
            try:
                raw = await attachment.read()
            except discord.HTTPException:
                skipped.append(f"{name} (could not be downloaded)")
                continue
            try:
                texts.append((render.safe(attachment.filename), raw.decode("utf-8")))
            except UnicodeDecodeError:
                skipped.append(f"{name} (not UTF-8 text)")
    return ReadFiles(tuple(texts), tuple(skipped))
