"""Next-token probabilities from a model server: a one-token greedy completion with ``logprobs``.

The prompt is made as a generation's (``remote_requests.prepare``: token ids with a local
tokenizer, else text), sent to ``/v1/completions`` without streaming, with ``logprobs`` asking
for the likeliest alternatives at the one position written. Servers answer in two shapes:
OpenAI's legacy one (vLLM, SGLang: ``top_logprobs`` as a list of ``{token: logprob}``) and
llama-server's (``content[0].top_logprobs`` as a list of ``{id, token, logprob}``); both are read.
A server without ``logprobs`` over the OpenAI API (TGI, OpenAI's own: ``Flavour.top_logprobs``
0) is not asked.
"""

from __future__ import annotations

import math
from typing import Any

from model_service.engines.remote_client import RemoteServer, ServerFacts
from model_service.engines.remote_requests import Prepared, RemoteModel, prepare
from model_service.errors import InternalError
from model_service.types import NextTokenRequest, TokenChance


def next_token_request(
    name: str, request: NextTokenRequest, facts: ServerFacts, model: RemoteModel | None
) -> Prepared:
    """The request for the server (blocking where a local tokenizer makes the prompt's ids)."""
    prepared = prepare(name, request.generation(), facts, model)
    body = {k: v for k, v in prepared.body.items() if k not in ("stream", "stream_options")}
    body |= {"max_tokens": 1, "temperature": 0.0, "logprobs": request.top_k, "stream": False}
    return Prepared(prepared.path, body, prepared.prompt_tokens, prepared.truncated, 0)


async def next_tokens(server: RemoteServer, prepared: Prepared, top_k: int) -> tuple[TokenChance, ...]:
    """On the remote loop: ask, and read the alternatives, best first."""
    return read_top(await server.post(prepared.path, prepared.body), server, top_k)


def read_top(payload: dict[str, Any], server: RemoteServer, top_k: int) -> tuple[TokenChance, ...]:
    """The alternatives of the one token written, in either shape servers answer in."""
    try:
        logprobs = payload["choices"][0]["logprobs"]
        if isinstance(logprobs.get("content"), list):  # llama-server
            top = logprobs["content"][0]["top_logprobs"]
            found = [(str(e["token"]), e.get("id"), float(e["logprob"])) for e in top]
        else:  # OpenAI's legacy completions (vLLM, SGLang)
            found = [(str(t), None, float(v)) for t, v in logprobs["top_logprobs"][0].items()]
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        raise InternalError(
            f"{server.who}: its server at {server.url} sent no log-probabilities for the next token"
        ) from None
    found.sort(key=lambda entry: -entry[2])
    return tuple(
        TokenChance(token, int(token_id) if isinstance(token_id, int) else None, math.exp(logprob))
        for token, token_id, logprob in found[:top_k]
    )
