"""The throughput benchmark, on the tiny GPT-2 with tiny workloads: both paths run, the JSON line holds."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import discord
import pytest

from benchmarks import memory, rival, throughput
from benchmarks.measure import Summary

pytestmark = pytest.mark.timeout(180)


async def test_benchmark_runs_both_paths_and_ends_with_the_json_line(tiny_gpt2_dir: Path) -> None:
    addresses = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    options = throughput.Options(
        model_dir=tiny_gpt2_dir,
        channels=3,
        max_new_tokens=8,
        b_requests=3,
        b_interval=0.5,
        budget_s=None,
        memory=False,  # measured on its own below
        engine="transformers",
    )
    started = time.monotonic()
    report = await throughput.run_benchmark(options, started)
    output = throughput.render(report)

    data = json.loads(output.splitlines()[-1])
    for key in throughput.REQUIRED_KEYS:
        assert isinstance(data[key], int | float) and data[key] > 0, (key, data[key])
    assert data["cold_start_s"] < time.monotonic() - started
    # Figures differ from one CPU to the next: the report says which CPU and which speed flags.
    assert data["cpu"]["model"] and set(data["cpu"]["flags"]) <= set(throughput.SPEED_FLAGS)
    assert f"CPU: {data['cpu']['model']} · flags: " in output
    for name, count in (("A", 3), ("B", 3)):
        workload = data["workloads"][name]
        batched, naive = workload["batched"], workload["naive"]
        assert batched["requests"] == naive["requests"] == count
        assert not workload["capped"]
        # Each of the 3 requests wrote something, within the token limit, down both paths.
        assert count <= batched["tokens"] <= count * 8 and count <= naive["tokens"] <= count * 8
        assert batched["tok_s"] > 0 and naive["tok_s"] > 0 and batched["ttft_p95_s"] > 0
        assert batched["defer_p99_ms"] > 0 and naive["defer_p99_ms"] is None
    fills = data["workloads"]["C"]
    assert fills["batched"]["requests"] == fills["naive"]["requests"] == 3
    assert fills["batched"]["tokens"] == 0 and fills["batched"]["req_s"] > 0 and fills["naive"]["req_s"] > 0
    assert data["fill_speedup"] == pytest.approx(
        fills["batched"]["req_s"] / fills["naive"]["req_s"], rel=1e-3
    )
    assert "Workload A" in output and "Workload B" in output and "tokens/s" in output and "fills/s" in output

    # One request alone, for the ratio against the rival; the rival itself needs a GGUF of this model.
    assert data["workloads"]["1"]["batched"]["requests"] == 1
    assert data["rival"] is None and data["vs_rival"] is None
    assert data["rival_note"] == f"no GGUF for {tiny_gpt2_dir.name} (give one with --gguf PATH)"
    assert f"Rival: not measured: {data['rival_note']}" in output

    quiet = throughput.render(report, json_only=True)
    assert quiet.count("\n") == 0 and json.loads(quiet) == data
    # The bot is stopped and discord.py points back where it did.
    assert (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == addresses


async def test_benchmark_runs_the_bot_on_llama_cpp_against_the_rival(tiny_gguf_path: Path) -> None:
    options = throughput.Options(
        model_dir=tiny_gguf_path.parent,
        gguf=tiny_gguf_path,
        channels=2,
        max_new_tokens=8,
        b_requests=2,
        b_interval=0.5,
        budget_s=None,
        memory=False,
        engine="llama.cpp",
    )
    report = await throughput.run_benchmark(options, time.monotonic())
    output = throughput.render(report)

    data = json.loads(output.splitlines()[-1])
    assert (
        data["engine"] == "llama.cpp"
        and data["dtype"] == "F32"
        and data["naive_dtype"] in ("float32", "bfloat16")
    )
    size = await asyncio.to_thread(os.path.getsize, tiny_gguf_path)
    assert data["weights_mb"] == pytest.approx(size / 1e6, rel=1e-3)
    assert (
        data["workloads"]["A"]["batched"]["requests"] == 2 and data["workloads"]["A"]["batched"]["tokens"] > 0
    )
    rival_report = data["rival"]
    assert rival_report is not None
    for key in ("together_tok_s", "same_together_tok_s", "same_alone_tok_s", "busy_together_tok_s"):
        assert rival_report[key] > 0, key
    # The bot in channels that set nothing, at once, alone, and beside a busy process.
    assert {name: data["defaults"][name]["requests"] for name in data["defaults"]} == {
        "together": 2,
        "alone": 1,
        "busy": 2,
    }
    ratios = data["vs_rival"]
    assert set(ratios) == {
        "together",
        "together_same_sampling",
        "alone_same_sampling",
        "bot_busy_over_idle",
        "rival_busy_over_idle",
    }
    assert ratios["together"] == pytest.approx(
        data["defaults"]["together"]["tok_s"] / rival_report["together_tok_s"], rel=1e-3
    )
    assert all(value > 0 for value in ratios.values())
    assert "on llama.cpp (F32" in output and "2 at once beside a busy process" in output


@pytest.mark.timeout(120)
def test_memory_on_llama_cpp_counts_the_gguf_as_the_weights(
    tiny_gpt2_dir: Path, tiny_gguf_path: Path
) -> None:
    report = memory.measure(tiny_gpt2_dir, gguf=tiny_gguf_path)
    assert report.engine == "llama.cpp" and report.dtype == "F32"
    assert report.weights_mb == pytest.approx(tiny_gguf_path.stat().st_size / 1e6, rel=1e-3)
    assert report.served_peak_mb >= report.served_rss_mb


def _summary(requests: int, tok_s: float, latency: float, service: float | None) -> Summary:
    return Summary(
        requests, requests * 64, 10.0, tok_s, requests / 10.0, 1.0, 2.0, latency, None, 1.0, service
    )


def test_workload_b_is_shortened_for_both_paths_only_when_the_budget_needs_it() -> None:
    a = throughput.WorkloadReport("A", "", _summary(8, 40.0, 10.0, None), _summary(8, 10.0, 40.0, 5.0), 8)
    options = throughput.Options(budget_s=270.0)
    now = 100.0
    # 170 s left: 30 requests would need ~30 s + 10 s + 150 s of naive generate() calls.
    count = throughput.plan_b(options, a, now, origin=0.0)
    assert 2 <= count < 30
    assert throughput.plan_b(throughput.Options(budget_s=None), a, now, origin=0.0) == 30
    assert throughput.plan_b(throughput.Options(budget_s=1000.0), a, now, origin=0.0) == 30


@pytest.mark.timeout(120)
def test_memory_stages_measure_the_models_share(tiny_gpt2_dir: Path) -> None:
    report = memory.measure(tiny_gpt2_dir)
    assert report.runtime_mb > 100  # torch and transformers alone are more
    assert report.served_peak_mb >= report.served_rss_mb > report.runtime_mb
    assert report.weights_mb > 0 and report.dtype in ("float32", "bfloat16")
    assert report.ratio == pytest.approx((report.served_rss_mb - report.runtime_mb) / report.weights_mb)
    assert report.as_dict()["peak_ratio"] >= report.as_dict()["ratio"]


def test_the_rival_says_in_a_line_why_it_could_not_run(tmp_path: Path) -> None:
    not_a_model = tmp_path / "broken.gguf"
    not_a_model.write_bytes(b"GGUF but not really")
    found = rival.measure(not_a_model, slots=2, threads=1, max_new_tokens=4, timeout=120)
    if rival.unavailable() is not None:
        assert found == "xllamacpp is not installed (`make setup` installs it)"
    else:
        assert isinstance(found, str) and found.startswith("llama-server failed (exit 1): "), found


async def test_the_shards_benchmark_runs_both_paths_and_checks_what_they_share() -> None:
    from benchmarks import shards
    from benchmarks.workloads import DEFAULT_MODEL_DIR
    from tests.storage.backends import postgres_server

    if not DEFAULT_MODEL_DIR.exists():
        pytest.skip(f"the default model is not set up ({DEFAULT_MODEL_DIR}); make setup does it")
    addresses = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    report = await shards.run(2, 4, 2, postgres_server())
    assert report["engine_tokens"] > 0 and report["bots_tokens"] > 0 and report["bots_vs_engine"] > 0
    assert report["answered_by_shard"] == {"0": 1, "1": 1}
    assert report["settings_agree"] and report["limit_held"]
    assert json.loads(shards.render(report).splitlines()[-1]) == report
    assert (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == addresses
