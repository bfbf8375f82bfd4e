"""How long each picture takes to draw, at its largest (the goal: each under 200 ms).

    python -m benchmarks.pictures [--repeat N]

Each picture is drawn ``repeat`` times with the figures that make it biggest (20 bars, the most
glyphs a token picture draws, 8 texts, ten minutes of samples); the median is printed, with the
first drawing in the process (font loading) apart, and the CPU's model and SIMD flags, as the
figures differ from one machine to the next. Nothing is timed in the tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

from core import pictures
from model_service.types import StatusSample, TokenChance, TokenizeResult, TokenPiece

SIMD_FLAGS = ("avx", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "fma", "neon", "asimd")
SENTENCES = (
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The stock market fell sharply today.",
    "A woman is slicing an onion.",
    "Stocks dropped at the opening bell.",
    "A child rides a bicycle down the hill.",
    "Music fills the room as he strums.",
    "Vegetables are being chopped in the kitchen.",
)


def jobs() -> dict[str, Callable[[], pictures.Picture]]:
    """Each picture at its largest, ready to draw."""
    chances = [TokenChance(f" word{i}", i, 1 / (i + 2)) for i in range(20)]
    many = 400  # more than a picture draws: each is drawn at its largest
    reply = [TokenChance(f" w{i % 97}", i, (i % 10) / 10) for i in range(many)]
    pieces = tuple(TokenPiece(i, f"Ġt{i}", f" t{i}", (), False, 0, 0, 0) for i in range(many))
    result = TokenizeResult("model", pieces, tuple(range(many)), (1,) * many, None, 2048, None, "BPE", 1)
    n = len(SENTENCES)
    matrix = [[1.0 if i == j else ((i * 7 + j * 5) % 11) / 10 - 0.1 for j in range(n)] for i in range(n)]
    samples = [
        StatusSample(600 - 5 * i, 40 + 30 * ((i // 7) % 3), i % 4, None if i % 5 == 0 else 1.5 + (i % 3))
        for i in range(120)
    ]
    return {
        "next_token_chart (20 bars)": lambda: pictures.next_token_chart(
            "The capital of France is", chances, "m"
        ),
        "tokens_picture (its most glyphs)": lambda: pictures.tokens_picture(result),
        "sureness_picture (its most glyphs)": lambda: pictures.sureness_picture(reply, "m"),
        "similarity_heat_map (8 texts)": lambda: pictures.similarity_heat_map(
            SENTENCES, matrix, "minilm", "mean-pooled features"
        ),
        "status_chart (120 samples)": lambda: pictures.status_chart(samples, 5.0, 600.0),
    }


def timings(repeat: int = 10) -> dict[str, float]:
    """The median of ``repeat`` drawings of each picture, in milliseconds."""
    out = {}
    for name, job in jobs().items():
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            job()
            times.append(time.perf_counter() - started)
        out[name] = statistics.median(times) * 1000
    return out


def cpu() -> str:
    """The CPU's model, core count and SIMD flags (from /proc/cpuinfo where there is one)."""
    model: str = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    have = [flag for flag in SIMD_FLAGS if flag in flags]
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(have) or 'unknown'}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pictures", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="drawings of each picture (default 10)")
    args = parser.parse_args(argv)
    print(f"CPU: {cpu()}")
    first = time.perf_counter()
    pictures.next_token_chart("warm up", [TokenChance(" a", 1, 0.5)], "m")
    print(f"first picture in this process (font loading): {(time.perf_counter() - first) * 1000:.0f} ms")
    for name, ms in timings(args.repeat).items():
        print(f"{name}: median {ms:.0f} ms of {args.repeat}")


if __name__ == "__main__":
    main()
