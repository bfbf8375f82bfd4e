"""The baseline: what local-model Discord bots usually do.

For /fill, the baseline is the service's own fill-mask method run one text at a time, so
the figure isolates what filling requests together gains.

One worker thread takes requests first come, first served, and runs a plain
``model.generate(**inputs, max_new_tokens=..., do_sample=True, temperature=..., top_p=...)``
for each, alone. The benchmark gives it the very model object the service loaded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from benchmarks.measure import RequestTiming
from benchmarks.workloads import Arrival, Sampling


class _FirstToken(BaseStreamer):
    """Notes when the first new token comes out (``generate`` puts the prompt first)."""

    def __init__(self) -> None:
        self.puts = 0
        self.at: float | None = None

    def put(self, value: torch.Tensor) -> None:
        self.puts += 1
        if self.puts == 2 and self.at is None:
            self.at = time.monotonic()

    def end(self) -> None:
        pass


class NaiveBot:
    def __init__(
        self, model: Any, tokenizer: Any, lock: threading.Lock | None = None, fill_model: Any = None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.lock = lock or threading.Lock()  # the service's own lock: never two forwards at once
        self.fill_model = fill_model  # the LoadedModel /fill uses, for the fill baseline

    def fill(self, arrival: Arrival, arrived: float) -> RequestTiming:
        """The same fill-mask method as the service, one text at a time."""
        from model_service.engines.transformers import TransformersScorer
        from model_service.fill_mask import fill

        started = time.monotonic()
        fill(TransformersScorer(self.fill_model), arrival.prompt, 5)  # takes the model's lock per forward
        done = time.monotonic()
        return RequestTiming(sent=arrived, first_text=done, done=done, tokens=0, started=started)

    def generate(self, arrival: Arrival, sampling: Sampling, arrived: float) -> RequestTiming:
        started = time.monotonic()
        inputs = self.tokenizer(arrival.prompt, return_tensors="pt").to(self.model.device)
        streamer = _FirstToken()
        with self.lock, torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=arrival.max_new_tokens,
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                repetition_penalty=sampling.repetition_penalty,
                pad_token_id=self.tokenizer.pad_token_id,
                streamer=streamer,
            )
        done = time.monotonic()
        tokens = int(output.shape[1] - inputs["input_ids"].shape[1])
        return RequestTiming(
            sent=arrived, first_text=streamer.at or done, done=done, tokens=tokens, started=started
        )

    async def run(
        self, arrivals: Sequence[Arrival], settings: Sequence[Sampling] | None = None
    ) -> list[RequestTiming]:
        """Requests arrive on time; the one worker serves them in arrival order.

        With ``settings``, each is a generation with its channel's settings; without, a fill.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="naive")
        futures: list[asyncio.Future[RequestTiming]] = []
        try:
            start = time.monotonic()
            for arrival in arrivals:
                delay = start + arrival.at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if settings is None:
                    job = executor.submit(self.fill, arrival, time.monotonic())
                else:
                    job = executor.submit(self.generate, arrival, settings[arrival.channel], time.monotonic())
                futures.append(asyncio.wrap_future(job))
            return list(await asyncio.gather(*futures))
        finally:
            # Normally every job is done here; after an error, don't block the loop on the rest.
            executor.shutdown(wait=False, cancel_futures=True)
