"""Bad input on purpose: every case gets a clear message or a proper answer, never a crash or a
reply stuck on "thinking…"; echoed prompts ping nobody and their markdown is escaped.

One real bot (tiny models) serves the whole module; each test works in channels of its own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest
import pytest_asyncio

from core.render import UNSAFE, escape
from core.replies import GENERIC_ERROR
from loopback import InteractionRecord, LoopbackDiscord
from tests.e2e.harness import BotRunner
from tests.e2e.reliability import (
    GENERATION_FOOTER,
    LogRecorder,
    ask,
    new_channel,
    pings_nobody,
    refusal,
    shared_bot,
    shown_text,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]

CUT_NOTE = "prompt cut from the left to fit the model's context"
MASK_FORMS = "(`[MASK]`, `<mask>`)"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot(
    tmp_path_factory: pytest.TempPathFactory, tiny_gpt2_dir: Path, tiny_bert_dir: Path
) -> AsyncIterator[tuple[LoopbackDiscord, BotRunner, LogRecorder]]:
    models = {"tiny": tiny_gpt2_dir, "bert": tiny_bert_dir}
    async with shared_bot(tmp_path_factory.mktemp("input"), models, DEFAULT_MAX_NEW_TOKENS="6") as running:
        yield running


@pytest.fixture
def server(bot: tuple[LoopbackDiscord, BotRunner, LogRecorder]) -> LoopbackDiscord:
    return bot[0]


def answered(record: InteractionRecord) -> bool:
    """A finished generation, shown publicly, nothing left thinking, nobody pinged."""
    return (
        not record.is_thinking
        and not record.ephemeral
        and bool(GENERATION_FOOTER.search(shown_text(record)))
        and pings_nobody(record)
    )


# -- prompts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "option", "text", "expected"),
    [
        ("generate", "prompt", "", "❌ `prompt` must not be empty"),
        ("generate", "prompt", "   \n\t ", "❌ `prompt` must not be empty"),
        ("chat say", "message", "", "❌ `message` must not be empty"),
        ("chat say", "message", "  ", "❌ `message` must not be empty"),
        ("fill", "text", " ", "❌ `text` must not be empty"),
        ("generate", "prompt", "x" * 9000, "❌ `prompt` must be at most 8000 characters, got 9000"),
    ],
)
async def test_an_empty_blank_or_oversized_prompt_is_refused_naming_the_option(
    server: LoopbackDiscord, command: str, option: str, text: str, expected: str
) -> None:
    # Discord's own min_length/max_length would stop these; a client that skips them must not.
    reply = await ask(server, command, {option: text}, channel=new_channel(server), strict=False)
    assert refusal(reply) == expected, reply.summary()
    assert pings_nobody(reply)


async def test_a_prompt_at_discords_limit_is_answered_and_the_footer_says_it_was_cut(
    server: LoopbackDiscord,
) -> None:
    prompt = ("The dog barked at the mailman every morning. " * 140)[:6000]
    assert len(prompt) == 6000
    reply = await ask(
        server, "generate", {"prompt": prompt, "max_new_tokens": 4}, channel=new_channel(server)
    )
    assert answered(reply), reply.summary()
    text = shown_text(reply)
    assert len(reply.messages) >= 4  # 6000 characters of prompt do not fit one message
    assert text.startswith(f"**{discord.utils.escape_markdown(prompt)}**")
    footer = text.rsplit("\n-# ", 1)[-1]
    assert CUT_NOTE in footer, text[-300:]

    short = await ask(server, "generate", {"prompt": "Once upon a time", "max_new_tokens": 4})
    assert answered(short) and CUT_NOTE not in shown_text(short)

    chat = await ask(server, "chat say", {"message": prompt}, channel=new_channel(server))
    assert answered(chat) and CUT_NOTE in shown_text(chat).rsplit("\n-# ", 1)[-1], chat.summary()
    # /fill can't cut: the words on both sides of the blank matter. It says so instead.
    fill = await ask(server, "fill", {"text": prompt[:5990] + " [MASK]."}, channel=new_channel(server))
    assert (refusal(fill) or "").startswith("❌ `text` is too long for model `tiny`: "), fill.summary()


UNUSUAL_PROMPTS = {
    "control characters": "Once\x00upon\x07a\x1b[31mtime\x7f\x08 end\r\nnext line\x0c",
    "zero-width characters": "Once\u200bupon\u200c\u200da\ufefftime\u2060",
    "only zero-width characters": "\u200b\u200c\u200d\u2060\ufeff",
    "right-to-left text": "שלום עולם مرحبا بالعالم \u202eesrever\u202c and back",
    "emoji": "🐉🔥 Once upon a time 👨‍👩‍👧‍👦 🇫🇷 ✨",
    "a code block": "```python\nprint('hello')\n```\nand `inline` code, and a lone ``` fence",
    "markdown": "**bold** __under__ *it* _it_ ~~strike~~ ||spoiler|| > quote\n# Heading\n- item\n"
    "[masked](https://example.com) -# small \\ backslash",
}


@pytest.mark.parametrize("kind", UNUSUAL_PROMPTS)
async def test_an_unusual_prompt_is_answered_with_its_markdown_escaped(
    server: LoopbackDiscord, kind: str
) -> None:
    prompt = UNUSUAL_PROMPTS[kind]
    reply = await ask(
        server, "generate", {"prompt": prompt, "max_new_tokens": 4}, channel=new_channel(server)
    )
    if refusal(reply) is not None:
        # Text with nothing visible in it may be refused, but then by name.
        assert refusal(reply) == "❌ `prompt` must not be empty", reply.summary()
        return
    assert answered(reply), reply.summary()
    assert (reply.content or "").startswith(f"**{escape(prompt)}**"), reply.content
    assert not UNSAFE.search(reply.content.split("\n-# ")[0].replace(prompt, "")), "echoed verbatim"


async def test_markdown_in_a_prompt_cannot_restyle_the_reply(server: LoopbackDiscord) -> None:
    prompt = UNUSUAL_PROMPTS["markdown"]
    reply = await ask(server, "generate", {"prompt": prompt, "max_new_tokens": 4})
    header = (reply.content or "").split("\n-# ")[0]
    for escaped in (r"\*\*bold\*\*", r"\_\_under\_\_", r"\~\~strike\~\~", r"\|\|spoiler\|\|", r"\# Heading"):
        assert escaped in header, header
    # The only unescaped ** are the header's own, so the prompt can't end the bold early.
    assert header.startswith("**") and header.replace(r"\*", "").count("**") == 2, header

    chat = await ask(server, "chat say", {"message": prompt})
    assert not chat.is_thinking and pings_nobody(chat), chat.summary()
    assert (chat.content or "").startswith(r"> \*\*bold\*\* \_\_under\_\_"), chat.content


async def test_mentions_in_prompts_and_output_ping_nobody(server: LoopbackDiscord) -> None:
    assert server.moderator_role and server.member and server.general
    mentions = (
        f"@everyone @here <@&{server.moderator_role.id}> <@{server.member.id}> "
        f"<@!{server.member.id}> <#{server.general.id}>"
    )
    channel = new_channel(server)
    replies = [
        await ask(
            server,
            "generate",
            {"prompt": f"{mentions} Once upon a time", "max_new_tokens": 4},
            channel=channel,
        ),
        await ask(server, "chat say", {"message": f"Say {mentions}"}, channel=channel),
        await ask(server, "fill", {"text": f"{mentions} is a [MASK]."}, channel=channel),
        # The refusal quotes nothing, but must not ping either.
        await ask(server, "generate", {"prompt": mentions, "top_p": 0.0}, channel=channel),
    ]
    for reply in replies:
        assert not reply.is_thinking and pings_nobody(reply), reply.summary()
        # The mention is shown as typed (a user sees what they wrote); it just pings nobody.
        assert "@everyone" in shown_text(reply) or refusal(reply), reply.summary()


# -- /fill masks -----------------------------------------------------------------------------------

FILL_TEXTS = {
    "no mask": (
        "The capital of France is Paris.",
        "❌ `text` must contain exactly one mask " + MASK_FORMS + ", found none",
    ),
    "two masks of two spellings": (
        "<mask> is the capital of [MASK].",
        "❌ `text` must contain exactly one mask " + MASK_FORMS + ", found 2",
    ),
    "a mask inside a word": ("The capital of France is Par[MASK]s.", None),
    "the <mask> spelling": ("The capital of France is <mask>.", None),
    "a mask at the very start": ("[MASK] is the capital of France.", None),
    "a mask at the very end": ("The capital of France is [MASK]", None),
    "a mask and nothing else": ("[MASK]", None),
    "a lower-case [mask]": (
        "The capital of France is [mask].",
        "❌ `text` must contain exactly one mask " + MASK_FORMS + ", found none",
    ),
}


@pytest.mark.parametrize("model", ["tiny", "bert"])
async def test_fill_answers_or_explains_every_mask_placement(server: LoopbackDiscord, model: str) -> None:
    channel = new_channel(server)
    await ask(server, "config set", {"model": model}, user=server.moderator, channel=channel)
    method = "masked LM" if model == "bert" else "causal LM, sentences rescored"
    failures = []
    for kind, (text, expected) in FILL_TEXTS.items():
        reply = await ask(server, "fill", {"text": text, "top_k": 3}, channel=channel)
        if expected is not None:
            ok = refusal(reply) == expected
        else:
            content = reply.content or ""
            ok = (
                not reply.ephemeral
                and content.startswith(f"**{discord.utils.escape_markdown(text)}**\n")
                and f"\n-# {model} · {method} · " in content
            )
        if not (ok and not reply.is_thinking and pings_nobody(reply)):
            failures.append(f"{kind}: {reply.summary()}")
    assert not failures, "\n".join(failures)


# -- option values past Discord's checks -----------------------------------------------------------

BAD_VALUES: list[tuple[dict[str, object], str]] = [
    ({"temperature": -1.0}, "❌ `temperature` must be in [0, 2], got -1"),
    ({"temperature": math.nan}, "❌ `temperature` must be a finite number, got nan"),
    ({"top_p": math.inf}, "❌ `top_p` must be a finite number, got inf"),
    ({"top_p": -math.inf}, "❌ `top_p` must be a finite number, got -inf"),
    ({"max_new_tokens": -5}, "❌ `max_new_tokens` must be in [1, 512], got -5"),
    ({"max_new_tokens": 10**15}, "❌ `max_new_tokens` must be in [1, 512], got 1000000000000000"),
    ({"max_new_tokens": "ten"}, "❌ `max_new_tokens` must be a whole number, got 'ten'"),
    ({"max_new_tokens": 2.5}, "❌ `max_new_tokens` must be a whole number, got 2.5"),
    ({"max_new_tokens": True}, "❌ `max_new_tokens` must be a whole number, got True"),
]
SETTINGS_ONLY: list[tuple[dict[str, object], str]] = [
    ({"top_k": "abc"}, "❌ `top_k` must be a whole number, got 'abc'"),
    ({"top_k": -1}, "❌ `top_k` must be in [0, 1000], got -1"),
    ({"repetition_penalty": 0.5}, "❌ `repetition_penalty` must be in [1, 2], got 0.5"),
    ({"repetition_penalty": math.nan}, "❌ `repetition_penalty` must be a finite number, got nan"),
    ({"persona": "p" * 10_000}, "❌ `persona` must be at most 2000 characters, got 10000"),
    ({"persona": 42}, "❌ `persona` must be text, got int"),
    ({"model": "nope"}, "❌ unknown model `nope`; available: bert, tiny"),
    ({"model": ""}, "❌ `model` must not be empty"),
    ({"model": 7}, "❌ `model` must be text, got int"),
    # One bad value refuses the whole change: the good one beside it is not written either.
    ({"temperature": 0.5, "top_k": "abc"}, "❌ `top_k` must be a whole number, got 'abc'"),
]


@pytest.mark.parametrize(("options", "expected"), BAD_VALUES + SETTINGS_ONLY)
async def test_settings_set_refuses_a_bad_value_naming_it_and_writes_nothing(
    server: LoopbackDiscord, options: dict[str, object], expected: str
) -> None:
    channel = new_channel(server)
    reply = await ask(server, "config set", options, user=server.moderator, channel=channel, strict=False)
    assert refusal(reply) == expected, reply.summary()
    show = await ask(server, "settings show", channel=channel)
    assert " · *channel*" not in (show.content or ""), show.content


@pytest.mark.parametrize(("options", "expected"), BAD_VALUES)
async def test_generate_refuses_a_bad_value_naming_it(
    server: LoopbackDiscord, options: dict[str, object], expected: str
) -> None:
    reply = await ask(
        server,
        "generate",
        {"prompt": "Once upon a time", **options},
        channel=new_channel(server),
        strict=False,
    )
    assert refusal(reply) == expected, reply.summary()


@pytest.mark.parametrize(
    ("command", "options", "expected"),
    [
        (
            "config set",
            {"scope": "galaxy", "temperature": 0.5},
            "❌ `scope` must be one of channel, server, got 'galaxy'",
        ),
        ("config reset", {"scope": "galaxy"}, "❌ `scope` must be one of channel, server, got 'galaxy'"),
        (
            "config reset",
            {"setting": "colour"},
            "❌ `setting` must be one of all, model, max_new_tokens, temperature, top_p, top_k, "
            "repetition_penalty, chat_memory_minutes, bot_turns, queue_weight, persona, listen, threads, thinking, classify_model, entities_model, answer_model, "
            "summarize_model, translate_model, similar_model, got 'colour'",
        ),
        (
            "story start",
            {"premise": "A dragon", "turns": "chaos"},
            "❌ `turns` must be one of free, round-robin, got 'chaos'",
        ),
    ],
)
async def test_a_value_outside_an_options_choices_is_refused_naming_it(
    server: LoopbackDiscord, command: str, options: dict[str, object], expected: str
) -> None:
    channel = new_channel(server)
    reply = await ask(server, command, options, user=server.moderator, channel=channel, strict=False)
    assert refusal(reply) == expected, reply.summary()
    show = await ask(server, "settings show", channel=channel)
    assert " · *channel*" not in (show.content or "")
    story = await ask(server, "story show", channel=channel)
    assert "no story" in (story.content or "").lower(), story.summary()


# -- malformed interactions ------------------------------------------------------------------------

STRUCTURAL = (
    "no data.options at all",
    "a required option missing",
    "a group invoked without its subcommand",
    "an unknown subcommand",
    "an unknown command",
)


def _options(payload: dict[str, object]) -> list[dict[str, object]]:
    data = payload["data"]
    assert isinstance(data, dict)
    return data.setdefault("options", [])  # type: ignore[no-any-return]


async def test_malformed_interactions_are_logged_and_answered_and_the_bot_stays_up(
    bot: tuple[LoopbackDiscord, BotRunner, LogRecorder],
) -> None:
    server, runner, recorder = bot
    channel = new_channel(server)
    sent: dict[str, InteractionRecord] = {}

    def build(command: str, options: dict[str, object] | None = None) -> dict[str, object]:
        return server.build_interaction(command, options, channel=channel, strict=False)

    no_options = build("generate", {"prompt": "Hello"})
    no_options["data"].pop("options")  # type: ignore[union-attr]
    missing_required = build("generate", {"max_new_tokens": 5})
    group_without_sub = build("settings show")
    group_without_sub["data"].pop("options")  # type: ignore[union-attr]
    unknown_sub = build("settings show")
    _options(unknown_sub)[0]["name"] = "delete"
    int_prompt = build("generate")
    _options(int_prompt).append({"name": "prompt", "type": 4, "value": 42})
    list_prompt = build("generate")
    _options(list_prompt).append({"name": "prompt", "type": 3, "value": ["Once", "upon"]})
    null_prompt = build("generate")
    _options(null_prompt).append({"name": "prompt", "type": 3, "value": None})
    string_tokens = build("generate", {"prompt": "Hello"})
    _options(string_tokens).append({"name": "max_new_tokens", "type": 3, "value": "many"})
    cases: dict[str, dict[str, object]] = {
        "no data.options at all": no_options,
        "a required option missing": missing_required,
        "a group invoked without its subcommand": group_without_sub,
        "an unknown subcommand": unknown_sub,
        "an unknown command": build("no-such-command", {"x": 1}),
        "an integer prompt": int_prompt,
        "a list for a prompt": list_prompt,
        "a null prompt": null_prompt,
        "a string for an integer option": string_tokens,
    }
    for kind, payload in cases.items():
        sent[kind] = await server.send_raw_interaction(payload)
    failures = []
    for kind, record in sent.items():
        try:
            await record.wait_for(lambda r: r.responded and not r.is_thinking, 15)
        except TimeoutError:
            failures.append(f"{kind}: never answered: {record.summary()}")
            continue
        text = refusal(record)
        if text is None or text == GENERIC_ERROR or not pings_nobody(record):
            failures.append(f"{kind}: {record.summary()}")
    assert not failures, "\n".join(failures)

    # A payload that doesn't fit the synced commands is in the log (a warning naming the
    # command), so an operator can see a client or a command list gone stale.
    warnings = [r.getMessage() for r in recorder.records if r.levelno >= logging.WARNING]
    for kind in STRUCTURAL:
        name = sent[kind].command.split()[0]
        assert any(f"/{name}" in w for w in warnings), (kind, warnings[-10:])

    # The bot is still up and answers the next normal command.
    assert runner.bot is not None and not runner.bot.is_closed()
    after = await ask(server, "generate", {"prompt": "Still there?", "max_new_tokens": 3}, channel=channel)
    assert answered(after), after.summary()
