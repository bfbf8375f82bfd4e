"""A catalog model served elsewhere, over the OpenAI-compatible API: its address, and how each
server flavour takes our settings.

A ``MODELS`` source that is an ``http(s)://`` URL is such a model: ``name=http://host:8000/v1``,
optionally ``#served-name`` for the name the server knows it by (else the first model the
server lists). No torch and no aiohttp here: the config imports this module.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

from model_service.errors import ValidationError
from model_service.types import DEFAULT_TOP_K, GenerationParams

SCHEMES = ("http://", "https://")
# auto: told by the server's own /v1/models answer (its `owned_by`); the rest name the server.
FLAVOURS = ("auto", "vllm", "sglang", "llama.cpp", "tgi", "openai")
# What /v1/models says it is (`owned_by`), for auto. TGI says nothing we can rely on: set it.
OWNED_BY = {"vllm": "vllm", "sglang": "sglang", "llamacpp": "llama.cpp"}


def is_remote(spec: str) -> bool:
    """A source written as the URL of a model server."""
    return spec.strip().lower().startswith(SCHEMES)


@dataclass(frozen=True)
class RemoteSource:
    base_url: str  # the OpenAI API's root, e.g. http://127.0.0.1:8000/v1 (no trailing slash)
    model_id: str | None = None  # the name the server serves it under; None: its first model

    @property
    def label(self) -> str:
        return self.base_url + (f"#{self.model_id}" if self.model_id else "")


def parse_remote(spec: str) -> RemoteSource:
    """The server's address and the served name; ValueError says what is wrong with the URL."""
    url, _, model_id = spec.strip().partition("#")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"`{url}` is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"`{url}` is not an http(s) URL with a host")
    if parts.username or parts.password:
        # The URL is shown in /status and in error messages: a secret must not be in it.
        raise ValueError(f"`{parts.hostname}`: put the API key in REMOTE_API_KEY, not in the URL")
    if parts.query:
        raise ValueError(f"`{url}`: the server's URL takes no query (the served name goes after `#`)")
    path = parts.path.rstrip("/") or "/v1"  # a bare host:port means the usual /v1 root
    return RemoteSource(f"{parts.scheme}://{parts.netloc}{path}", model_id.strip() or None)


@dataclass(frozen=True)
class Flavour:
    """What one kind of server takes, beyond the OpenAI API's own fields."""

    name: str
    label: str  # for people: /status, errors
    token_prompts: bool  # a prompt may be token ids (so our tokenizer and chat template decide)
    prompt_logprobs: bool  # `echo` with `logprobs` gives the prompt tokens' log-probabilities
    top_logprobs: int  # alternatives one position may ask for (vLLM's default --max-logprobs)
    top_k_off: int | None  # what turns top_k off; None: the server takes no top_k
    penalty: str | None  # the field for repetition_penalty; None: none (OpenAI's penalties differ)


FLAVOUR: dict[str, Flavour] = {
    "vllm": Flavour("vllm", "vLLM", True, True, 20, -1, "repetition_penalty"),
    "sglang": Flavour("sglang", "SGLang", True, True, 20, -1, "repetition_penalty"),
    "llama.cpp": Flavour("llama.cpp", "llama.cpp", True, False, 20, 0, "repeat_penalty"),
    "tgi": Flavour("tgi", "TGI", False, False, 0, None, None),
    "openai": Flavour("openai", "OpenAI-compatible", False, False, 0, None, None),
}


def sampling(flavour: Flavour, model: str, params: GenerationParams, context: int | None) -> dict[str, Any]:
    """The request's sampling fields as this server takes them, meaning what they mean here.

    Every sampler is given, so the server's own defaults (vLLM and SGLang apply the model's
    generation_config.json; llama.cpp has top_k 40, min_p 0.05, a 64-token penalty window) do
    not creep in. A setting the server has no field for is refused, not silently dropped, except
    ``top_k`` at its default: a server without it samples from the top-p nucleus alone.
    """
    body: dict[str, Any] = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        # The service seeds every request; an unseeded one (a direct caller) gets a fresh seed.
        "seed": params.seed if params.seed is not None else int.from_bytes(os.urandom(4), "little"),
    }
    if flavour.top_k_off is not None:
        body["top_k"] = params.top_k or flavour.top_k_off
        body["min_p"] = 0.0
    elif params.top_k and params.top_k != DEFAULT_TOP_K:
        raise _unsupported(flavour, model, "top_k", "`/config set top_k: 0`")
    if flavour.penalty is not None:
        body[flavour.penalty] = params.repetition_penalty
        if flavour.name == "llama.cpp" and context:
            body["repeat_last_n"] = context  # the whole context, as on the other engines
    elif params.repetition_penalty != 1.0:
        raise _unsupported(flavour, model, "repetition_penalty", "`/config reset repetition_penalty`")
    return body


def _unsupported(flavour: Flavour, model: str, setting: str, fix: str) -> ValidationError:
    return ValidationError(
        f"`{setting}` can't be used with model `{model}`: its {flavour.label} server takes no "
        f"`{setting}` over the OpenAI API. Turn it off ({fix}) for this model"
    )
