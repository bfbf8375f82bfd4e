"""/status (what the bot is running and how fast, with a chart of the last minutes) and /help (what
each command does)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core import pictures, replies
from domain.settings import CHANNEL_PARAMS, CHOICE_SETTINGS, COMMAND_PARAMS
from model_service import MASK
from model_service.params import ParamSpec, num
from model_service.task_names import CHECKPOINTS, SHORT_NAMES
from model_service.types import FILL_PARAMS, TaskModels

if TYPE_CHECKING:
    from core.transcord import Transcord


def _options(specs: tuple[ParamSpec, ...]) -> str:
    return " ".join(f"`[{spec.name}]`" for spec in specs)


def _parameters() -> str:
    """Each sampling parameter a channel may set: its bounds and what it does."""
    lines = [
        f"  `{s.name}` {s.bounds()}, default {num(s.default)}: {s.description[0].lower()}{s.description[1:]}"
        for s in CHANNEL_PARAMS
        if s.default is not None
    ]
    return "\n".join(lines)


def _choices() -> str:
    """Each word setting: its choices (the default first) and what it does."""
    return "\n".join(
        f"  `{s.name}` {' | '.join(s.choices)}, default {s.default}: {s.description[0].lower()}{s.description[1:]}"
        for s in CHOICE_SETTINGS
    )


HELP = f"""**Transcord**: language models in this channel.
**/generate** `prompt` {_options(COMMAND_PARAMS)} continues your text.
  e.g. `/generate prompt: Once upon a time temperature: 0.7` · `show: probabilities` adds a picture of how sure it was of each token.
**/chat say** `message` talks in the channel's persona and remembers (a thread's conversation is shared) · **/chat reset**.
  e.g. `/chat say message: Give me three names for a pirate ship`
  **@mention** me in a message to talk without a command (your /chat conversation; text files attached are read),
  and **reply** to any of my answers (keep the @ mention on) to go on from it.
  Answers carry **Stop** while written, then **Regenerate** (a new seed) and **Continue** (for whoever asked, or a moderator).
**/fill** `text` {_options(FILL_PARAMS)} guesses the word hidden by `{MASK}`, with scores.
  e.g. `/fill text: The capital of France is {MASK}.`
**/settings show** shows this channel's settings and where each comes from.
**/config set** / **/config reset** change them (Manage Channels or the moderator role).
  e.g. `/config set temperature: 0.3 persona: You are a cheerful pirate.`
  A thread inherits its channel's settings, a channel the server's, the server the bot's.
**/config moderator-role** picks the role that may change settings (Manage Server).
**Sampling settings** (`/config set`):
{_parameters()}
**Conversation settings** (`/config set`):
{_choices()}
**/tokenize** `text` `[model]` `[pair]` shows how the tokenizer splits it: tokens, ids, attention mask, token type ids, and a picture.
**/next** `prompt` `[top_k]` the likeliest next tokens with their probabilities, in a bar chart and in words. e.g. `/next prompt: The capital of France is`
**/classify** `text` `[labels]` sorts text into labels, with scores. e.g. `/classify text: I loved it! labels: positive, negative`
**/entities** `text` finds names of people, places, organisations · **/answer** `question` `context` answers with a span of the context.
**/summarize** `[text]` `[file]` · **/translate** `text` `[to]` write new text, streamed · **/similar** `text_a` `text_b` `[texts]` compares meaning (more texts, `|`-separated: a heat map).
**/story start** `premise` `[turns]` `[max_players]` `[length]` `[cast]` `[narrator]` `[cast_turns]` opens a story the channel writes together (with a cast, the narrator and the server's characters speak between turns);
  **/story join**, **add** `text`, **show**, **skip**, **timer** `minutes`, **undo**, **remove** `line`, **end** (posts the transcript).
**/character create** `name` `persona` `[avatar]` `[avatar_url]` `[greeting]` (moderators; also **edit**, **delete**), **list**, **show**: characters that speak through a webhook; talk to one with `/chat say character:`, an @mention starting with its name, or a reply to it.
**/mod** (moderators): `lock`, `unlock`, `cooldown seconds`, `limit n`, `blocklist add|remove|list`, `quota set|unlimited|clear|show`, `show`, `log`.
**/quota** shows your token budget here: what is left and when it refills.
**/status** shows the models loaded, the queue and recent speed, with a chart of the last 10 minutes.
-# Temperature 0 always picks the likeliest word; higher values are more surprising. The defaults sample as transformers' `generate(do_sample=True, temperature=0.7, top_p=0.95)` does (its top_k is 50)."""


def task_line(models: TaskModels) -> str:
    """One task's availability here: its models, the stand-in, or what to configure."""
    task = models.task
    if models.models:
        return f"`/{task}`: {', '.join(f'`{m}`' for m in models.models)}"
    if models.fallback:
        return f"`/{task}`: `{models.fallback}` ({models.fallback_method})"
    return f"`/{task}`: none here (add one to `MODELS`, e.g. `{SHORT_NAMES[task]}={CHECKPOINTS[task]}`)"


def tasks_help(tasks: tuple[TaskModels, ...]) -> str:
    lines = ["**Tasks here** (a channel picks each one's model: `/config set classify_model` …):"]
    lines += [f"  {task_line(models)}" for models in tasks]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


class Status(commands.Cog):
    def __init__(self, bot: Transcord) -> None:
        self.bot = bot

    @app_commands.command(name="status", description="Models loaded, queue depth and recent speed")
    async def status(self, interaction: discord.Interaction) -> None:
        s = self.bot.models.status()
        lines = ["**Status**"]
        for m in s.models:
            size = f"{m.parameters / 1e6:.1f}M params" if m.parameters else "size not reported"
            lines.append(f"• **{m.name}** on {m.engine}, `{m.device}` ({m.dtype}, {size}): {m.task}")
        if not s.models:
            lines.append("• no model loaded yet (the first request loads one)")
        lines.append(
            f"Queue: {s.queue_depth}/{s.queue_limit} requests · generating {s.batch_size} together"
            f" · filling {s.filling} together"
        )
        if s.waiting:
            channels = ", ".join(
                f"<#{group}> {count}" if group.isdigit() else f"other {count}"
                for group, count in s.shares[:5]
            )
            more = f" and {len(s.shares) - 5} more channels" if len(s.shares) > 5 else ""
            lines.append(
                f"Waiting: {s.waiting} (the longest for {s.oldest_wait_s:.0f} s), taking turns by channel: "
                f"{channels}{more}"
            )
        latency = f"{s.recent_latency_s:.1f} s" if s.recent_latency_s is not None else "n/a"
        rate = f"{s.tokens_per_s:.1f} tokens/s" if s.tokens_per_s is not None else "n/a"
        lines.append(f"Recent latency: {latency} · speed: {rate}")
        lines.append(f"Uptime: {_duration(time.monotonic() - self.bot.started_at)}")
        config = self.bot.config
        if config.shard_count is not None:
            here = f" (this server's: {interaction.guild.shard_id})" if interaction.guild else ""
            ids = ", ".join(map(str, config.shard_ids))
            lines.append(f"Shards: this process runs {ids} of {config.shard_count}{here}")
        tasks = self.bot.models.tasks()
        if tasks:
            ready = [m.task for m in tasks if m.models] + [
                f"{m.task} (stand-in)" for m in tasks if m.fallback
            ]
            missing = [m.task for m in tasks if not m.available]
            lines.append(
                f"Tasks: {', '.join(ready) or 'none'}"
                + (f" · not configured: {', '.join(missing)}" if missing else "")
            )
        if self.bot.models.moderation_error is not None:
            lines.append("🛡️ Moderation could not be loaded: model commands are refused until it is.")
        if self.bot.failed_extensions:
            lines.append(f"⚠️ Features that failed to load: {', '.join(self.bot.failed_extensions)}")
        if not s.samples:  # a service that keeps no samples: the figures in words only
            await replies.send_long(interaction, "\n".join(lines), ephemeral=True)
            return
        chart = await pictures.draw(pictures.status_chart, s.samples, s.sample_interval_s, s.sample_span_s)
        await pictures.send(interaction, "\n".join(lines), chart, ephemeral=True)

    @app_commands.command(name="help", description="What each command does, with examples")
    async def help(self, interaction: discord.Interaction) -> None:
        await replies.send_long(interaction, f"{HELP}\n{tasks_help(self.bot.models.tasks())}", ephemeral=True)


async def setup(bot: Transcord) -> None:
    await bot.add_cog(Status(bot))
