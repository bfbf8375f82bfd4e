"""Everything about what a user sees: the one error-to-reply map, long output, edits.

Every message goes out with ``AllowedMentions.none()``: generated text and echoed prompts
must never ping anyone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

import discord
from discord import app_commands

from domain.errors import UserFacingError
from model_service import (
    ErrorKind,
    GenerationParams,
    GenerationResult,
    ModelUnavailableError,
    OverloadedError,
    RequestTimeoutError,
    ServiceError,
    ValidationError,
)
from storage.types import LimitReached, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

MESSAGE_LIMIT = 2000
NO_MENTIONS = discord.AllowedMentions.none()
GENERIC_ERROR = "Something went wrong on our side while handling this command. It has been logged."
RESTARTING = "⚠️ The bot is restarting, so this reply stopped here. Please try again in a minute."


def choice_refusal(interaction: discord.Interaction, error: BaseException) -> str | None:
    """A value outside an option's choices (an Enum that discord.py refused on arrival), in words.

    discord.py's own message ("Failed to convert galaxy to Scope") names neither the option nor
    the choices; the option is found by the value the user sent for it.
    """
    error = _unwrap(error)
    command = interaction.command
    if not isinstance(error, app_commands.TransformerError) or not isinstance(command, app_commands.Command):
        return None
    for parameter in command.parameters:
        sent = getattr(interaction.namespace, parameter.name, None)
        if parameter.choices and sent == error.value:
            allowed = ", ".join(str(choice.value) for choice in parameter.choices)
            return f"❌ `{parameter.name}` must be one of {allowed}, got {error.value!r}"
    return None


def _unwrap(error: BaseException) -> BaseException:
    if isinstance(error, app_commands.CommandInvokeError):
        return error.original
    return error


def error_message(error: BaseException, *, after_answer: bool = False) -> str:
    """The one place an error becomes the text a user reads (``after_answer``: it is written under
    an answer already shown, which a failed write then did not keep)."""
    error = _unwrap(error)
    if isinstance(error, StoreUnavailable) and after_answer:
        return (
            "🗄️ The bot's database can't be reached right now, so the answer above was not saved "
            "(the story or the conversation goes on without it); try again in a minute."
        )
    if isinstance(error, OverloadedError):
        wait = max(1, round(error.retry_after or 5))
        return f"⏳ The model is busy right now; try again in {wait} s."
    if isinstance(error, RequestTimeoutError):
        return f"⌛ {error.message}"
    if isinstance(error, UserFacingError):
        return f"{error.icon} {error.message}"
    if isinstance(error, StoreUnavailable):
        return (
            "🗄️ The bot's database can't be reached right now, so this can't be done; try again in a minute."
        )
    if discord_busy(error):
        return "⏳ Discord was too busy to take this answer just now; try again in a minute."
    if isinstance(error, LimitReached):
        return f"🚫 This channel already has {error.limit} {error.what}, the most it may; remove one first."
    if isinstance(error, ValidationError | ModelUnavailableError):
        return f"❌ {error.message}"
    if isinstance(error, app_commands.MissingPermissions | app_commands.CheckFailure):
        text = str(error) or "You are not allowed to use this command here."
        return f"🚫 {text}"
    if isinstance(error, app_commands.CommandNotFound):
        return "❓ This command no longer exists; your Discord client may show an outdated list."
    if isinstance(error, app_commands.CommandSignatureMismatch):
        return "❓ This command's options have changed; your Discord client may show an outdated list."
    if isinstance(error, app_commands.TransformerError):
        return f"❌ {error}"
    return GENERIC_ERROR


def discord_busy(error: BaseException) -> bool:
    """Discord answered 429 or 5xx past discord.py's own retries: its trouble, not a bug here."""
    error = _unwrap(error)
    return isinstance(error, discord.HTTPException) and (error.status == 429 or error.status >= 500)


def is_unexpected(error: BaseException) -> bool:
    error = _unwrap(error)
    if discord_busy(error):
        return False
    known = (
        ServiceError,
        app_commands.CheckFailure,
        app_commands.CommandNotFound,
        app_commands.CommandSignatureMismatch,
        app_commands.TransformerError,
        LimitReached,
        StoreUnavailable,
    )
    return not isinstance(error, known) or getattr(error, "kind", None) is ErrorKind.INTERNAL


async def send_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Answer with the error, ephemerally, whatever state the interaction is in."""
    text = choice_refusal(interaction, error) or error_message(error)
    if is_unexpected(error):
        log.error("command %s failed", _command_name(interaction), exc_info=_unwrap(error))
    elif isinstance(_unwrap(error), StoreUnavailable) or discord_busy(error):
        log.warning("command %s: %s", _command_name(interaction), _unwrap(error))
    elif (stale := _stale_command(error)) is not None:
        # Not the user's doing: a client with an old command list, or commands not synced.
        log.warning("%s does not match the synced commands; if they changed, run bot.py --sync", stale)
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        if interaction.extras.get("visible_text"):
            # Part of the answer is already public: keep it, and say it stopped.
            shown = interaction.extras["visible_text"]
            text = choice_refusal(interaction, error) or error_message(error, after_answer=True)
            await interaction.edit_original_response(
                content=fit(shown + "\n\n" + text), allowed_mentions=NO_MENTIONS
            )
            return
        # A public "thinking…" placeholder: remove it, and tell only the user what went wrong.
        await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException:
        log.warning("could not deliver an error reply for %s", _command_name(interaction), exc_info=True)


def _stale_command(error: BaseException) -> str | None:
    """``/name sub`` of an interaction that doesn't fit the bot's commands, else None."""
    error = _unwrap(error)
    if isinstance(error, app_commands.CommandNotFound):
        return "/" + " ".join([*error.parents, error.name])
    if isinstance(error, app_commands.CommandSignatureMismatch):
        return f"/{error.command.qualified_name}"
    return None


def _command_name(interaction: discord.Interaction) -> str:
    return interaction.command.qualified_name if interaction.command else "?"


def fit(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """A preview that fits one message (for streamed edits; the final text is split, not cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


FENCE = "```"


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split at line or word boundaries into parts that each fit one message; nothing dropped.

    A code block cut in two is closed at the end of one part and opened again, with its language,
    at the start of the next, so both parts show as code.
    """
    parts: list[str] = []
    rest = text
    reopen = ""  # the fence the previous part closed, to open again
    room = limit - len(FENCE) - 1 - 16  # a closing fence, and a reopened one with a short language
    while len(reopen) + len(rest) > limit:
        rest = reopen + rest
        cut = rest.rfind("\n", room // 2, room)
        if cut < 0:
            cut = rest.rfind(" ", room // 2, room)
        if cut < 0:
            cut = room
        part, rest = rest[:cut], rest[cut:]
        open_fence = _open_fence(part)
        if open_fence is not None:
            part += "\n" + FENCE
            reopen = open_fence + "\n"
            rest = rest.removeprefix("\n")
        else:
            reopen = ""
        parts.append(part)
    parts.append(reopen + rest)
    return [p for p in parts if p] or [""]


def _open_fence(text: str) -> str | None:
    """The fence line (with its language) of a code block ``text`` leaves open, if any."""
    opened: str | None = None
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith(FENCE):
            opened = None if opened is not None else stripped[: len(FENCE) + 16].split()[0]
    return opened


async def send_long(
    interaction: discord.Interaction,
    text: str,
    *,
    ephemeral: bool = False,
    view: discord.ui.View | None = None,
) -> discord.Message | None:
    """The first part in the original reply (with ``view``), the rest as follow-ups.

    Returns the first part's message where Discord said which it is.
    """
    first, *more = split_message(text)
    message: discord.Message | None
    if interaction.response.is_done():
        message = await interaction.edit_original_response(
            content=first, allowed_mentions=NO_MENTIONS, view=view
        )
    else:
        sent = await interaction.response.send_message(
            first,
            ephemeral=ephemeral,
            allowed_mentions=NO_MENTIONS,
            view=view if view is not None else discord.utils.MISSING,
        )
        message = sent.resource if isinstance(sent.resource, discord.Message) else None
    for part in more:
        await interaction.followup.send(part, ephemeral=ephemeral, allowed_mentions=NO_MENTIONS)
    return message


def sampling_note(params: GenerationParams) -> str:
    """The seed and sampling a reply ran with: the same /generate options give the same text."""
    parts = [f"seed {params.seed}", f"temperature {params.temperature:g}", f"top_p {params.top_p:g}"]
    if params.top_k:
        parts.append(f"top_k {params.top_k}")
    if params.repetition_penalty != 1:
        parts.append(f"repetition_penalty {params.repetition_penalty:g}")
    return " ".join(parts)


def footer(result: GenerationResult, note: str | None = None) -> str:
    """The line under a reply: its size, time, model, sampling, and why it ended."""
    notes = [f"{result.generated_tokens} tokens", f"{result.elapsed_s:.1f} s", result.model]
    if result.params is not None:
        notes.append(sampling_note(result.params))
    if result.history_dropped:
        turns = "turn" if result.history_dropped == 1 else "turns"
        notes.append(f"{result.history_dropped} older {turns} of the conversation left out to fit")
    if result.prompt_truncated:
        notes.append("prompt cut from the left to fit the model's context")
    if result.finish_reason == "timeout":
        notes.append("stopped: time limit reached")
    elif result.finish_reason == "length":
        notes.append("stopped at the token limit")
    if note:
        notes.append(note)
    return "-# " + " · ".join(notes)


async def answer_soon(interaction: discord.Interaction, work: Awaitable[T], *, grace: float = 1.0) -> T:
    """Await ``work``; defer (show "thinking…") only if it takes longer than ``grace`` seconds.

    Refusals (validation, busy) come back at once, before any deferral, so they can still be
    answered ephemerally instead of leaving a public placeholder behind.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            await interaction.response.defer(thinking=True)
        return await task
    except asyncio.CancelledError:
        if interaction.response.is_done():
            # Shutdown cancelled us after "thinking…" was shown: don't leave it there.
            await notify_restart(interaction, "")
        raise
    finally:
        if not task.done():
            task.cancel()


async def show(interaction: discord.Interaction, content: str, view: discord.ui.View | None = None) -> None:
    """Edit the original response (the reply, or the clicked message) to ``content``."""
    interaction.extras["visible_text"] = content
    await interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS, view=view)


def cut_off(shown: str) -> str:
    """A reply whose writing a restart stopped: what it showed, then the restart notice."""
    return fit(shown + "\n\n" + RESTARTING) if shown else RESTARTING


async def notify_restart(
    interaction: discord.Interaction, shown: str, view: discord.ui.View | None = None
) -> None:
    # Shielded: the task is being cancelled, but the user must still learn why it stopped.
    content = cut_off(shown)
    try:
        # ``view``: the buttons that still apply (nothing is being written any more).
        await asyncio.shield(
            interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS, view=view)
        )
    except (discord.HTTPException, asyncio.CancelledError):
        log.warning("could not tell a user that the bot is restarting")
