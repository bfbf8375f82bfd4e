"""The playground: try Transcord with no Discord account.

``python bot.py`` without a token (or with ``--playground``) starts :class:`LoopbackDiscord`, the
real bot against it, and a terminal client, as any member in any channel or thread:
- a line starting with ``/`` is a slash command, typed as in Discord
  (``/generate prompt: Once upon a time max_new_tokens: 40``); the replies show as they arrive;
- any other line is a message from the member in the current channel, where ``@Transcord`` (the
  bot's name, any case) or ``@bot`` becomes a real mention: the bot's answer is shown (a reply,
  or its answer in a thread it opened from the message, where the session then moves), or a
  note that it did not answer.
``/as``, ``/channel``, ``/thread``, ``/press``, ``/reply``, ``/playground``, ``/quit`` and
``/exit`` are the playground's own; every other command goes to the bot. In a terminal the
prompt completes commands, options and ``@`` mentions; piped input is run line by line, each
reply printed once settled, so ``printf '/help\\n@Transcord hi\\n' | python bot.py --playground``
makes a clean transcript (a line starting with ``#`` is a comment there).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import discord

from app.playground.input import CommandCompleter, LineSource, open_source
from app.playground.parse import ParseError, mention_names, parse_command
from app.playground.pictures import PictureSaver
from app.playground.render import INDENT, ReplyView, Style, mention_renderer, message_blocks, message_body
from app.root import App
from loopback.commands import InvalidInvocation
from loopback.interactions import InteractionRecord
from loopback.records import BotStopped, MessageRecord
from loopback.server import LoopbackDiscord
from loopback.world import Channel, Member, Perm, Role

if TYPE_CHECKING:
    from core.config import BotConfig

log = logging.getLogger("transcord.playground")

BANNER = (
    "Transcord playground — a local Discord-compatible server; "
    "type /help, @Transcord hello, /as moderator, /channel thread, /quit"
)
META_HELP = """Playground commands (handled here, not sent to the bot):
  /as moderator|member|owner|NAME   act as another member (the prompt shows who and where)
  /channel general|thread|NAME      go to another channel or thread
  /channel new NAME                 create a text channel and go there
  /thread new NAME                  create a thread under the current channel and go there
  /press Stop|Regenerate|Continue   press a button of the bot's last answer here
  /reply TEXT                       answer the bot's last answer with a Discord reply
  /playground                       this list
  /quit, /exit                      leave (Ctrl-D works too)
Every other /command goes to the bot: /help lists them. Options are typed as in Discord,
`name: value`, e.g. /generate prompt: Once upon a time max_new_tokens: 40
A line without / is your message in the current channel; @Transcord (or @bot) in it mentions
the bot, which answers as a reply, or in a thread it opens from your message (you follow it
there), e.g. @Transcord what rhymes with moon?"""
# discord.py runs each slash command in a task of this name (CommandTree._from_interaction):
# while one is pending, the reply may still change.
INVOKER_TASK = "CommandTree-invoker"
BUTTON_TASK = "discord-ui-dynamic-item-"  # ... a button's click in one of these (ViewStore)
MESSAGE_TASK = "discord.py: on_message"  # ... and a reply to an answer in this one (Client)
RECEIVE_TIMEOUT_S = 10.0
THINKING_GRACE_S = 5.0
READY_TIMEOUT_S = 60.0
# A message nothing happened on for this long, with no on_message running: the bot let it be.
NO_ANSWER_QUIET_S = 1.5
SETTLED_QUIET_S = 0.5  # an answer unchanged this long, once written (a footer or done), is shown
FOOTER = re.compile(r"\S.*\n-# [^\n]*$", re.DOTALL)  # text, then a footer as its last line
ERROR_ICON = "❌"  # in the bot's replies that report a failure


async def run_playground(
    config: BotConfig, *, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    """Run the bot against an embedded loopback server and read commands; returns the exit code.

    0: the input ended (or /quit) with every reply settled; 1: the bot crashed, could not
    start, or a reply never settled; 130: interrupted (Ctrl-C outside the prompt).
    """
    out = stdout if stdout is not None else sys.stdout
    server = LoopbackDiscord(app_name="Transcord")
    await server.start()
    _let_characters_speak(server)
    # The loopback server starts empty each time: always sync, and globally (the guild ids a
    # .env names for Discord do not exist here). Its own token and addresses replace Discord's.
    config = dataclasses.replace(
        config,
        guild_ids=(),
        force_sync=True,
        token=server.token,
        api_base=server.api_base,
        gateway_url=server.gateway_url,
    )
    app = App(config, guild_ready_timeout=0.05)
    try:
        try:
            await app.open()
        except Exception as exc:
            log.exception("the playground could not start the bot")
            print(f"error: the playground could not start: {exc}", file=sys.stderr)
            return 1
        return await _run_bot(app, server, stdin, out)
    finally:
        await app.aclose()
        await server.stop()


async def _run_bot(app: App, server: LoopbackDiscord, stdin: TextIO | None, out: TextIO) -> int:
    assert app.bot is not None
    code = 1
    try:
        task = await app.connect(ready_timeout=READY_TIMEOUT_S)
        server.watch(task)
        try:
            timeout = app.config.service.request_timeout_s + 30
            playground = Playground(server, app.bot, task, out, timeout=timeout)
            source = open_source(stdin, out, playground.completer())
            try:
                code = await playground.run(source, handle_signals=stdin is None)
            finally:
                source.close()
            if not task.done():
                log.info("shutting down")
                await app.shutdown()
                playground.finish()
            elif (error := task.exception()) is not None:
                raise error
        finally:
            server.unwatch(task)
    except Exception as exc:
        log.error("the bot stopped: %r", exc, exc_info=exc)
        print(f"error: the bot stopped: {exc}", file=sys.stderr)
        return 1
    return code


class Playground:
    """One user at a terminal: who they are, where they are, and the commands they run."""

    def __init__(
        self,
        server: LoopbackDiscord,
        bot: discord.Client,
        bot_task: asyncio.Task[None],
        out: TextIO,
        *,
        timeout: float,
    ) -> None:
        assert server.guild and server.general and server.member, "the playground needs the default world"
        self.server = server
        self.bot = bot
        self.bot_task = bot_task
        self.out = out
        self.timeout = timeout
        self.live = _isatty(out)
        self.style = Style(ansi=self.live)
        self.guild = server.guild
        self.user: Member = server.member
        self.user_label = "member"
        self.channel: Channel = server.general
        self.mentions = mention_renderer(server.world)
        self.resolver = WorldResolver(self)
        self.unsettled = 0
        self._seen: set[int] = set()
        self._current: asyncio.Task[None] | None = None
        self._session: asyncio.Task[int] | None = None
        self._interactive = False
        self._unfinished: ReplyView | None = None  # a reply still showing when the session ended
        self.pictures = PictureSaver()  # the bot's picture attachments, saved to files
        bot.add_listener(self._on_interaction, "on_interaction")  # type: ignore[attr-defined]  # a commands.Bot
        self.meta: dict[str, Callable[[list[str]], Awaitable[bool]]] = {
            "as": self._as,
            "channel": self._channel,
            "thread": self._thread,
            "press": self._press,
            "reply": self._reply,
            "playground": self._help,
            "quit": self._quit,
            "exit": self._quit,
        }

    async def _on_interaction(self, interaction: discord.Interaction) -> None:
        self._seen.add(interaction.id)

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self, source: LineSource, *, handle_signals: bool = False) -> int:
        self._interactive = source.interactive
        self.say(self.style.bot(BANNER))
        self.say(
            f"You are {self.user_label} in {self.where()} ({self.guild.name}); "
            "/playground lists the playground's own commands."
        )
        session = self._session = asyncio.create_task(self._read_loop(source, handle_signals))
        try:
            done, _ = await asyncio.wait({session, self.bot_task}, return_when=asyncio.FIRST_COMPLETED)
            if session not in done:
                session.cancel()
                await asyncio.wait({session})
                self.error(f"the bot stopped: {_task_end(self.bot_task)}")
                return 1
            try:
                return session.result()
            except asyncio.CancelledError:
                self.say("interrupted; shutting down")
                return 130
            except BotStopped as exc:
                self.error(f"the bot stopped: {exc}")
                return 1
        finally:
            if not session.done():
                session.cancel()
            if handle_signals:
                _remove_signals()

    async def _read_loop(self, source: LineSource, handle_signals: bool) -> int:
        while True:
            if handle_signals:
                self._install_signals()
            line = await source.read(self.prompt())
            if handle_signals:
                self._install_signals()  # prompt_toolkit takes SIGINT while it prompts
            if line is None:
                break
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if not source.interactive:
                self.say(self.prompt() + text)  # the transcript shows what was typed
            if not await self.handle(text):
                break
        return 1 if self.unsettled else 0

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, self._interrupt)
            loop.add_signal_handler(signal.SIGTERM, self._stop)

    def _interrupt(self) -> None:
        """Ctrl-C while a reply streams: stop watching it (at the prompt); else leave."""
        if self._interactive and self._current is not None and not self._current.done():
            self._current.cancel()
        else:
            self._stop()

    def _stop(self) -> None:
        if self._session is not None and not self._session.done():
            self._session.cancel()

    # -- one line ---------------------------------------------------------------------------------

    async def handle(self, line: str) -> bool:
        """Run one line; False means leave."""
        if not line.startswith("/"):
            await self.message(line)
            return True
        word, *args = line[1:].split() or [""]
        meta = self.meta.get(word.lower())
        if meta is not None:
            return await meta(args)
        try:
            parsed = parse_command(line, self.commands(), self.resolver)
        except ParseError as exc:
            self.error(str(exc))
            return True
        for note in parsed.notes:
            self.say(self.style.note(note))
        here, since = self.channel, self._newest_id()
        try:
            handle = await self.server.invoke(
                parsed.path, parsed.options, user=self.user, channel=self.channel
            )
        except InvalidInvocation as exc:
            self.error(str(exc))
            return True
        await self.follow(handle)
        self._show_spoken(here, since)
        return True

    def _newest_id(self) -> int:
        return max(self.server.state.messages, default=0)

    def _spoken(self, channel: Channel, since: int) -> list[MessageRecord]:
        """What characters (and a story's narrator) said here through the bot's webhook after
        message id ``since``: lines a command made besides its own reply."""
        return [m for m in self.server.channel_messages(channel) if m.id > since and self._by_webhook(m)]

    def _show_spoken(self, channel: Channel, since: int) -> None:
        spoken = self._spoken(channel, since)
        if spoken:
            self.say("\n".join(message_blocks(spoken, self.server.bot_user.name, self.mentions, self.style)))

    def _by_webhook(self, message: MessageRecord) -> bool:
        """Sent through a webhook of the bot's application: a character speaking."""
        return message.webhook_author is not None and message.application_id == self.server.application_id

    async def follow(self, handle: InteractionRecord) -> None:
        """Show the reply as it changes until it settles (Ctrl-C in a terminal stops watching)."""
        view = ReplyView(
            handle, self.out, bot_name=self.server.bot_user.name, mentions=self.mentions, live=self.live
        )
        watcher = asyncio.create_task(_watch(handle, view))
        current = self._current = asyncio.create_task(self._settle(handle))
        self._unfinished = view
        try:
            await asyncio.wait({current})
            self._unfinished = None
        finally:
            self._current = None
            if not current.done():
                current.cancel()
            elif not current.cancelled():
                current.exception()  # retrieved here even when this task is being cancelled
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        view.finish()
        for path, alt in self.pictures.save(handle.messages):
            self.say(self.style.note(f"🖼 picture saved: {path}" + (f" ({alt[:120]})" if alt else "")))
        if current.cancelled():
            self.say(self.style.note("(stopped watching; the bot may still be answering)"))
            return
        exc = current.exception()
        if isinstance(exc, TimeoutError):
            self.unsettled += 1
            self.error(str(exc))
        elif exc is not None:
            raise exc

    async def _settle(self, handle: InteractionRecord) -> None:
        """Wait until the bot got the interaction, finished running the command, and stopped thinking."""
        try:
            await handle.wait_for(lambda h: h.id in self._seen or h.responded, RECEIVE_TIMEOUT_S)
        except TimeoutError:
            raise TimeoutError(
                f"the bot did not receive /{handle.command} within {RECEIVE_TIMEOUT_S:g} s"
            ) from None
        try:
            await handle.wait_for(lambda h: not _bot_busy(), self.timeout)
        except TimeoutError:
            raise TimeoutError(f"/{handle.command} was still running after {self.timeout:g} s") from None
        if not handle.responded:
            return
        try:
            # Work the command handed to a task of its own may still replace "thinking…".
            await handle.wait_for(lambda h: not h.is_thinking, THINKING_GRACE_S)
            await handle.wait_final(self.timeout, quiet=0.1)
        except TimeoutError:
            raise TimeoutError(f"/{handle.command}: the reply never settled") from None

    def finish(self) -> None:
        """After shutdown: show how a reply the user stopped waiting for ended (the bot says why)."""
        if self._unfinished is not None:
            self._unfinished.finish()
            self._unfinished = None

    # -- plain messages ---------------------------------------------------------------------------

    def mention_targets(self) -> dict[str, int]:
        """The ``@names`` a typed message turns into mentions: the bot's name and ``@bot``."""
        bot = self.server.bot_user
        return {bot.name: bot.id, "bot": bot.id}

    async def message(self, text: str) -> None:
        """Post ``text`` as the current member here, then show what the bot made of it."""
        content = mention_names(text, self.mention_targets())
        try:
            posted = await self.server.post_message(self.channel, content, user=self.user)
        except InvalidInvocation as exc:
            self.error(str(exc))
            return
        await self.await_answer(posted, mentioned=self.server.bot_user.mention in content)

    async def await_answer(self, posted: MessageRecord, *, mentioned: bool) -> None:
        """Show the bot's answer to ``posted`` once settled: a reply (or any message of its after
        ``posted`` here), or its answers in a thread it opened from ``posted``, where the session
        then moves; or a note that it let the message be."""
        server = self.server
        name = server.bot_user.name
        here = self.channel

        def opened() -> Channel | None:
            found = server.world.channel(posted.id)
            return found if found is not None and found.is_thread else None

        def quiet() -> bool:
            return server.quiet_for() >= NO_ANSWER_QUIET_S and not _bot_busy()

        try:
            await server.wait_for(
                lambda: bool(opened() or self._answers(posted, here) or quiet()),
                self.timeout,
                "the bot's answer",
            )
            thread = opened()
            if thread is not None:
                self.channel = here = thread
                self.say(f"{self.style.bot(name)} opened thread #{thread.name} (you are in it now)")
                await server.wait_for(
                    lambda: bool(self._answers(posted, here) or quiet()), self.timeout, "the answer"
                )
            if not self._answers(posted, here):
                hint = "" if mentioned or thread is not None else f": mention it with @{name}"
                self.say(self.style.dim(f"({name} did not answer{hint})"))
                return
            await server.wait_for(lambda: self._settled(posted, here), self.timeout, "a settled answer")
        except TimeoutError:
            self.unsettled += 1
            self.error(f"{name}'s answer did not settle within {self.timeout:g} s")
        found = self._answers(posted, here)
        if found:
            self.say("\n".join(message_blocks(found, name, self.mentions, self.style)))

    def _answers(self, posted: MessageRecord, channel: Channel) -> list[MessageRecord]:
        """The bot's messages in ``channel`` since ``posted``, its characters' included, oldest first."""
        bot_id = self.server.bot_user.id
        return [
            m
            for m in self.server.channel_messages(channel)
            if m.id > posted.id and (m.author_id == bot_id or self._by_webhook(m))
        ]

    def _settled(self, posted: MessageRecord, channel: Channel) -> bool:
        """Written (a footer or an error shows, or the bot's on_message is done) and unchanged for
        a moment."""
        answers = self._answers(posted, channel)
        if not answers:
            return False
        last = max(v.at for m in answers for v in m.versions)
        if time.monotonic() - last < SETTLED_QUIET_S:
            return False
        written = FOOTER.search(answers[-1].content.rstrip()) or ERROR_ICON in answers[-1].content
        return bool(written) or not _bot_busy()

    # -- meta-commands ----------------------------------------------------------------------------

    async def _as(self, args: list[str]) -> bool:
        if not args:
            self.say(f"You are {self.user_label}. Members: {', '.join(self.member_names())}")
            return True
        name = " ".join(args)
        try:
            member = self.resolver.member(name)
        except LookupError as exc:
            self.error(str(exc.args[0]))
            return True
        self.user, self.user_label = member, _label(self.server, member, name)
        self.say(f"You are now {self.user_label} in {self.where()}.")
        return True

    async def _channel(self, args: list[str]) -> bool:
        if not args:
            self.say(f"You are in {self.where()}. Channels: {', '.join(self.channel_names())}")
            return True
        if args[0].lower() == "new":
            if len(args) < 2:
                self.error("give the new channel a name: /channel new NAME")
                return True
            name = "-".join(args[1:]).lower().lstrip("#")
            if self._find_channel(name) is not None:
                self.error(f"#{name} exists already; /channel {name} goes there")
                return True
            return await self._go(self.server.add_channel(name), created=True)
        try:
            channel = self.resolver.channel(" ".join(args))
        except LookupError as exc:
            self.error(str(exc.args[0]))
            return True
        return await self._go(channel)

    async def _thread(self, args: list[str]) -> bool:
        if len(args) < 2 or args[0].lower() != "new":
            if args and args[0].lower() != "new":
                return await self._channel(args)
            self.error(
                "/thread new NAME creates a thread under the current channel; /channel NAME goes to one"
            )
            return True
        parent = self.channel
        if parent.is_thread and parent.parent_id is not None:
            parent = self.guild.channels[parent.parent_id]
        name = " ".join(args[1:])
        if self._find_channel(name) is not None:
            self.error(f"a channel or thread named {name!r} exists already; /channel {name} goes there")
            return True
        return await self._go(self.server.add_thread(parent, name, owner=self.user.user), created=True)

    async def _go(self, channel: Channel, *, created: bool = False) -> bool:
        if created:
            # Let the bot see the new channel before the first command arrives there.
            with contextlib.suppress(TimeoutError):
                await self.server.wait_for(lambda: self.bot.get_channel(channel.id) is not None, 5.0)
        self.channel = channel
        self.say(f"{'Created' if created else 'Now in'} {self.where()}.")
        return True

    def _last_answer(self, *, with_buttons: bool) -> MessageRecord | None:
        """The bot's newest message here (with buttons, if asked), as a member would scroll to it."""
        bot_id = self.server.bot_user.id
        for message in reversed(self.server.channel_messages(self.channel)):
            if message.author_id == bot_id and (message.latest.components or not with_buttons):
                return message
        return None

    async def _press(self, args: list[str]) -> bool:
        answer = self._last_answer(with_buttons=True)
        if answer is None:
            self.error(f"no answer with buttons in {self.where()} yet; try /generate first")
            return True
        labels = {
            c.get("label", ""): c for row in answer.latest.components for c in row.get("components", [])
        }
        wanted = " ".join(args).strip().lower()
        button = next((c for label, c in labels.items() if label.lower() == wanted), None)
        if button is None:
            self.error(f"/press takes one of: {', '.join(labels)}")
            return True
        try:
            handle = await self.server.click(answer, str(button["custom_id"]), user=self.user)
        except InvalidInvocation as exc:
            self.error(str(exc))  # e.g. a greyed-out button
            return True
        await self.follow(handle)
        if not handle.messages:  # the answer was written in place: show it as it ended
            self.say("\n".join(INDENT + line for line in message_body(answer, self.mentions)))
        return True

    async def _reply(self, args: list[str]) -> bool:
        answer = self._last_answer(with_buttons=False)
        text = " ".join(args).strip()
        if answer is None or not text:
            self.error("usage: /reply TEXT, after the bot has answered here")
            return True
        posted = await self.server.post_message(self.channel, text, user=self.user, reply_to=answer)
        try:
            reply = await self.server.wait_reply(posted, timeout=self.timeout, quiet=1.0)
            await self.server.wait_for(
                lambda: "\n-# " in reply.content or "❌" in reply.content, self.timeout
            )
        except TimeoutError:
            self.unsettled += 1
            self.error("the bot did not answer the reply")
            return True
        self.say(f"{self.style.bot(self.server.bot_user.name)}:")
        self.say("\n".join(INDENT + line for line in message_body(reply, self.mentions)))
        return True

    async def _help(self, args: list[str]) -> bool:
        self.say(META_HELP)
        return True

    async def _quit(self, args: list[str]) -> bool:
        return False

    # -- the world, as the user sees it -----------------------------------------------------------

    def commands(self) -> list[dict[str, Any]]:
        """Commands this guild's members can use: the guild's own shadow global ones."""
        return self.server.synced_commands(self.guild) + self.server.synced_commands()

    def member_names(self) -> list[str]:
        names = ["owner", "moderator", "member"]
        for member in self.guild.members.values():
            if not member.user.bot and member.user.name not in names and member not in self._defaults():
                names.append(member.user.name)
        return names

    def channel_names(self) -> list[str]:
        names = []
        for channel in self.guild.channels.values():
            if channel.is_thread:
                parent = self.guild.channels.get(channel.parent_id or 0)
                names.append(f"{channel.name} (thread in #{parent.name if parent else '?'})")
            else:
                names.append(f"#{channel.name}")
        return names

    def _defaults(self) -> list[Member]:
        return [m for m in (self.server.owner, self.server.moderator, self.server.member) if m is not None]

    def _find_channel(self, name: str) -> Channel | None:
        name = name.lstrip("#").lower()
        if name == "thread" and self.server.thread is not None:
            return self.server.thread
        matches = [c for c in self.guild.channels.values() if c.name.lower() == name]
        return matches[0] if matches else None

    def where(self) -> str:
        channel = self.channel
        if channel.is_thread:
            parent = self.guild.channels.get(channel.parent_id or 0)
            return f"thread “{channel.name}” in #{parent.name if parent else '?'}"
        return f"#{channel.name}"

    def prompt(self) -> str:
        place = f"#{self.channel.name}"
        if self.live:
            return f"\x1b[1;32m{self.user_label}\x1b[0m in \x1b[1;34m{place}\x1b[0m> "
        return f"{self.user_label} in {place}> "

    def completer(self) -> CommandCompleter:
        def members() -> Iterable[str]:
            return self.member_names()

        def channels() -> Iterable[str]:
            return ["new", "thread", *(c.name for c in self.guild.channels.values())]

        return CommandCompleter(
            self.commands,
            {
                "as": members,
                "channel": channels,
                "thread": lambda: ["new"],
                "playground": list,
                "quit": list,
                "exit": list,
            },
            mentions=lambda: [f"@{self.server.bot_user.name}"],
        )

    # -- output -----------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def error(self, text: str) -> None:
        self.say(self.style.error(f"error: {text}"))


class WorldResolver:
    """Typed text to world objects, for user, channel, role and attachment options and ``/as``."""

    def __init__(self, playground: Playground) -> None:
        self.pg = playground

    def member(self, text: str) -> Member:
        pg = self.pg
        key = _strip_mention(text, "@")
        aliases = {"owner": pg.server.owner, "moderator": pg.server.moderator, "member": pg.server.member}
        found = aliases.get(key.lower())
        if found is not None:
            return found
        for member in pg.guild.members.values():
            names = {member.user.name, member.nick, member.user.global_name, str(member.id)}
            if key.lower() in {n.lower() for n in names if n}:
                return member
        raise LookupError(f"no member called {text!r}; members: {', '.join(pg.member_names())}")

    def user(self, text: str) -> Member:
        return self.member(text)

    def channel(self, text: str) -> Channel:
        key = _strip_mention(text, "#")
        found = self.pg._find_channel(key)
        if found is None and key.isdigit():
            found = self.pg.guild.channels.get(int(key))
        if found is None:
            raise LookupError(
                f"no channel or thread called {text!r}; there are: {', '.join(self.pg.channel_names())}"
            )
        return found

    def role(self, text: str) -> Role:
        key = _strip_mention(text, "@&").lstrip("@").lower()
        for role in self.pg.guild.roles.values():
            if key in (role.name.lower(), role.name.lower().lstrip("@"), str(role.id)):
                return role
        names = ", ".join(f"@{r.name.lstrip('@')}" for r in self.pg.guild.roles.values())
        raise LookupError(f"no role called {text!r}; roles: {names}")

    def mentionable(self, text: str) -> Member | Role:
        try:
            return self.member(text)
        except LookupError:
            return self.role(text)

    def attachment(self, text: str) -> tuple[str, bytes]:
        path = Path(text).expanduser()
        try:
            return path.name, path.read_bytes()
        except OSError as exc:
            raise LookupError(f"cannot read the file {text!r}: {exc.strerror or exc}") from None


def _let_characters_speak(server: LoopbackDiscord) -> None:
    """Give the bot's role Manage Webhooks, as a server's owner does for characters (and a story's
    cast) to speak: each speaks through a webhook of the bot's, under its own name and face."""
    bot_id = server.bot_user.id
    for role in server.guild.roles.values() if server.guild is not None else ():
        if role.bot_id == bot_id:
            role.permissions |= Perm.MANAGE_WEBHOOKS


async def _watch(handle: InteractionRecord, view: ReplyView) -> None:
    view.update()
    async for _ in handle.changes():
        view.update()


def _bot_busy() -> bool:
    return any(
        (t.get_name() in (INVOKER_TASK, MESSAGE_TASK) or t.get_name().startswith(BUTTON_TASK))
        and not t.done()
        for t in asyncio.all_tasks()
    )


def _label(server: LoopbackDiscord, member: Member, typed: str) -> str:
    for label in ("owner", "moderator", "member"):
        if getattr(server, label) is member:
            return label
    return member.nick or member.user.name or typed


def _strip_mention(text: str, sigil: str) -> str:
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].lstrip("@!&#")
    return text.lstrip(sigil) if sigil != "@&" else text


def _task_end(task: asyncio.Task[Any]) -> str:
    if task.cancelled():
        return "it was cancelled"
    exc = task.exception()
    return repr(exc) if exc is not None else "it disconnected"


def _isatty(stream: Any) -> bool:
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return bool(stream.isatty())
    return False


def _remove_signals() -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(sig)


__all__ = ["BANNER", "META_HELP", "Playground", "WorldResolver", "run_playground"]
