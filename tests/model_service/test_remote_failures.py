"""The remote engine when its server misbehaves: each failure answered clearly, never a stuck reply.

The servers are real (aiohttp on loopback, ``tests/fixtures/openai_servers.FakeServer``): they
stream like an OpenAI-compatible server, then refuse (429, 5xx), die mid-stream, hang, or are not
there at all. No model is needed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from model_service.engines import remote_client
from model_service.errors import ModelUnavailableError, OverloadedError, RequestTimeoutError, ValidationError
from model_service.service import ModelService
from model_service.types import GenerationParams, GenerationRequest
from tests.fixtures.openai_servers import FakeServer, free_port
from tests.fixtures.tiny_models import service_config

pytestmark = pytest.mark.timeout(60)


def request(prompt: str, max_new_tokens: int = 16, **values: Any) -> GenerationRequest:
    params = GenerationParams.from_values({"temperature": 0, "max_new_tokens": max_new_tokens, **values})
    return GenerationRequest(prompt, params)


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    async with FakeServer() as server:
        yield server


async def started(url: str, **overrides: Any) -> ModelService:
    return await ModelService(service_config({"remote": url}, **overrides)).start()


@pytest.fixture
async def service(fake: FakeServer) -> AsyncIterator[ModelService]:
    running = await started(fake.url, remote_timeout_s=2.0)
    yield running
    await running.close()


async def test_a_stream_writes_the_words_back_and_ends(service: ModelService) -> None:
    stream = service.stream(request("one two three four five"))
    deltas = [d async for d in stream]
    assert stream.result is not None and "".join(deltas) == stream.result.text == "one two three four five "
    assert stream.result.finish_reason == "length" and stream.result.generated_tokens == 5
    assert stream.result.prompt_tokens == 5  # from the server's usage: no tokenizer here


async def test_a_servers_reasoning_content_arrives_as_a_think_block_before_the_answer(
    service: ModelService,
) -> None:
    asked = GenerationRequest(
        "[think] weigh options then answer plainly",
        GenerationParams.from_values({"max_new_tokens": 16}),
        mode="chat",
    )
    result = await service.generate(asked)
    assert result.text == "<think>weigh options </think>then answer plainly "


async def test_429_is_overloaded_with_the_servers_retry_after(service: ModelService) -> None:
    with pytest.raises(OverloadedError) as caught:
        await service.generate(request("[429] hello"))
    assert caught.value.retry_after == 7
    assert caught.value.message == (
        f"model `remote`: its server at {service._remote.server('remote').url} is busy "
        "(429 Too Many Requests); try again in 7 s"
    )


async def test_a_429_fails_its_own_request_only(service: ModelService, fake: FakeServer) -> None:
    running = asyncio.ensure_future(service.generate(request("[slow] a b c", max_new_tokens=20)))
    await asyncio.sleep(0.2)
    with pytest.raises(OverloadedError):
        await service.generate(request("[429] hello"))
    result = await running
    assert result.finish_reason == "length" and result.generated_tokens == 20


async def test_500_names_the_server_and_what_it_said(service: ModelService, fake: FakeServer) -> None:
    with pytest.raises(ModelUnavailableError) as caught:
        await service.generate(request("[500] hello"))
    assert caught.value.message == (
        f"model `remote`: its server at {fake.url} failed (500 Internal Server Error: engine crashed); "
        "try again later"
    )


@pytest.mark.parametrize(
    ("prompt", "said"),
    [
        ("[die] a b c d e f", "dropped the connection in the middle of the reply"),
        ("[cut] a b c d e f", "closed the stream in the middle of the reply"),
        ("[error] a b c d e f", "failed in the middle of the reply (the KV cache is full)"),
    ],
)
async def test_a_server_that_dies_mid_stream_fails_the_reply_after_its_text(
    service: ModelService, fake: FakeServer, prompt: str, said: str
) -> None:
    stream = service.stream(request(prompt))
    seen = []
    with pytest.raises(ModelUnavailableError) as caught:
        async for delta in stream:
            seen.append(delta)
    assert "".join(seen) == "a b c "  # what was written stays (the bot keeps it and says it stopped)
    assert caught.value.message.startswith(f"model `remote`: its server at {fake.url} {said}")


async def test_a_silent_server_times_out_with_a_clear_message(fake: FakeServer) -> None:
    service = await started(fake.url, remote_timeout_s=0.5)
    try:
        begun = time.monotonic()
        with pytest.raises(RequestTimeoutError) as caught:
            await service.generate(request("[hang] hello"))
        assert time.monotonic() - begun < 3
        assert caught.value.message == f"model `remote`: its server at {fake.url} sent nothing for 0.5 s"
    finally:
        await service.close()


async def test_the_request_deadline_ends_the_reply_and_closes_the_stream(
    service: ModelService, fake: FakeServer
) -> None:
    result = await service.generate(request("[slow] a b", max_new_tokens=200), timeout=0.4)
    assert result.finish_reason == "timeout" and result.text.startswith("a b")
    await wait_for(lambda: fake.open_streams == 0)


async def test_closing_a_stream_closes_the_connection(service: ModelService, fake: FakeServer) -> None:
    stream = service.stream(request("[slow] a b", max_new_tokens=200))
    async for _ in stream:
        break
    assert fake.open_streams == 1
    await stream.aclose()
    await wait_for(lambda: fake.open_streams == 0)
    assert service.status().running == 0


async def test_a_server_that_is_down_lets_the_bot_start_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(remote_client, "DOWN_PROBE_S", 0.2)
    caplog.set_level(logging.INFO, logger="model_service")
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    service = await started(url, preload=True)  # preloading the default model: it is down
    try:
        (info,) = service.status().models
        assert info.task.startswith("unreachable (connection refused, ")
        assert info.engine == "remote server" and info.device == url
        begun = time.monotonic()
        with pytest.raises(ModelUnavailableError) as caught:
            await service.generate(request("hello"))
        assert time.monotonic() - begun < 2  # refused at once, not a stuck reply
        assert caught.value.message == (
            f"model `remote` is unreachable: its server at {url} does not answer (connection refused); "
            "it may be down or still starting. Try again later"
        )
        async with FakeServer(port=port):
            await wait_for(lambda: service.status().models[0].task == "generate")
            assert (await service.generate(request("back again"))).text == "back again "
            assert service.status().models[0].engine == "OpenAI-compatible server"
        assert "is unreachable (connection refused)" in caplog.text and "answers again" in caplog.text
    finally:
        await service.close()


async def test_a_server_that_accepts_but_never_answers_does_not_hold_up_the_others(fake: FakeServer) -> None:
    with socket.socket() as silent:  # the kernel completes the handshake; nobody ever reads
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        service = await ModelService(
            service_config({"up": fake.url, "mute": url}, remote_timeout_s=0.5)
        ).start()
        try:
            await wait_for(lambda: service.status().models[1].task.startswith("unreachable ("))
            assert "connected, but no answer in time" in service.status().models[1].task
            begun = time.monotonic()
            mute = GenerationRequest("hello", GenerationParams(max_new_tokens=4), model="mute")
            results = await asyncio.gather(
                service.generate(mute), service.generate(request("one two")), return_exceptions=True
            )
            assert time.monotonic() - begun < 0.5  # told at once: the watcher saw it fail
            assert isinstance(results[0], ModelUnavailableError)
            assert "does not answer (connected, but no answer in time)" in results[0].message
            assert results[1].text == "one two "  # type: ignore[union-attr]
        finally:
            await service.close()


async def test_the_api_key_is_sent_and_never_shown(
    fake: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = "sk-remote-Secret-123"
    service = await started(fake.url, remote_api_key=key)
    try:
        await service.generate(request("hello"))
        with pytest.raises(ModelUnavailableError) as caught:
            await service.generate(request("[500] hello"))
        assert fake.headers[-1]["Authorization"] == f"Bearer {key}"
        shown = f"{caught.value.message} {service.status()} {service.config!r} {caplog.text}"
        assert key not in shown
    finally:
        await service.close()


@pytest.mark.parametrize(
    ("flavour", "expected", "top_k_off"),
    [
        ("vllm", {"top_k": 50, "min_p": 0.0, "repetition_penalty": 1.3, "seed": 5}, -1),
        ("sglang", {"top_k": 50, "min_p": 0.0, "repetition_penalty": 1.3, "seed": 5}, -1),
        ("llama.cpp", {"top_k": 50, "min_p": 0.0, "repeat_penalty": 1.3, "repeat_last_n": 256, "seed": 5}, 0),
    ],
)
async def test_each_flavour_gets_the_samplers_the_way_it_takes_them(
    fake: FakeServer, flavour: str, expected: dict[str, Any], top_k_off: int
) -> None:
    service = await started(fake.url, remote_flavours={"remote": flavour})
    try:
        await service.generate(request("hello", repetition_penalty=1.3, seed=5))  # top_k: the default, 50
        body = fake.bodies[-1]
        assert {key: body.get(key) for key in expected} == expected
        assert body["model"] == "fake-model" and body["stream"] is True
        assert body["temperature"] == 0 and body["top_p"] == 0.95 and "stop" not in body
        await service.generate(request("hello", top_k=0))  # off, as this server writes it
        assert fake.bodies[-1]["top_k"] == top_k_off
    finally:
        await service.close()


@pytest.mark.parametrize("flavour", ["tgi", "openai"])
async def test_a_setting_the_server_cannot_take_is_refused_for_that_request_only(
    fake: FakeServer, flavour: str
) -> None:
    service = await started(fake.url, remote_flavours={"remote": flavour})
    try:
        running = asyncio.ensure_future(service.generate(request("[slow] a b c", max_new_tokens=10)))
        await asyncio.sleep(0.1)
        with pytest.raises(ValidationError) as caught:
            await service.generate(request("hello", top_k=5))
        label = "TGI" if flavour == "tgi" else "OpenAI-compatible"
        assert caught.value.message == (
            f"`top_k` can't be used with model `remote`: its {label} server takes no `top_k` over the "
            "OpenAI API. Turn it off (`/config set top_k: 0`) for this model"
        )
        assert (await running).generated_tokens == 10
        assert "top_k" not in fake.bodies[-1] and "repetition_penalty" not in fake.bodies[-1]
        # The default top_k is not a channel's choice: such a server samples from top-p alone.
        await service.generate(request("hello"))
        assert "top_k" not in fake.bodies[-1]
    finally:
        await service.close()


async def test_chat_mode_without_a_tokenizer_sends_the_persona_and_the_turns(
    service: ModelService, fake: FakeServer
) -> None:
    from model_service.types import ChatTurn

    chat = GenerationRequest(
        "and you?",
        GenerationParams.from_values({"temperature": 0, "max_new_tokens": 8}),
        mode="chat",
        system_prompt="You are a pirate.",
        history=(ChatTurn("user", "hi", "ann"), ChatTurn("assistant", "ahoy")),
        author="bob",
        continuation="Arr",
    )
    result = await service.generate(chat)
    assert result.text == "bob: and you? "  # the fake writes the last message back
    assert fake.bodies[-1]["messages"] == [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "ann: hi"},
        {"role": "assistant", "content": "ahoy"},
        {"role": "user", "content": "bob: and you?"},
        {"role": "assistant", "content": "Arr"},
    ]


async def test_a_long_history_is_cut_to_the_servers_context(service: ModelService, fake: FakeServer) -> None:
    from model_service.types import ChatTurn

    history = tuple(
        ChatTurn("user" if i % 2 == 0 else "assistant", f"turn {i} " + "x" * 200) for i in range(10)
    )
    chat = GenerationRequest(
        "last", GenerationParams.from_values({"max_new_tokens": 16}), mode="chat", history=history
    )
    result = await service.generate(chat)
    sent = fake.bodies[-1]["messages"]
    assert result.history_dropped > 0 and len(sent) == 10 - result.history_dropped + 1
    assert sum(len(m["content"]) for m in sent) <= (256 - 16) * 3  # the server said 256 tokens


async def wait_for(condition: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)
