"""What the benchmark sends: per-channel sampling settings and the two arrival patterns.

Workload A: one request per channel, all at once (a busy moment on a server). Workload B:
one request per ``interval`` seconds, round-robin over the channels (a steady trickle).
Workload C: one ``/fill`` per channel, all at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from app.environment import DEFAULT_MODEL_FOLDER

# The default model as `make setup` leaves it, which every benchmark measures unless told otherwise.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / DEFAULT_MODEL_FOLDER

PROMPTS = (
    "Once upon a time in a small village by the sea",
    "The old lighthouse keeper opened the door and saw",
    "Here is a short story about a robot who learns to paint",
    "The best way to start a garden in spring is",
    "In the year 2300, the first city on Mars",
    "My grandmother always told me that the forest",
    "The detective looked at the broken window and said",
    "A recipe for a warm winter soup begins with",
)


# Workload C: one /fill per channel, all at once.
FILL_TEXTS = (
    "The capital of France is [MASK].",
    "The [MASK] barked at the mailman.",
    "I like to eat [MASK] for breakfast.",
    "She played the [MASK] at the concert.",
    "The sun rises in the [MASK].",
    "My favourite colour is [MASK].",
    "He drove his [MASK] to work.",
    "Water boils at one hundred degrees [MASK].",
)


@dataclass(frozen=True)
class Sampling:
    """One channel's settings, set with ``/config set`` and given to the naive baseline too."""

    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float

    def as_options(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds after the workload starts
    channel: int
    prompt: str
    max_new_tokens: int


def _spread(low: float, high: float, i: int, n: int) -> float:
    return round(low + (high - low) * i / max(1, n - 1), 3)


def channel_sampling(channels: int) -> list[Sampling]:
    """Different settings per channel: temperature 0.5..1.2, top_p 0.8..1.0, top_k 0/20/40,
    repetition_penalty 1.0..1.2."""
    return [
        Sampling(
            temperature=_spread(0.5, 1.2, i, channels),
            top_p=_spread(0.8, 1.0, i % 5, 5),
            top_k=(0, 20, 40)[i % 3],
            repetition_penalty=_spread(1.0, 1.2, i % 3, 3),
        )
        for i in range(channels)
    ]


def prompt_for(index: int) -> str:
    base = PROMPTS[index % len(PROMPTS)]
    return base if index < len(PROMPTS) else f"{base} (take {index // len(PROMPTS) + 1})"


def simultaneous(channels: int, max_new_tokens: int) -> list[Arrival]:
    """Workload A: one request per channel, all sent at t=0."""
    return [Arrival(0.0, i, prompt_for(i), max_new_tokens) for i in range(channels)]


def staggered(count: int, interval: float, channels: int, max_new_tokens: int) -> list[Arrival]:
    """Workload B: ``count`` requests, one every ``interval`` s, round-robin over the channels."""
    return [Arrival(i * interval, i % channels, prompt_for(i), max_new_tokens) for i in range(count)]


def fills(channels: int) -> list[Arrival]:
    """Workload C: one ``/fill`` per channel, all sent at t=0 (``max_new_tokens`` unused)."""
    return [Arrival(0.0, i, FILL_TEXTS[i % len(FILL_TEXTS)], 0) for i in range(channels)]
