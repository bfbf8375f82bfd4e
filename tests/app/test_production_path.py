"""``python bot.py`` as a server admin runs it: a token in ``.env``, no API base, no gateway.

Name resolution is intercepted in the child process (``resolver_site/sitecustomize.py``), so
nothing leaves the machine: offline, every name fails to resolve; otherwise ``discord.com`` and
``gateway.discord.gg`` resolve to a loopback server speaking TLS with a certificate for those
names, trusted through ``SSL_CERT_FILE``. The bot's own code never learns it is not Discord.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loopback import LoopbackDiscord
from tests.fixtures.bot_process import START_S, BotProcess, connected_anew

pytestmark = pytest.mark.timeout(180)

TOKEN = "MTk4NjIyNDgzNDcxOTI1MjQ4.Gx-Prod.Path-S3cret_t0ken"
SITE = Path(__file__).resolve().parent / "resolver_site"
DISCORD_HOSTS = ("discord.com", "gateway.discord.gg")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for Discord's names (and 127.0.0.1, where a RESUME goes)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a certificate for the TLS loopback server")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=discord.com"),
            *("-addext", "subjectAltName=DNS:discord.com,DNS:gateway.discord.gg,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def discord_com(certificate: tuple[Path, Path]) -> AsyncIterator[LoopbackDiscord]:
    """A loopback server over TLS, holding the bot's real token unless a test says otherwise."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    server = LoopbackDiscord(token=TOKEN)
    await server.start(ssl_context=context)
    try:
        yield server
        assert not server.contract_violations, [v.describe() for v in server.contract_violations]
    finally:
        await server.stop()


def user_setup(
    folder: Path, tiny_gpt2_dir: Path, routes: dict[str, int], certificate: Path | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """(the process environment, the user's .env): a token and a model; nothing about where Discord is."""
    env = {
        "PYTHONPATH": str(SITE),
        "RESOLVE_LOG": str(folder / "resolved.txt"),
        "RESOLVE_MAP": json.dumps(routes),
    }
    if certificate is not None:
        env["SSL_CERT_FILE"] = str(certificate)
    dotenv = {
        "DISCORD_TOKEN": TOKEN,
        "MODELS": f"tiny={tiny_gpt2_dir}",
        "MODEL_DEVICE": "cpu",
        "MODEL_DTYPE": "float32",
        "MODEL_OFFLINE": "true",
        "DATABASE_PATH": str(folder / "data" / "transcord.sqlite3"),
        "SHUTDOWN_GRACE_S": "1",
    }
    return env, dotenv


def resolved(folder: Path) -> set[str]:
    path = folder / "resolved.txt"
    return {line.split()[0] for line in path.read_text().splitlines()} if path.exists() else set()


def lines_of(process: BotProcess) -> list[str]:
    """The log lines, without the colours discord.py's handler adds in a container."""
    text = ANSI.sub("", process.output())
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def assert_plain(process: BotProcess) -> None:
    """What an admin reads: no traceback, and the token in no form."""
    output = process.output()
    assert "Traceback" not in output, output[-3000:]
    for secret in (TOKEN, *TOKEN.split(".")):
        assert secret not in output, secret


async def run_to_exit(folder: Path, env: dict[str, str], dotenv: dict[str, str]) -> tuple[int, BotProcess]:
    process = await BotProcess(folder, env, dotenv).start()
    try:
        return await process.wait(START_S), process
    finally:
        await process.stop()


def tls_routes(server: LoopbackDiscord) -> dict[str, int]:
    port = int(server.url.rsplit(":", 1)[1])
    return dict.fromkeys(DISCORD_HOSTS, port)


# -- offline ---------------------------------------------------------------------------------------


async def test_offline_it_heads_for_discord_and_says_in_one_line_that_it_cannot_reach_it(
    tmp_path: Path, tiny_gpt2_dir: Path
) -> None:
    env, dotenv = user_setup(tmp_path, tiny_gpt2_dir, routes={})
    code, process = await run_to_exit(tmp_path, env, dotenv)

    assert code == 1, process.output()[-3000:]
    assert "discord.com" in resolved(tmp_path)  # REST goes to Discord itself
    errors = [line for line in lines_of(process) if " ERROR " in line]
    assert len(errors) == 1, errors
    assert errors[0].endswith(
        "could not reach Discord at discord.com (its name could not be resolved); check this "
        "machine's internet connection, DNS and firewall (HTTPS to discord.com:443 must be allowed)"
    ), errors
    assert any(
        "connecting to Discord (discord.com, gateway.discord.gg)" in line for line in lines_of(process)
    )
    assert_plain(process)


# -- Discord answers, but not as hoped ---------------------------------------------------------------


async def test_a_refused_token_is_said_plainly_and_the_bot_exits_2_so_it_is_not_restarted(
    tmp_path: Path, tiny_gpt2_dir: Path, discord_com: LoopbackDiscord, certificate: tuple[Path, Path]
) -> None:
    discord_com.state.token = "another-token"
    env, dotenv = user_setup(tmp_path, tiny_gpt2_dir, tls_routes(discord_com), certificate[0])
    code, process = await run_to_exit(tmp_path, env, dotenv)

    assert code == 2, process.output()[-3000:]  # as for a bad setting: restarting cannot help
    assert [c.status for c in discord_com.calls_to("GET", "/users/@me")] == [401]
    assert "Discord refused the bot token (DISCORD_TOKEN)" in process.output()
    assert_plain(process)


async def test_discord_failing_at_login_is_said_plainly_and_the_bot_exits_1(
    tmp_path: Path, tiny_gpt2_dir: Path, discord_com: LoopbackDiscord, certificate: tuple[Path, Path]
) -> None:
    discord_com.inject_error(503, "GET", "/users/@me", count=None)
    env, dotenv = user_setup(tmp_path, tiny_gpt2_dir, tls_routes(discord_com), certificate[0])
    code, process = await run_to_exit(tmp_path, env, dotenv)

    assert code == 1, process.output()[-3000:]
    errors = [line for line in lines_of(process) if " ERROR " in line]
    assert len(errors) == 1 and "Discord answered 503" in errors[0], errors
    assert "discordstatus.com" in errors[0]
    assert_plain(process)


async def test_a_ban_at_login_is_said_plainly_and_the_bot_exits_1(
    tmp_path: Path, tiny_gpt2_dir: Path, discord_com: LoopbackDiscord, certificate: tuple[Path, Path]
) -> None:
    discord_com.inject_ban("GET", "/users/@me", count=None)
    env, dotenv = user_setup(tmp_path, tiny_gpt2_dir, tls_routes(discord_com), certificate[0])
    code, process = await run_to_exit(tmp_path, env, dotenv)

    assert code == 1, process.output()[-3000:]
    assert "Discord is refusing this machine's requests (429 Too Many Requests" in process.output()
    assert_plain(process)


async def test_a_rate_limit_at_login_is_waited_out_then_a_dropped_gateway_reconnects(
    tmp_path: Path, tiny_gpt2_dir: Path, discord_com: LoopbackDiscord, certificate: tuple[Path, Path]
) -> None:
    limit = discord_com.inject_429("GET", "/users/@me", count=1, retry_after=0.5)
    env, dotenv = user_setup(tmp_path, tiny_gpt2_dir, tls_routes(discord_com), certificate[0])
    process = await BotProcess(tmp_path, env, dotenv).start()
    try:
        await connected_anew(discord_com, process)
        assert limit.hits == 1 and [c.status for c in discord_com.calls_to("GET", "/users/@me")] == [429, 200]
        assert set(DISCORD_HOSTS) <= resolved(tmp_path)  # REST at discord.com, the socket at the gateway
        await discord_com.wait_for(lambda: any(" ready as " in line for line in lines_of(process)), 30)

        discord_com.refuse_gateway(2)  # the gateway in trouble for two attempts
        await discord_com.drop_gateway(None)  # the TCP stream cut, no close frame
        await discord_com.wait_connected(timeout=60)
        status = await (await discord_com.invoke("status")).wait_final(30)
        assert (status.content or "").startswith("**Status**\n• **tiny** on transformers, `cpu`"), (
            status.summary()
        )
        assert [e.kind for e in discord_com.gateway.events if e.kind in ("refused", "resume")] == [
            "refused",
            "refused",
            "resume",
        ]

        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
        code = await process.wait(30)
    finally:
        await process.stop()

    assert code == 0, process.output()[-3000:]
    # Each failed attempt is one plain line; the resumed session says so.
    dropped = [line for line in lines_of(process) if "lost the connection to Discord" in line]
    assert len(dropped) == 2 and all("reconnecting in" in line for line in dropped), dropped
    assert any("successfully RESUMED session" in line for line in lines_of(process))
    assert_plain(process)


async def test_a_database_that_cannot_be_opened_is_said_plainly_and_the_bot_exits_2(
    tmp_path: Path, tiny_gpt2_dir: Path
) -> None:
    (tmp_path / "blocked").write_text("a file where the database folder should be")
    env, dotenv = user_setup(tmp_path, tiny_gpt2_dir, routes={})
    dotenv["DATABASE_PATH"] = str(tmp_path / "blocked" / "transcord.sqlite3")
    code, process = await run_to_exit(tmp_path, env, dotenv)

    assert code == 2, process.output()[-3000:]  # a setting to fix: restarting cannot help
    errors = [line for line in lines_of(process) if " ERROR " in line]
    assert len(errors) == 1, errors
    assert f"could not open the database {tmp_path / 'blocked' / 'transcord.sqlite3'} (" in errors[0]
    assert errors[0].endswith("check DATABASE_PATH and the folder's permissions")
    assert "discord.com" not in resolved(tmp_path)  # it stopped before trying to connect
    assert_plain(process)
