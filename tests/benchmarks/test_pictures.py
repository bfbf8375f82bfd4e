"""``python -m benchmarks.pictures``: every picture is timed, each at its largest (nothing is timed here)."""

from __future__ import annotations

import pytest

from benchmarks import pictures as bench


def test_the_benchmark_draws_every_picture_at_its_largest() -> None:
    jobs = bench.jobs()
    assert set(jobs) == {
        "next_token_chart (20 bars)",
        "tokens_picture (its most glyphs)",
        "sureness_picture (its most glyphs)",
        "similarity_heat_map (8 texts)",
        "status_chart (120 samples)",
    }
    for name, job in jobs.items():
        assert job().png.startswith(b"\x89PNG"), name
    assert set(bench.timings(1)) == set(jobs)


def test_the_report_names_the_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(["--repeat", "1"])
    out = capsys.readouterr().out
    assert out.startswith("CPU: ") and "flags: " in out
    assert out.count(": median ") == 5
