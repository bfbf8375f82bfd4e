"""The playground as a user meets it: typed commands in, replies out, with the real bot and a tiny model."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from app.environment import load_config
from app.playground import run_playground
from app.playground import session as playground_module
from app.playground.input import CommandCompleter
from app.playground.parse import ParseError, parse_command
from core.config import BotConfig
from loopback import LoopbackDiscord

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[3]
ECHO = re.compile(r"^\w[\w-]* in #[^>\n]+> ", re.MULTILINE)
# Discord bot tokens: base64 user id . timestamp . HMAC.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")

# The schemas discord.py syncs for two of the bot's commands (trimmed to what parsing reads).
GENERATE = {
    "name": "generate",
    "type": 1,
    "options": [
        {"name": "prompt", "type": 3, "required": True, "min_length": 1, "max_length": 6000},
        {"name": "max_new_tokens", "type": 4, "min_value": 1, "max_value": 1024},
        {"name": "temperature", "type": 10, "min_value": 0.0, "max_value": 2.0},
    ],
}
SETTINGS = {
    "name": "settings",
    "type": 1,
    "options": [
        {"name": "show", "type": 1, "options": []},
        {
            "name": "set",
            "type": 1,
            "options": [
                {
                    "name": "scope",
                    "type": 3,
                    "choices": [
                        {"name": "channel", "value": "channel"},
                        {"name": "server", "value": "server"},
                    ],
                },
                {"name": "temperature", "type": 10, "min_value": 0.0, "max_value": 2.0},
                {"name": "persona", "type": 3, "max_length": 2000},
            ],
        },
    ],
}
SCHEMA = [GENERATE, SETTINGS]


@pytest.fixture
def config(tiny_gpt2_dir: Path, tmp_path: Path) -> BotConfig:
    return load_config(
        {
            "MODELS": f"tiny={tiny_gpt2_dir}",
            "DATABASE_PATH": str(tmp_path / "transcord.sqlite3"),
            "MODELS_DIR": str(tmp_path),
            "STREAM_EDIT_INTERVAL_S": "0.2",
            "MODEL_DEVICE": "cpu",
            "MODEL_DTYPE": "float32",
            "MODEL_OFFLINE": "true",
            "PRELOAD_MODELS": "true",
            "SHUTDOWN_GRACE_S": "2",
        }
    )


async def play(config: BotConfig, *lines: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_playground(config, stdin=io.StringIO("".join(f"{line}\n" for line in lines)), stdout=out)
    return code, out.getvalue()


def section(transcript: str, line: str) -> str:
    """What the playground printed for ``line``: from its echo to the next echoed command."""
    starts = [m.start() for m in ECHO.finditer(transcript)]
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(transcript)
        block = transcript[start:end]
        if block.split("> ", 1)[1].splitlines()[0] == line:
            return block
    raise AssertionError(f"{line!r} was not run; transcript:\n{transcript}")


# -- a whole session, as a script ----------------------------------------------------------------


async def test_a_scripted_session_shows_what_a_discord_user_would_see(config: BotConfig) -> None:
    code, out = await play(
        config,
        "# comments and blank lines are skipped",
        "",
        "/generate prompt: Once upon a time max_new_tokens: 8",
        "/fill text: The capital of France is [MASK].",
        "/config set temperature: 0.3",
        "/as moderator",
        "/config set temperature: 0.3",
        "/channel thread",
        "/settings show",
        "/bogus",
        "/generate colour: red prompt: hi",
        "/status verbose: yes",
        "/generate prompt: hi temperature: warm",
        "/generate prompt: hi max_new_tokens: 5000",
        "/channel new lab",
        "/config set top_p: 0.5",
        "/thread new plot twist",
        "/settings show",
        "/help",
    )
    assert code == 0, out
    assert out.startswith("Transcord playground — a local Discord-compatible server; type /help")

    generated = section(out, "/generate prompt: Once upon a time max_new_tokens: 8")
    assert "Transcord is thinking…" in generated
    # Piped output holds the final state once, not every streamed edit.
    assert generated.count("**Once upon a time**") == 1 and " …\n" not in generated
    body = generated.split("**Once upon a time**", 1)[1]
    footer = re.search(r"-# (\d+) tokens · [\d.]+ s · tiny", body)
    assert footer and 1 <= int(footer.group(1)) <= 8
    continuation = body[: footer.start()].strip()
    assert continuation and "no text" not in continuation

    filled = section(out, "/fill text: The capital of France is [MASK].")
    assert "**The capital of France is [MASK].**" in filled
    ranks = re.findall(r"`(\d)\.` `[█░]{12}`\s+[\d.]+%\s+\*\*.+\*\*", filled)
    assert len(ranks) >= 2 and ranks == [str(i) for i in range(1, len(ranks) + 1)]
    assert "causal LM, sentences rescored" in filled

    refused = section(out, "/config set temperature: 0.3")  # the first one: as the member
    # As in Discord, a member does not even see /config: the bot is never asked.
    assert "error: Discord hides /config from member: it needs Manage Channels" in refused
    assert "You are now moderator in #general." in section(out, "/as moderator")
    changed = out.split("moderator in #general> /config set temperature: 0.3", 1)[1]
    assert "⚙️ @moderator set **temperature** → `0.3` for #general." in changed.split("> ", 1)[0]
    assert "thread “side-story” in #general" in section(out, "/channel thread")
    shown = out.split("moderator in #side-story> /settings show", 1)[1].split("> ", 1)[0]
    assert "(only you can see this)" in shown
    assert "• **temperature**: `0.3` · *channel*" in shown  # the thread inherits its channel's value

    assert "error: unknown command /bogus" in section(out, "/bogus")
    assert "error: /generate has no option `colour`" in section(out, "/generate colour: red prompt: hi")
    assert "error: /status has no option `verbose`" in section(out, "/status verbose: yes")
    assert "error: /generate: `temperature` must be a number, got `warm`" in section(
        out, "/generate prompt: hi temperature: warm"
    )
    assert "`max_new_tokens` must be between 1 and 1024, got 5000" in section(
        out, "/generate prompt: hi max_new_tokens: 5000"
    )

    assert "Created #lab." in section(out, "/channel new lab")
    assert "Created thread “plot twist” in #lab." in section(out, "/thread new plot twist")
    in_thread = out.split("moderator in #plot twist> /settings show", 1)[1].split("> ", 1)[0]
    assert "• **top_p**: `0.5` · *channel*" in in_thread and "• **temperature**: `0.7`" in in_thread

    assert "**/generate** `prompt`" in section(out, "/help")  # the errors above did not stop it


async def test_buttons_and_replies_work_from_the_playground(config: BotConfig) -> None:
    code, out = await play(
        config,
        "/press Regenerate",
        "/generate prompt: Once upon a time max_new_tokens: 6",
        "/press Regenerate",
        "/press Continue",
        "/press Stop",
        "/press Launch",
        "/reply And then?",
    )
    assert code == 0, out
    assert "no answer with buttons in #general yet" in section(out, "/press Regenerate")
    seeds = re.findall(r"seed (\d+)", out)
    assert len(seeds) >= 3 and len(set(seeds[:2])) == 2  # regenerated: a new seed
    continued = section(out, "/press Continue")
    assert re.search(r"-# 12 tokens · .* · continued", continued), continued
    assert "is disabled" in section(out, "/press Stop")  # nothing is being written
    assert "/press takes one of: Stop, Regenerate, Continue" in section(out, "/press Launch")
    replied = section(out, "/reply And then?")
    assert re.search(r"-# \d+ tokens · ", replied) and "[Regenerate]" in replied


async def test_plain_messages_talk_to_the_real_bot(config: BotConfig) -> None:
    code, out = await play(
        config,
        "hello there",
        "@Transcord Once upon a time",
        "/as moderator",
        "/config set threads: on",
        "@bot tell me more",
    )
    assert code == 0, out
    assert "(Transcord did not answer: mention it with @Transcord)" in section(out, "hello there")
    answered = section(out, "@Transcord Once upon a time")
    assert re.search(r"^Transcord:\n(  .*\n)+  -# \d+ tokens · ", answered, re.MULTILINE), answered
    threaded = section(out, "@bot tell me more")
    assert re.search(r"^Transcord opened thread #.+ \(you are in it now\)$", threaded, re.MULTILINE), threaded
    assert re.search(r"-# \d+ tokens · ", threaded), threaded
    assert "moderator in #tell me more> " not in threaded  # nothing was typed there yet


async def test_the_playground_exits_non_zero_when_the_bot_crashes(
    config: BotConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers: list[LoopbackDiscord] = []

    class Recording(LoopbackDiscord):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            servers.append(self)

    class Poisoned(io.StringIO):
        """Sends the bot an interaction discord.py cannot parse, then asks for /help."""

        def readline(self, *args: Any) -> str:
            if servers and not getattr(self, "sent", False):
                self.sent = True
                servers[0].send_raw_dispatch("INTERACTION_CREATE", {"type": 2})
                return "/help\n"
            return ""

    monkeypatch.setattr(playground_module, "LoopbackDiscord", Recording)
    out = io.StringIO()
    code = await run_playground(config, stdin=Poisoned(), stdout=out)
    assert code == 1
    assert "error: the bot stopped" in out.getvalue()


# -- reading a line as Discord would -----------------------------------------------------------------


def test_a_value_runs_until_the_next_known_option_so_colons_in_text_survive() -> None:
    parsed = parse_command("/generate prompt: Story: a: b http://x.y max_new_tokens: 40", SCHEMA)
    assert parsed.path == "generate"
    assert parsed.options == {"prompt": "Story: a: b http://x.y", "max_new_tokens": 40}


def test_subcommands_choices_and_numbers_take_their_types() -> None:
    parsed = parse_command("/settings set scope: Server temperature: 0.25 persona: Be: brief", SCHEMA)
    assert parsed.path == "settings set"
    assert parsed.options == {"scope": "server", "temperature": 0.25, "persona": "Be: brief"}
    assert parse_command("/settings show", SCHEMA).options == {}


def test_text_right_after_the_command_fills_its_first_required_option() -> None:
    assert parse_command("/generate Once upon a time", SCHEMA).options == {"prompt": "Once upon a time"}


def test_a_mistyped_option_inside_a_value_gets_a_note() -> None:
    parsed = parse_command("/generate prompt: hi max_tokens: 5", SCHEMA)
    assert parsed.options == {"prompt": "hi max_tokens: 5"}
    assert any("did you mean `max_new_tokens:`" in note for note in parsed.notes)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/nope", "unknown command /nope"),
        ("/generat prompt: x", "did you mean /generate?"),
        ("/generate max_new_tokens: 4", "missing the required option `prompt`"),
        ("/generate prompt: x max_new_tokens: 4.5", "`max_new_tokens` must be a whole number, got `4.5`"),
        ("/generate prompt: x temperature: nan", "`temperature` must be a finite number"),
        ("/generate prompt: x temperature: 3", "`temperature` must be between 0 and 2, got 3"),
        ("/generate prompt: x prompt: y", "option `prompt` is given twice"),
        ("/generate prompt:", "`prompt` must be 1..6000 characters long, got nothing"),
        ("/settings", "/settings needs a subcommand, one of: show, set"),
        ("/settings sett temperature: 1", "/settings has no subcommand `sett`"),
        ("/settings set scope: planet", "`scope` must be one of channel, server"),
        ("/settings show extra", "/settings show: `extra` is not an option"),
        ("generate prompt: x", "a command starts with /"),
    ],
)
def test_malformed_lines_name_the_problem(line: str, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_command(line, SCHEMA)
    assert message in str(caught.value)


def test_the_completer_offers_commands_subcommands_options_and_choices() -> None:
    completer = CommandCompleter(lambda: SCHEMA, {"as": lambda: ["moderator", "member"]})

    def complete(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text), CompleteEvent())]

    assert complete("/") == ["/as ", "/generate ", "/settings "]
    assert complete("/settings s") == ["show ", "set "]
    assert complete("/generate prompt: hi m") == ["max_new_tokens: "]
    assert complete("/generate prompt: hi ") == ["max_new_tokens: ", "temperature: "]
    assert complete("/settings set scope: ") == ["channel", "server"]
    assert complete("/as mo") == ["moderator"]


# -- the real entry point ------------------------------------------------------------------------


def test_bot_py_playground_answers_piped_help_and_keeps_the_token_secret(
    tiny_gpt2_dir: Path, tmp_path: Path
) -> None:
    fake_token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
    env = {
        **os.environ,
        "DISCORD_TOKEN": fake_token,  # --playground runs the playground even with a token
        "MODELS": f"tiny={tiny_gpt2_dir}",
        "MODELS_DIR": str(tmp_path),
        "DATABASE_PATH": str(tmp_path / "db.sqlite3"),
        "MODEL_DEVICE": "cpu",
        "MODEL_OFFLINE": "true",
        "LOG_LEVEL": "INFO",
    }
    done = subprocess.run(
        [sys.executable, "bot.py", "--playground", "--env-file", str(tmp_path / "absent.env")],
        input="/help\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "member in #general> /help" in done.stdout
    assert "Transcord (only you can see this):" in done.stdout
    assert "**/generate** `prompt`" in done.stdout and "**/fill** `text`" in done.stdout
    for stream in (done.stdout, done.stderr):
        assert fake_token not in stream and "loopback-bot-token" not in stream
        assert not TOKEN_SHAPE.search(stream)


async def test_a_story_with_a_cast_shows_each_line_under_its_speakers_name(config: BotConfig) -> None:
    code, out = await play(
        config,
        "/as moderator",
        "/character create name: Mira persona: A pirate captain.",
        "/character create name: Bard persona: A wandering singer.",
        "/story start premise: A ship at sea cast: Mira, Bard length: short",
        "/story add text: The crew sings.",
        "/story add text: The wind rises.",
        "@Transcord Mira, what do you see?",
        "/story show",
    )
    assert code == 0, out

    def spoke(name: str) -> str:  # a message under ``name``: its lines indented, ending in a footer
        return rf"\n{name}:\n(?:  .*\n)*?  -# \d+ tokens · "

    # The story's header is the bot's reply; the opening is the narrator's, under its own name.
    started = section(out, "/story start premise: A ship at sea cast: Mira, Bard length: short")
    assert re.search(
        r"Transcord:\n  📖 \*\*Story #1\*\* · .*cast \(rotation\): \*\*Narrator\*\*, \*\*Mira\*\*", started
    )
    assert re.search(spoke("Narrator"), started), started
    # Each player's turn is the bot's reply, then the next of the cast speaks under its name.
    first = section(out, "/story add text: The crew sings.")
    assert re.search(r"Transcord:\n  ✍️ \*\*moderator\*\*: The crew sings." + spoke("Mira"), first), first
    second = section(out, "/story add text: The wind rises.")
    assert re.search(spoke("Bard"), second) and "\nMira:\n" not in second, second
    # A character answering a mention shows under its name too, not the bot's.
    answered = section(out, "@Transcord Mira, what do you see?")
    assert re.search(spoke("Mira"), answered) and "\nTranscord:\n" not in answered, answered
    shown = section(out, "/story show")
    assert "`1` **Narrator**: " in shown and "`3` **Mira**: " in shown and "`5` **Bard**: " in shown
