"""The scaling benchmark: each level through the whole bot and through llama-server, a table, a
plot and one JSON line, in one run (on a tiny GGUF, so it takes seconds)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from benchmarks import rival, scaling


@pytest.mark.timeout(240)
def test_each_level_is_measured_on_both_and_plotted(
    tiny_gguf_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if rival.unavailable() is not None:
        pytest.skip(rival.unavailable())
    picture = tmp_path / "scaling.png"
    argv = ["--gguf", str(tiny_gguf_path), "--levels", "1,3", "--max-new-tokens", "4", "--slots", "2"]
    # main() sets log levels as a command does; the other tests need them as they were.
    levels = {name: logging.getLogger(name).level for name in ("discord", "benchmarks.scaling")}
    try:
        assert scaling.main([*argv, "--threads", "1", "--plot", str(picture)]) == 0
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    for side in ("bot", "llama_server"):
        levels = report[side]
        assert [level["requests"] for level in levels] == [1, 3]  # 3 is more than the 2 slots: queued
        for level in levels:
            assert level["tokens"] > 0 and level["tok_s"] > 0
            assert 0 < level["first_p50_s"] <= level["first_p95_s"] <= level["last_p95_s"]
    assert report["cpu"]["model"] and "ratio" in out and f"plot: {picture}" in out
    assert picture.read_bytes().startswith(b"\x89PNG")
