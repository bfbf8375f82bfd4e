"""The playground saves each picture the bot attaches to a file once, and leaves other files be."""

from __future__ import annotations

from pathlib import Path

from app.playground.pictures import PictureSaver
from loopback.records import FileRecord, MessageRecord, Version

PNG = b"\x89PNG\r\n\x1a\n" + b"rest"


def message(*files: FileRecord) -> MessageRecord:
    record = MessageRecord(id=1, channel_id=2, guild_id=None, author_id=3, kind="original")
    record.versions.append(Version("", (), files, (), 0, None, 0.0))
    return record


def test_each_picture_is_saved_once_with_its_alt_text(tmp_path: Path) -> None:
    saver = PictureSaver(tmp_path / "pictures")
    picture = FileRecord(7, "next-token.png", PNG, "image/png", "Bar chart: …")
    text = FileRecord(8, "notes.txt", b"hello", "text/plain")
    [(path, alt)] = saver.save([message(picture, text)])
    assert path == tmp_path / "pictures" / "7-next-token.png" and path.read_bytes() == PNG
    assert alt == "Bar chart: …"
    assert saver.save([message(picture, text)]) == []  # shown again: not saved again
