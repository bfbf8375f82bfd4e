"""The llama.cpp engine: a GGUF served by llama.cpp's own server, in this process (``xllamacpp``).

Why this binding: ``xllamacpp`` ships prebuilt CPU wheels of llama-server (installs in seconds)
and drives it in-process: continuous batching over ``n_parallel`` slots, per-request sampling
and seed, streaming callbacks whose return value cancels the request, and prompt caching per
slot. ``llama-cpp-python`` builds llama.cpp from source at install (~10 minutes on 2 cores) and
its high-level API runs one sequence at a time, so batching across channels would be ours to
write on its low-level calls.

How it fits the engine interface: a row's prompt is tokenized and cut here exactly as on the
transformers engine (``generation.prepare``), then handed to the server as token ids; one
reader thread per row waits in ``handle_completions`` (which releases the GIL) and files the
streamed text into the row. ``step`` waits until some row has news, so the engine core sees
text, ends and stop checks as they happen, and a stop or cancel is carried out by the next
streamed token (the callback's True). Stop sequences go through the same ``StopFilter`` as on
transformers. Fill-mask needs log-probabilities of prompt tokens, which llama-server does not
return: this engine fills on the transformers twin of the same model (its de-quantized folder
when there is one), loaded on the first ``/fill``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from model_service import generation
from model_service.engines.base import TextInbox, gather_news
from model_service.engines.cpu_share import ThreadGovernor
from model_service.engines.transformers import TransformersEngine
from model_service.errors import InternalError, ModelUnavailableError
from model_service.fill_mask import FillBatch, FillTask
from model_service.generation import PreparedPrompt, PromptFacts
from model_service.loading import ModelSource, load_tokenizer, parse_source
from model_service.output import StopFilter
from model_service.types import FinishReason, GenerationParams, GenerationRequest

log = logging.getLogger(__name__)

# How long one ``step`` gathers news before handing it over (sooner when every row has ended).
# Waking the event loop for every streamed token (8 rows x ~20 tokens/s) costs llama.cpp dearly:
# its threads wait for each other at every op, so a Python thread that takes a core from one of
# them stalls all. Gathering 40 ms at a time keeps the bot's own work in few, short bursts.
STEP_WAIT_S = 0.04
# The SCHED_FIFO priority ggml gives the compute threads at each LLAMA_PRIORITY above normal (what
# the process must be allowed to set).
FIFO_PRIORITY = {"medium": 40, "high": 80, "realtime": 90}


def unavailable() -> str | None:
    """Why this engine cannot run here (None: it can)."""
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        return "the llama.cpp engine needs the xllamacpp package (`pip install xllamacpp`)"
    return None


def default_threads() -> int:
    """One thread per core this process may use (2 on the development machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def single_threaded_mkl_here() -> bool:
    """Make MKL (torch's fp32 BLAS) run on one thread when called from this thread.

    Measured here: after the first multi-threaded MKL call in the process (an fp32 matmul, as a
    ``/fill`` on the transformers twin makes), llama.cpp decodes 2.5x slower for good (72 -> 29
    tok/s); with MKL kept to one thread on the executor it stays at full speed. OpenBLAS (numpy)
    and torch's bf16 kernels do not cause it. Returns whether this torch build has MKL to set.
    """
    import ctypes

    import torch

    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        setter = lib.MKL_Set_Num_Threads_Local  # the C entry point (takes an int)
    except (OSError, AttributeError):
        return False
    setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
    setter(1)
    return True


@dataclass
class LlamaModel:
    """One GGUF served by llama-server: its slots, and the tokenizer prompts are cut with."""

    name: str
    source: ModelSource
    server: Any  # xllamacpp.Server
    tokenizer: PreTrainedTokenizerBase
    context_length: int  # per slot: prompt + reply
    slots: int
    threads: int
    quantization: str
    parameters: int
    priority: str = "normal"

    def on_threads(self, threads: int) -> LlamaModel:
        """The same model on a new server with ``threads`` compute threads (blocking)."""
        server = _serve(
            self.name,
            self.source,
            slots=self.slots,
            per_slot=self.context_length,
            threads=threads,
            priority=self.priority,
        )
        return replace(self, server=server, threads=threads)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def _gguf_facts(path: Path) -> tuple[str, int, int]:
    """(quantization, parameters, trained context) read from the GGUF's header and tensor table."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    parameters = sum(int(t.n_elements) for t in reader.tensors)
    kinds: dict[str, int] = {}
    for tensor in reader.tensors:
        kinds[tensor.tensor_type.name] = kinds.get(tensor.tensor_type.name, 0) + int(tensor.n_elements)
    quantization = max(kinds, key=kinds.__getitem__) if kinds else "?"
    trained = 0
    for key, value in reader.fields.items():
        if key.endswith(".context_length") and value.data:
            trained = int(value.parts[value.data[0]][0])
    return quantization, parameters, trained


def realtime_allowed(fifo_priority: int) -> bool:
    """Whether this process may give a thread real-time scheduling (SCHED_FIFO), as llama.cpp's
    priorities above normal do: root, CAP_SYS_NICE, or an RLIMIT_RTPRIO high enough. Tried on a
    thread of its own, which then ends, so nothing else changes."""
    if not hasattr(os, "sched_setscheduler"):
        return False
    allowed: list[bool] = []

    def attempt() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(fifo_priority))
            allowed.append(True)
        except OSError:
            allowed.append(False)

    probe = threading.Thread(target=attempt, name="llama-priority-probe")
    probe.start()
    probe.join()
    return allowed[0]


def choose_priority(wanted: str) -> str:
    """``wanted`` (LLAMA_PRIORITY), or normal, said once, where real-time scheduling is not allowed."""
    if wanted == "normal" or realtime_allowed(FIFO_PRIORITY[wanted]):
        return wanted
    log.warning(
        "LLAMA_PRIORITY=%s needs real-time scheduling, which this process may not use (run as root, "
        "grant CAP_SYS_NICE, or raise RLIMIT_RTPRIO); llama.cpp runs at normal priority, on the cores "
        "other processes leave free (unless MODEL_THREADS fixes the number)",
        wanted,
    )
    return "normal"


def load_llama(
    name: str, spec: str, *, slots: int, threads: int, context: int, priority: str = "normal"
) -> LlamaModel:
    """Start llama-server on the GGUF (blocking; on the service's executor)."""
    reason = unavailable()
    if reason is not None:
        raise ModelUnavailableError(f"model `{name}`: {reason}, or set its engine to transformers")
    source = parse_source(spec)
    if source.gguf_file is None:
        raise ModelUnavailableError(f"model `{name}`: the llama.cpp engine serves .gguf files, not `{spec}`")
    path = Path(source.location) / source.gguf_file
    try:
        quantization, parameters, trained = _gguf_facts(path)
    except Exception as exc:  # the gguf reader raises whatever a bad file makes it raise
        raise ModelUnavailableError(
            f"model `{name}`: `{source.label}` is not a readable GGUF ({exc})"
        ) from None
    per_slot = min(context, trained) if trained else context
    started = time.monotonic()
    server = _serve(name, source, slots=slots, per_slot=per_slot, threads=threads, priority=priority)
    tokenizer = load_tokenizer(name, source)
    log.info("model %s ready on llama.cpp in %.1f s", name, time.monotonic() - started)
    return LlamaModel(
        name, source, server, tokenizer, per_slot, slots, threads, quantization, parameters, priority
    )


def _serve(name: str, source: ModelSource, *, slots: int, per_slot: int, threads: int, priority: str) -> Any:
    """llama-server on the GGUF, in this process: ``slots`` slots of ``per_slot`` tokens each."""
    import xllamacpp

    assert source.gguf_file is not None
    params = xllamacpp.CommonParams()
    params.model.path = str(Path(source.location) / source.gguf_file)
    params.n_parallel = slots
    params.n_ctx = per_slot * slots  # each slot gets its share: no request can crowd out another
    params.n_batch = min(2048, per_slot * slots)
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    # Above normal, the compute threads run real-time: a busy neighbour no longer stalls the threads
    # that wait for each other at every operation, but while they decode they also keep the bot's
    # own Python (the event loop) waiting, so the default stays normal (docs/benchmarks.md).
    level = xllamacpp.ggml_sched_priority[f"GGML_SCHED_PRIO_{priority.upper()}"]
    params.cpuparams.priority = params.cpuparams_batch.priority = level
    params.cache_ram_mib = 0  # slots keep their own prompt cache; no second copy in RAM
    params.verbosity = 0  # llama.cpp logs to stderr itself; errors still show
    params.fit_params = False  # sizes are given; fitting would load the model a second time to try
    params.warmup = True
    log.info(
        "loading model %s from %s (llama.cpp, %d slots x %d tokens, %d threads, %s priority)",
        name,
        source.label,
        slots,
        per_slot,
        threads,
        priority,
    )
    try:
        return xllamacpp.Server(params)
    except RuntimeError as exc:
        raise ModelUnavailableError(
            f"model `{name}`: llama.cpp could not load `{source.label}` ({exc})"
        ) from None


class LlamaModels:
    """Loads each GGUF's server once, shared by every channel (the registry's llama.cpp half).

    With ``threads`` 0 (one per core) at normal priority, the thread count follows the CPU
    other processes leave free (``ThreadGovernor``): when it changes, the model is served anew on
    that many threads; rows already running finish on the old server, which ends with them.
    """

    def __init__(
        self, catalog: dict[str, str], *, slots: int, threads: int, context: int, priority: str = "normal"
    ) -> None:
        self._catalog = dict(catalog)
        self._slots = slots
        self._threads = threads or default_threads()
        self._adapt = threads == 0
        self._governor: ThreadGovernor | None = None
        self._context = context
        self._wanted_priority = priority
        self._priority: str | None = None  # what the process may have: checked at the first load
        self._loaded: dict[str, LlamaModel] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> LlamaModel:
        with self._lock:
            if self._priority is None:
                self._priority = choose_priority(self._wanted_priority)
                if self._adapt and self._priority == "normal":  # real-time threads aren't stalled
                    self._governor = ThreadGovernor(self._threads)
            threads = self._governor.threads() if self._governor else self._threads
            model = self._loaded.get(name)
            if model is None:
                model = load_llama(
                    name,
                    self._catalog[name],
                    slots=self._slots,
                    threads=threads,
                    context=self._context,
                    priority=self._priority,
                )
            elif model.threads != threads:
                assert self._governor is not None
                log.warning(
                    "other processes are taking %.1f of %d cores: llama.cpp now decodes %s on %d "
                    "thread(s) (set MODEL_THREADS to keep a fixed number)",
                    self._governor.others,
                    self._governor.cores,
                    name,
                    threads,
                )
                model = model.on_threads(threads)
            self._loaded[name] = model
            return model

    def loaded(self) -> list[LlamaModel]:
        return list(self._loaded.values())

    def close(self) -> None:
        """Stop every server (its destructor ends llama-server's loop thread)."""
        with self._lock:
            self._loaded.clear()


@dataclass(eq=False)
class LlamaRow(PromptFacts, TextInbox):
    """One generation in a llama.cpp slot; its reader thread writes, ``step`` reads, under ``lock``."""

    prompt: PreparedPrompt
    params: GenerationParams
    should_stop: Callable[[], FinishReason | None]
    max_new_tokens: int
    stops: StopFilter
    lock: threading.Condition
    generated: int = 0
    finish_reason: FinishReason | None = None
    pending_text: list[str] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)
    first_text_at: float | None = None
    error: str | None = None
    ended: bool = False  # the reader returned
    halt: FinishReason | None = None  # set by step: the next streamed token cancels the request


def completion_body(row: LlamaRow, model: LlamaModel) -> dict[str, Any]:
    """The request for llama-server: the row's own sampling, the transformers engine's meaning.

    llama.cpp's defaults differ from ours (top_k 40, min_p 0.05, a 64-token penalty window), so
    every sampler is given; stop sequences stay ours (``StopFilter``), so both engines stop alike.
    """
    p = row.params
    return {
        "prompt": row.prompt.input_ids,
        "max_tokens": row.max_new_tokens,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "top_k": p.top_k,
        "min_p": 0.0,
        "repeat_penalty": p.repetition_penalty,
        "repeat_last_n": model.context_length,
        "seed": p.seed if p.seed is not None else int.from_bytes(os.urandom(4), "little"),
        "stream": True,
        "stream_options": {"include_usage": True},
        "cache_prompt": True,  # a persona or chat template shared with the slot's last prompt is reused
    }


def next_token_body(input_ids: list[int], top_k: int) -> dict[str, Any]:
    """A one-token greedy completion that returns the ``top_k`` likeliest tokens (``n_probs``).

    With ``post_sampling_probs`` off (its default) llama-server gives the softmax of the raw
    logits, before any sampler: the model's own figures, as transformers' softmax gives them.
    """
    return {
        "prompt": input_ids,
        "max_tokens": 1,
        "temperature": 0.0,
        "n_probs": top_k,
        "post_sampling_probs": False,
        "stream": False,
        "cache_prompt": True,
    }


def next_tokens(loaded: LlamaModel, input_ids: list[int], top_k: int) -> list[tuple[int, float]]:
    """``(token id, probability)`` of the likeliest next tokens, best first.

    Blocking, and possibly for a while: the request waits for a free slot (with the GIL released),
    so it runs on a thread of its own, never on the service's executor, whose steps hand the
    running rows their text.
    """
    answer = loaded.server.handle_completions(next_token_body(input_ids, top_k))
    try:
        top = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        pairs = [(int(entry["id"]), math.exp(float(entry["logprob"]))) for entry in top]
    except (KeyError, IndexError, TypeError, ValueError):
        error = answer.get("error", answer) if isinstance(answer, dict) else answer
        raise InternalError(f"llama.cpp gave no token probabilities: {str(error)[:200]}") from None
    return sorted(pairs, key=lambda pair: -pair[1])[:top_k]


class LlamaCppEngine:
    """One catalog model on llama.cpp (``Engine``)."""

    def __init__(self, models: LlamaModels, model: str, twin: Callable[[], TransformersEngine]) -> None:
        self._models = models
        self._model = model
        self._twin = twin
        self._rows: list[LlamaRow] = []
        self._news = threading.Condition()
        self._readers: ThreadPoolExecutor | None = None
        self._futures: list[Future[None]] = []

    def load(self) -> LlamaModel:
        return self._models.get(self._model)

    def join(self, request: GenerationRequest, should_stop: Callable[[], FinishReason | None]) -> LlamaRow:
        loaded = self.load()
        prompt = generation.prepare(loaded, request)
        room = max(1, loaded.context_length - len(prompt.input_ids))
        return LlamaRow(
            prompt=prompt,
            params=request.params,
            should_stop=should_stop,
            max_new_tokens=min(request.params.max_new_tokens, room),
            stops=StopFilter(request.params.stop),
            lock=self._news,
        )

    def step(self, joining: Sequence[LlamaRow]) -> list[LlamaRow]:
        loaded = self.load()
        if self._readers is None:
            self._readers = ThreadPoolExecutor(max_workers=loaded.slots, thread_name_prefix="llama-row")
        for row in joining:
            self._rows.append(row)
            self._futures.append(self._readers.submit(self._read, loaded, row))
        done, self._rows = gather_news(self._news, self._rows, _halt, STEP_WAIT_S)
        self._futures = [f for f in self._futures if not f.done()]
        failed = next((row.error for row in done if row.error), None)
        if failed is not None:
            raise InternalError(f"llama.cpp failed on this request: {failed}")
        return done

    def _read(self, loaded: LlamaModel, row: LlamaRow) -> None:
        """On a reader thread: one request, start to end, its streamed text filed into the row."""
        seen_end: FinishReason | None = None

        def on_chunk(chunk: dict[str, Any]) -> bool:
            nonlocal seen_end
            with self._news:
                if "error" in chunk or "choices" not in chunk:
                    error = chunk.get("error", chunk)
                    row.error = str(error.get("message", error) if isinstance(error, dict) else error)
                    return True
                if usage := chunk.get("usage"):
                    row.generated = int(usage.get("completion_tokens", row.generated))
                for choice in chunk["choices"]:
                    text = choice.get("text") or ""
                    if text:
                        row.generated += 1
                        row.emit(row.stops.feed(text))
                    if choice.get("finish_reason"):
                        seen_end = "length" if choice["finish_reason"] == "length" else "eos"
                self._news.notify_all()
                if row.stops.stopped:
                    row.finish_reason = "stop"
                    return True
                if row.halt is None:
                    row.halt = row.should_stop()
                if row.halt is not None and seen_end is None:
                    row.finish_reason = row.halt
                    return True
                return False

        try:
            loaded.server.handle_completions(completion_body(row, loaded), on_chunk)
        except Exception as exc:  # whatever the binding raises ends this row, not the reader pool
            row.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._news:
                if row.finish_reason is None:
                    row.finish_reason = seen_end or row.halt or "cancelled"
                if row.finish_reason != "stop":
                    row.emit(row.stops.flush())
                row.ended = True
                self._news.notify_all()

    def release(self) -> None:
        """Cancel every running row and wait for the readers (each ends at its next token)."""
        with self._news:
            for row in self._rows:
                row.halt = row.halt or "cancelled"
        for future in self._futures:
            future.exception(timeout=30)
        self._rows, self._futures = [], []

    def close(self) -> None:
        self.release()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None

    def fill(self, tasks: Sequence[FillTask]) -> FillBatch:
        return self._twin().fill(tasks)


def _halt(row: LlamaRow, reason: FinishReason) -> None:
    row.halt = reason  # the row's next streamed token cancels its request
