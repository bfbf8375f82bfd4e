"""Where the playground's lines come from: a prompt_toolkit prompt in a terminal, else a pipe or file.

Every source reads without blocking the event loop, so the bot keeps answering heartbeats (and
finishing replies) while the playground waits for the next line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import ANSI
from prompt_toolkit.history import InMemoryHistory

from app.playground.parse import MARKER, by_name, find_command, subcommands, walk


class LineSource(Protocol):
    interactive: bool

    async def read(self, prompt: str) -> str | None:
        """The next line without its newline; None at the end of input (EOF, Ctrl-D, Ctrl-C)."""
        ...

    def close(self) -> None: ...


class TextSource:
    """A file-like object read directly: a StringIO, or a regular file (reads do not block)."""

    interactive = False

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    async def read(self, prompt: str) -> str | None:
        await asyncio.sleep(0)
        line = self.stream.readline()
        return line.rstrip("\r\n") if line else None

    def close(self) -> None:
        pass


class PipeSource:
    """A pipe, socket or character device, read through the event loop."""

    interactive = False

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._fallback = False
        self._encoding = getattr(stream, "encoding", None) or "utf-8"

    async def read(self, prompt: str) -> str | None:
        if self._reader is None and not self._fallback:
            await self._connect()
        if self._reader is None:  # not pollable (/dev/null): reads return at once anyway
            raw = self.stream.readline()
            return raw.rstrip("\r\n") if raw else None
        line = await self._reader.readline()
        return line.decode(self._encoding, errors="replace").rstrip("\r\n") if line else None

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        protocol = asyncio.StreamReaderProtocol(reader)
        # A duplicate descriptor: closing the transport must not close the process's stdin.
        pipe = os.fdopen(os.dup(self.stream.fileno()), "rb", buffering=0)
        try:
            self._transport, _ = await loop.connect_read_pipe(lambda: protocol, pipe)
        except (OSError, ValueError):
            pipe.close()
            self._fallback = True
            return
        self._reader = reader

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            # The duplicate shares the file status flags: give the terminal or pipe back blocking.
            with contextlib.suppress(OSError, ValueError):
                os.set_blocking(self.stream.fileno(), True)


class PromptSource:
    """An interactive prompt: completion of commands and options, history for this session."""

    interactive = True

    def __init__(self, completer: Completer) -> None:
        self.session: PromptSession[str] = PromptSession(
            history=InMemoryHistory(), completer=completer, complete_while_typing=True
        )

    async def read(self, prompt: str) -> str | None:
        try:
            return await self.session.prompt_async(ANSI(prompt))
        except EOFError:
            return None
        except KeyboardInterrupt:
            # Ctrl-C discards a half-typed line, as in a shell; on an empty line it leaves.
            return "" if self.session.default_buffer.text.strip() else None

    def close(self) -> None:
        pass


def open_source(stdin: TextIO | None, stdout: TextIO, completer: Completer) -> LineSource:
    """A prompt when both ends are a terminal; otherwise the lines as they come."""
    stream = stdin if stdin is not None else sys.stdin
    if _isatty(stream) and _isatty(stdout) and stdin is None:
        return PromptSource(completer)
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return TextSource(stream)  # StringIO and friends have no descriptor
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode):
        return PipeSource(stream)
    return TextSource(stream)


def _isatty(stream: Any) -> bool:
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return bool(stream.isatty())
    return False


class CommandCompleter(Completer):
    """Command paths, subcommands, ``name:`` options and choice values from the synced schema,
    and ``@name`` mentions in a message.

    ``commands`` gives the synced commands (guild ones first); ``meta`` maps each local
    meta-command to a function listing its arguments; ``mentions`` lists the ``@names`` a
    message may mention.
    """

    def __init__(
        self,
        commands: Callable[[], Sequence[dict[str, Any]]],
        meta: dict[str, Callable[[], Iterable[str]]],
        mentions: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.commands = commands
        self.meta = meta
        self.mentions = mentions

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/"):
            word = document.get_word_before_cursor(WORD=True)
            if word.startswith("@"):
                yield from _matching(self.mentions(), word)
            return
        word = document.get_word_before_cursor(WORD=True)
        head = text[: len(text) - len(word)]
        words = head[1:].split()
        if not words:
            yield from self._command_names(word)
            return
        name = words[0].lower()
        if name in self.meta:
            yield from _matching(self.meta[name](), word)
            return
        command = find_command(self.commands(), name)
        if command is None:
            return
        _, schema, used = walk(command, words[1:])
        subs = subcommands(schema)
        if subs:
            if used == len(words) - 1:
                yield from _matching([o["name"] + " " for o in subs], word, meta=_descriptions(subs))
            return
        yield from self._options(schema, head, word)

    def _command_names(self, word: str) -> Iterable[Completion]:
        commands = self.commands()
        names = {f"/{c['name']}": c.get("description", "") for c in commands if c.get("type", 1) == 1}
        names.update({f"/{m}": "playground" for m in self.meta})
        for name in sorted(names):
            if name.startswith(word or "/"):
                yield Completion(name + " ", -len(word), display=name, display_meta=names[name])

    def _options(self, schema: list[dict[str, Any]], head: str, word: str) -> Iterable[Completion]:
        known = by_name(schema)
        markers = [m for m in MARKER.finditer(head) if m.group(1) in known]
        last = markers[-1] if markers else None
        if last is not None and not head[last.end() :].strip():
            # Right after ``name:``: offer that option's choices, if it has any.
            choices = known[last.group(1)].get("choices") or []
            yield from _matching([str(c["value"]) for c in choices], word)
            return
        used = {m.group(1) for m in markers}
        free = [o for o in schema if o["name"] not in used]
        yield from _matching(
            [f"{o['name']}: " for o in free],
            word,
            meta={
                f"{o['name']}: ": ("required · " if o.get("required") else "") + o.get("description", "")
                for o in free
            },
        )


def _descriptions(options: Sequence[dict[str, Any]]) -> dict[str, str]:
    return {o["name"] + " ": o.get("description", "") for o in options}


def _matching(
    candidates: Iterable[str], word: str, meta: dict[str, str] | None = None
) -> Iterable[Completion]:
    for candidate in candidates:
        if candidate.lower().startswith(word.lower()):
            yield Completion(candidate, -len(word), display_meta=(meta or {}).get(candidate, ""))
