"""The soak's moving parts, each of which it can break: a TCP relay in front of PostgreSQL (closed,
the database is gone for every bot; it never stops the server others may share), llama-server in a
process of its own (killed with SIGKILL and started again on the same port), the bot processes
(killed and started again), and busy neighbours on the CPU.

``python -m benchmarks.soak_faults engine --gguf PATH --port N`` is the engine's process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from benchmarks.shards import start_bot


class Relay:
    """A TCP relay between the bots and PostgreSQL: closing it is the server going away (every
    connection drops, new ones are refused); opening it again, on the same port, brings it back.
    ``silent``: a partition instead, the connections open and nothing coming through."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()
        self.port = 0
        self.silent = False  # True: bytes go nowhere and nothing is reset (packets dropped)

    @classmethod
    async def before(cls, url: str) -> Relay:
        """An open relay in front of the server ``url`` (a PostgreSQL URL) names."""
        parts = urlsplit(url)
        relay = cls(parts.hostname or "127.0.0.1", parts.port or 5432)
        await relay.open()
        return relay

    def route(self, url: str) -> str:
        """``url`` through this relay: the same user, password, database and options."""
        parts = urlsplit(url)
        credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{credentials}127.0.0.1:{self.port}"))

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        server.close()
        for pipe in list(self.pipes):
            pipe.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)
        await server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self.silent:
                        continue
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        for task in (
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            self.pipes.add(task)
            task.add_done_callback(self.pipes.discard)


class Engine:
    """llama-server (the ``xllamacpp`` wheel over HTTP) in a process of its own, on a fixed port."""

    def __init__(self, gguf: Path, port: int, *, slots: int, threads: int, log: Path) -> None:
        self.gguf, self.port, self.slots, self.threads, self.log = gguf, port, slots, threads, log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, timeout: float = 120.0) -> None:
        command = [sys.executable, "-m", "benchmarks.soak_faults", "engine", "--gguf", str(self.gguf)]
        command += ["--port", str(self.port), "--slots", str(self.slots), "--threads", str(self.threads)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)  # noqa: ASYNC220
        self.starts += 1
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"llama-server exited {self.process.returncode}; see {self.log}")
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.3)
        raise RuntimeError(f"llama-server did not answer within {timeout:g} s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class BotProcess:
    """One ``python bot.py`` for one shard; each start writes its output to a file of its own."""

    def __init__(self, shard: int, folder: Path, env: dict[str, str]) -> None:
        self.shard, self.folder, self.env = shard, folder, env
        self.process: asyncio.subprocess.Process | None = None
        self.runs: list[Path] = []
        self.pids: list[int] = []

    async def start(self) -> None:
        folder = self.folder / f"run-{len(self.runs)}"
        self.process = await start_bot(folder, {**self.env, "SHARD_IDS": str(self.shard)})
        self.runs.append(folder / "out.txt")
        self.pids.append(self.process.pid)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def kill(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, as an operator stops it; the exit status (None: it had to be killed)."""
        if not self.alive:
            return self.process.returncode if self.process else None
        assert self.process is not None
        self.process.terminate()
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            await self.kill()
            return None


class Neighbours:
    """Busy processes that never sleep, at the bot's priority: a neighbour taking the CPU."""

    def __init__(self) -> None:
        self.hogs: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        self.hogs += [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]

    def stop(self) -> None:
        for hog in self.hogs:
            hog.kill()
            hog.wait()
        self.hogs.clear()


def serve_engine(gguf: Path, port: int, slots: int, threads: int) -> None:
    from benchmarks.rival import http_server

    with http_server(gguf, slots=slots, context=512, threads=threads, port=port):
        print(f"llama-server on port {port} (pid {os.getpid()})", flush=True)
        while True:
            time.sleep(3600)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak_faults")
    parser.add_argument("what", choices=["engine"])
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    serve_engine(args.gguf, args.port, args.slots, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
