"""Inside the model: the probabilities the pictures show, from whichever engine serves the model.

- **The next token** (``/next``): on transformers, the softmax of the last position's logits; on
  llama.cpp, llama-server's ``n_probs`` on a one-token greedy completion (the softmax of its raw
  logits); on a model server, its ``logprobs``. A server that gives none (TGI, OpenAI's API) is
  asked of its local copy where ``REMOTE_TOKENIZERS`` names one with weights, else refused.
- **How sure it was** (``/generate show: probabilities``): after the fact, one forward over the
  prompt and the text written (teacher forcing), on the transformers model: the model itself, a
  GGUF's de-quantized twin, a remote model's local copy. Chosen over recording probabilities
  while sampling: no engine's decoding loop changes, and on transformers the figures are the same
  (the softmax of the raw logits at each position, before temperature, top-k and top-p). A GGUF's
  twin holds its Q4_1 weights de-quantized, so its figures are close to llama.cpp's, not equal.

Event-loop code routes; the forwards block and run on the service's executor (``run``),
llama-server's request (which may wait for a free slot) on a thread of its own, and a server's
on the remote loop, so neither holds the executor that steps the running generations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import torch
from transformers import PreTrainedTokenizerBase

from model_service import generation
from model_service.engines import llamacpp, remote_probs
from model_service.engines.llamacpp import LlamaModel, LlamaModels
from model_service.engines.remote_models import RemoteModels
from model_service.engines.remote_requests import Prepared
from model_service.errors import ModelUnavailableError, RequestTimeoutError
from model_service.generation import PreparedPrompt
from model_service.loading import ModelRegistry
from model_service.task_names import KIND_WORDS, Kind
from model_service.types import (
    NextTokenRequest,
    NextTokenResult,
    ProbabilitySource,
    TokenChance,
    TokenProbabilitiesRequest,
    TokenProbabilitiesResult,
)

T = TypeVar("T")
Run = Callable[..., Awaitable[Any]]
SOFTMAX_ROWS = 128  # positions put through one softmax at a time: 128 x a 49k vocabulary in fp32 is 25 MB


class Probabilities:
    """The probabilities of one service's models (its registry, llama.cpp servers and remote servers)."""

    def __init__(
        self,
        registry: ModelRegistry,
        llama: LlamaModels,
        remote: RemoteModels,
        run: Run,
        *,
        engine_name: Callable[[str], str],
        kind: Callable[[str], Kind | None],
        timeout_s: float,
    ) -> None:
        self._registry = registry
        self._llama = llama
        self._remote = remote
        self._run = run
        self._engine_name = engine_name
        self._kind = kind
        self._timeout_s = timeout_s

    # -- the next token ---------------------------------------------------------------------------

    async def next_tokens(self, name: str, request: NextTokenRequest) -> NextTokenResult:
        self._check_causal(name, "`/next`")
        return await self._bounded(self._next_tokens(name, request, time.monotonic()))

    async def _next_tokens(self, name: str, request: NextTokenRequest, started: float) -> NextTokenResult:
        engine = self._engine_name(name)
        if engine == "llama.cpp":
            loaded, prompt = await self._run(self._llama_prompt, name, request)
            pairs = await asyncio.to_thread(llamacpp.next_tokens, loaded, prompt.input_ids, request.top_k)
            tokens = tuple(TokenChance(_text(loaded.tokenizer, i), i, p) for i, p in pairs)
            return _next_result(tokens, name, "llama.cpp", prompt, started)
        if engine == "remote":
            server = self._remote.server(name)
            facts = await self._on_remote_loop(server.ensure_facts())
            if facts.flavour.top_logprobs:
                prepared: Prepared = await self._run(self._remote_prompt, name, request, facts)
                tokens = await self._on_remote_loop(remote_probs.next_tokens(server, prepared, request.top_k))
                return NextTokenResult(
                    tokens,
                    name,
                    "remote",
                    prepared.prompt_tokens,
                    prepared.truncated,
                    time.monotonic() - started,
                )
            if not self._remote.has_weights(name):
                raise ModelUnavailableError(
                    f"`/next` can't look inside model `{name}`: its {facts.flavour.label} server at "
                    f"{server.url} gives no log-probabilities over the OpenAI API. Serve it with vLLM, "
                    "SGLang or llama.cpp, or name a local copy with its weights in REMOTE_TOKENIZERS"
                )
            source = "transformers twin"
        else:
            source = "transformers"
        result: NextTokenResult = await self._run(self._forward_next, name, request, source, started)
        return result

    def _llama_prompt(self, name: str, request: NextTokenRequest) -> tuple[LlamaModel, PreparedPrompt]:
        loaded = self._llama.get(name)
        return loaded, generation.prepare(loaded, request.generation())

    def _remote_prompt(self, name: str, request: NextTokenRequest, facts: Any) -> Prepared:
        return remote_probs.next_token_request(name, request, facts, self._remote.prompt_model(name, facts))

    def _forward_next(
        self, name: str, request: NextTokenRequest, source: ProbabilitySource, started: float
    ) -> NextTokenResult:
        """On the executor: one forward, the softmax of the last position's logits, its top k."""
        loaded = self._registry.get_head(name, "causal")
        prompt = generation.prepare(loaded, request.generation())
        with loaded.lock, torch.inference_mode():
            ids = torch.tensor([prompt.input_ids], device=loaded.device)
            logits = loaded.model(input_ids=ids, logits_to_keep=1).logits[0, -1]
            values, indices = logits.float().softmax(-1).topk(request.top_k)
        tokens = tuple(
            TokenChance(_text(loaded.tokenizer, i), i, p)
            for i, p in zip(indices.tolist(), values.tolist(), strict=True)
        )
        return _next_result(tokens, name, source, prompt, started)

    # -- how sure it was of each token it wrote ---------------------------------------------------

    async def token_probabilities(
        self, name: str, request: TokenProbabilitiesRequest
    ) -> TokenProbabilitiesResult:
        self._check_causal(name, "the probabilities of a reply")
        engine = self._engine_name(name)
        if engine == "remote" and not self._remote.has_weights(name):
            raise ModelUnavailableError(
                f"model `{name}` runs on its server at {self._remote.server(name).url}; a reply's "
                "probabilities are scored on a local copy of the model, and it has none here. Name a "
                "local copy with its weights in REMOTE_TOKENIZERS to score on"
            )
        source: ProbabilitySource = "transformers" if engine == "transformers" else "transformers twin"
        started = time.monotonic()
        return await self._bounded(self._run(self._forward_text, name, request, source, started))

    def _forward_text(
        self, name: str, request: TokenProbabilitiesRequest, source: ProbabilitySource, started: float
    ) -> TokenProbabilitiesResult:
        """On the executor: one forward over prompt + text; each text token's probability is the
        softmax of the logits at the position before it, taken at that token."""
        loaded = self._registry.get_head(name, "causal")
        prompt = generation.prepare(loaded, request.request).input_ids
        written = list(loaded.tokenizer(request.text, add_special_tokens=False)["input_ids"])
        kept = written[: max(0, loaded.context_length - len(prompt))]
        chances: list[float] = []
        if kept:
            with loaded.lock, torch.inference_mode():
                ids = torch.tensor([prompt + kept], device=loaded.device)
                # The last len(kept) + 1 positions; the very last predicts past the text.
                logits = loaded.model(input_ids=ids, logits_to_keep=len(kept) + 1).logits[0, :-1]
                target = torch.tensor(kept, device=loaded.device)
                for start in range(0, len(kept), SOFTMAX_ROWS):
                    rows = logits[start : start + SOFTMAX_ROWS].float().log_softmax(-1)
                    taken = rows.gather(-1, target[start : start + SOFTMAX_ROWS, None])[:, 0]
                    chances += taken.exp().tolist()
        tokens = tuple(
            TokenChance(_text(loaded.tokenizer, i), i, p) for i, p in zip(kept, chances, strict=True)
        )
        return TokenProbabilitiesResult(
            tokens, name, source, len(written) - len(kept), time.monotonic() - started
        )

    # -- shared -----------------------------------------------------------------------------------

    def _check_causal(self, name: str, what: str) -> None:
        kind = self._kind(name)
        if kind not in (None, "causal"):
            raise ModelUnavailableError(
                f"{what} needs {KIND_WORDS['causal']}, which weighs every possible next token; "
                f"model `{name}` is {KIND_WORDS[kind]}"
            )

    async def _bounded(self, work: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(work, self._timeout_s)
        except TimeoutError:
            raise RequestTimeoutError(
                f"the model did not answer within {self._timeout_s:.0f} s; try again later"
            ) from None

    async def _on_remote_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await work on the remote loop from the event loop (cancelling it cancels the request)."""
        return await asyncio.wrap_future(self._remote.loop.submit(coro))


def _text(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    return str(tokenizer.decode([token_id]))


def _next_result(
    tokens: tuple[TokenChance, ...],
    name: str,
    source: ProbabilitySource,
    prompt: PreparedPrompt,
    started: float,
) -> NextTokenResult:
    return NextTokenResult(
        tokens, name, source, len(prompt.input_ids), prompt.truncated, time.monotonic() - started
    )
