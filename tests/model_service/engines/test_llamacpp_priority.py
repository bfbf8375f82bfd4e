"""LLAMA_PRIORITY: llama.cpp's compute threads run real-time where the process may, and at normal
priority, said once, where it may not; the check itself changes no thread that goes on running."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from app.environment import ConfigError, load_config
from model_service.engines import llamacpp


def test_the_check_leaves_the_calling_thread_as_it_was() -> None:
    before = os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)
    llamacpp.realtime_allowed(llamacpp.FIFO_PRIORITY["high"])
    assert (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)) == before


def test_where_real_time_is_not_allowed_it_runs_at_normal_and_says_how_to_allow_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(llamacpp, "realtime_allowed", lambda level: False)
    with caplog.at_level(logging.WARNING):
        assert llamacpp.choose_priority("high") == "normal"
    assert "LLAMA_PRIORITY=high" in caplog.text and "CAP_SYS_NICE" in caplog.text
    assert "MODEL_THREADS" in caplog.text
    caplog.clear()
    assert llamacpp.choose_priority("normal") == "normal" and not caplog.text  # nothing to say


def test_where_it_is_allowed_the_wanted_priority_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    monkeypatch.setattr(llamacpp, "realtime_allowed", lambda level: asked.append(level) or True)
    assert [llamacpp.choose_priority(p) for p in ("medium", "high", "realtime")] == [
        "medium",
        "high",
        "realtime",
    ]
    assert asked == [40, 80, 90]  # the SCHED_FIFO levels ggml gives its threads


def test_the_setting_is_read_once_and_checked(tmp_path: Path) -> None:
    assert load_config({}).service.llama_priority == "normal"
    assert load_config({"LLAMA_PRIORITY": "high"}).service.llama_priority == "high"
    with pytest.raises(ConfigError, match="LLAMA_PRIORITY must be one of normal, medium, high, realtime"):
        load_config({"LLAMA_PRIORITY": "turbo"})
