"""Resident memory of the model service, each stage in a fresh process.

    python -m benchmarks.memory [--model-dir DIR] [--dtype auto|float32|bfloat16|float16]

"runtime": a process that imported everything the bot runs (bot, cogs, discord.py, torch,
transformers) and built the model's class on the meta device, so the modelling and tokenizer
code is loaded too, but holds no weights. "served": the same, then the service loads the model
as the bot does (generation and fill-mask), generates 8 x 64 tokens together and fills 8 texts
together, then goes idle. The model's share is served minus runtime; the goal is at most 1.5x
its weights. The peak (VmHWM) is reported beside it: it is reached while the fills run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.workloads import DEFAULT_MODEL_DIR, FILL_TEXTS, PROMPTS

STAGES = ("runtime", "served")


def _status_mb() -> dict[str, float]:
    """VmRSS (now), VmHWM (peak), RssAnon and RssFile of this process, in MB."""
    wanted = {"VmRSS": "rss_mb", "VmHWM": "peak_mb", "RssAnon": "anon_mb", "RssFile": "file_mb"}
    out: dict[str, float] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in wanted:
                out[wanted[key]] = int(value.split()[0]) * 1024 / 1e6
    return out


def _import_everything(model_dir: Path) -> None:
    import torch
    import xllamacpp  # noqa: F401  (the llama.cpp engine's library, loaded by either engine's bot)
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    import bot  # noqa: F401
    import core.transcord  # noqa: F401  (the bot, its cogs' imports, discord.py)
    from model_service import service  # noqa: F401

    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    with torch.device("meta"):
        AutoModelForCausalLM.from_config(config)  # the modelling code, no weights
    # The tokenizer's code, without its vocabulary: the class the folder names.
    named = json.loads((model_dir / "tokenizer_config.json").read_text()).get("tokenizer_class")
    if named:
        tokenizer_class_from_name(named)


async def _serve(model_dir: Path, dtype: str, gguf: Path | None) -> dict[str, Any]:
    """Serve as the bot does: the folder on transformers, or (``gguf``) the file on llama.cpp.

    On llama.cpp only generation runs: /fill there loads the transformers twin, a second model
    measured by the transformers run.
    """
    from model_service.config import ServiceConfig
    from model_service.service import ModelService
    from model_service.types import FillMaskRequest, GenerationParams, GenerationRequest

    source, engine = (str(model_dir), "transformers") if gguf is None else (str(gguf), "llama.cpp")
    config = ServiceConfig(
        models={"bench": source},
        engines={"bench": engine},
        default_model="bench",
        dtype=dtype,
        offline=True,
        queue_limit=16,
    )
    async with ModelService(config) as service:
        params = GenerationParams.from_values({"max_new_tokens": 64, "temperature": 0.8})
        await asyncio.gather(*(service.generate(GenerationRequest(p, params)) for p in PROMPTS[:8]))
        if gguf is None:
            await asyncio.gather(*(service.fill_mask(FillMaskRequest(t)) for t in FILL_TEXTS[:8]))
        await asyncio.sleep(1.0)  # out of work, the service hands freed heap back (a few ms)
        if gguf is not None:
            served = service.status().models[0]
            return {"dtype": served.dtype, "engine": engine}  # the weights: the file (in ``stage``)
        model = service._registry.get("bench", "generate").model
        weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
        dtype_name = str(next(model.parameters()).dtype).removeprefix("torch.")
        return {"weights_mb": weights, "dtype": dtype_name, "engine": engine}


def stage(name: str, model_dir: Path, dtype: str = "auto", gguf: Path | None = None) -> dict[str, Any]:
    _import_everything(model_dir)
    out: dict[str, Any] = {"stage": name}
    if name == "served":
        out.update(asyncio.run(_serve(model_dir, dtype, gguf)))
        if gguf is not None:
            out["weights_mb"] = os.path.getsize(gguf) / 1e6
    out.update(_status_mb())
    return out


@dataclass(frozen=True)
class MemoryReport:
    runtime_mb: float
    served_rss_mb: float
    served_peak_mb: float
    weights_mb: float
    dtype: str
    engine: str = "transformers"

    @property
    def ratio(self) -> float:
        """The model's resident share (served minus runtime) over its weights."""
        return (self.served_rss_mb - self.runtime_mb) / self.weights_mb

    @property
    def peak_ratio(self) -> float:
        return (self.served_peak_mb - self.runtime_mb) / self.weights_mb

    def as_dict(self) -> dict[str, Any]:
        return {
            "runtime_mb": round(self.runtime_mb, 1),
            "served_rss_mb": round(self.served_rss_mb, 1),
            "served_peak_mb": round(self.served_peak_mb, 1),
            "weights_mb": round(self.weights_mb, 1),
            "dtype": self.dtype,
            "engine": self.engine,
            "ratio": round(self.ratio, 3),
            "peak_ratio": round(self.peak_ratio, 3),
        }


def measure(
    model_dir: Path, *, dtype: str = "auto", gguf: Path | None = None, timeout: float = 120.0
) -> MemoryReport:
    """Run both stages, each in a fresh interpreter, one after the other (``gguf``: on llama.cpp)."""
    results = {}
    for name in STAGES:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "benchmarks.memory", "--stage", name),
                *("--model-dir", str(model_dir), "--dtype", dtype),
                *(("--gguf", str(gguf)) if gguf is not None else ()),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"memory stage {name} failed ({done.returncode}): {tail}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    runtime, served = results["runtime"], results["served"]
    return MemoryReport(
        runtime_mb=runtime["rss_mb"],
        served_rss_mb=served["rss_mb"],
        served_peak_mb=served["peak_mb"],
        weights_mb=served["weights_mb"],
        dtype=served["dtype"],
        engine=served["engine"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=STAGES, help="run one stage here and print its figures")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="the model folder")
    parser.add_argument("--dtype", default="auto", help="MODEL_DTYPE for the service (auto)")
    parser.add_argument("--gguf", type=Path, default=None, help="serve this GGUF on llama.cpp instead")
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.model_dir is None:
        args.model_dir = DEFAULT_MODEL_DIR
    if args.stage:
        print(json.dumps(stage(args.stage, args.model_dir, args.dtype, args.gguf)))
        return 0
    report = measure(args.model_dir, dtype=args.dtype, gguf=args.gguf)
    print(json.dumps(report.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
