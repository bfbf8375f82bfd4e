"""A tiny real discord.py bot whose commands exercise what the loopback server must support."""

from __future__ import annotations

import asyncio
import io
import re

import discord
from discord import app_commands
from discord.ext import commands

FRUITS = ["apple", "apricot", "banana", "cherry"]


class Choice(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"choice:(?P<action>[a-z]+):(?P<n>\d+)",
):
    """A persistent button: after a restart the template alone routes its clicks here."""

    def __init__(self, action: str, n: int, *, disabled: bool = False) -> None:
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=f"{action} {n}", custom_id=f"choice:{action}:{n}", disabled=disabled
        )
        super().__init__(button)
        self.action, self.n = action, n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[discord.ui.View], match: re.Match[str], /
    ) -> Choice:
        return cls(match["action"], int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        assert isinstance(bot, DemoBot) and interaction.message is not None
        bot.clicks.append((self.custom_id, interaction.user.id, interaction.message.id))
        n = self.n
        if self.action == "edit":  # a deferred update, then an edit of the clicked message
            await interaction.response.defer()
            await interaction.edit_original_response(content=f"chose {n}", view=choices(n + 1))
        elif self.action == "peek":  # a new, ephemeral message, with a button of its own
            view = discord.ui.View(timeout=None)
            view.add_item(Choice("edit", n))
            await interaction.response.send_message(f"peeked {n}", ephemeral=True, view=view)
        elif self.action == "swap":  # an update in the callback itself
            await interaction.response.edit_message(content=f"swapped {n}", view=None)
        elif self.action == "drop":
            await interaction.response.defer()
            await interaction.delete_original_response()
        elif self.action == "late":
            await asyncio.sleep(0.4)
            try:
                await interaction.response.defer()
            except discord.HTTPException as exc:
                bot.errors.append(exc)
        else:
            await interaction.response.send_message(f"{self.action}?", ephemeral=True)


def choices(n: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in ("edit", "peek", "swap", "drop"):
        view.add_item(Choice(action, n))
    view.add_item(Choice("off", n, disabled=True))
    return view


class Demo(commands.Cog):
    tools = app_commands.Group(name="tools", description="Nested commands")
    calc = app_commands.Group(name="calc", description="Arithmetic", parent=tools)

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.gate = asyncio.Event()  # /slow waits on it, so a test can act mid-command
        self.errors: list[Exception] = []

    @app_commands.command(name="ping", description="Defers, edits twice, then follows up")
    async def ping(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content="pong 1")
        embed = discord.Embed(title="Done", description="two edits")
        await interaction.edit_original_response(content="pong 2", embed=embed)
        await interaction.followup.send("follow-up", ephemeral=True)

    @app_commands.command(name="secret", description="An ephemeral reply")
    async def secret(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("only you can see this", ephemeral=True)

    @app_commands.command(name="whoami", description="Reports what discord.py parsed")
    async def whoami(self, interaction: discord.Interaction) -> None:
        channel = interaction.channel
        perms = interaction.permissions
        await interaction.response.send_message(
            f"user={interaction.user.id} channel={interaction.channel_id} kind={type(channel).__name__} "
            f"parent={getattr(channel, 'parent_id', None)} manage_channels={perms.manage_channels} "
            f"bot_can_send={interaction.app_permissions.send_messages} guild={interaction.guild_id}"
        )

    @calc.command(name="add", description="Adds two numbers")
    async def add(
        self, interaction: discord.Interaction, a: int, b: float, label: str = "sum", loud: bool = False
    ) -> None:
        text = f"{label}: {a!r} + {b!r} = {a + b!r}"
        await interaction.response.send_message(text.upper() if loud else text)

    @app_commands.command(name="pick", description="Autocompletes a fruit")
    async def pick(self, interaction: discord.Interaction, fruit: str) -> None:
        await interaction.response.send_message(f"picked {fruit}")

    @pick.autocomplete("fruit")
    async def pick_fruit(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=f.title(), value=f) for f in FRUITS if f.startswith(current)]

    @app_commands.command(name="slow", description="Defers and waits for the test's go")
    async def slow(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await self.gate.wait()
        await interaction.edit_original_response(content="finally")

    @app_commands.command(name="late", description="Answers after the deadline")
    async def late(self, interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.4)
        try:
            await interaction.response.send_message("too late")
        except discord.HTTPException as exc:
            self.errors.append(exc)

    @app_commands.command(name="long", description="Replies with too much text")
    async def long(self, interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_message("x" * 2500)
        except discord.HTTPException as exc:
            self.errors.append(exc)
            await interaction.response.send_message("too long, sorry")

    @app_commands.command(name="file", description="Replies with an attachment, then edits it away")
    async def file(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        upload = discord.File(io.BytesIO(b"hello world"), filename="hello.txt", description="greeting")
        await interaction.followup.send("here is a file", file=upload)
        await interaction.followup.send("and another", file=discord.File(io.BytesIO(b"\x00\x01"), "raw.bin"))

    @app_commands.command(name="quietdefer", description="Public defer, then an 'ephemeral' follow-up")
    async def quietdefer(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.followup.send("after defer", ephemeral=True)
        await interaction.followup.send("second", ephemeral=True)

    @app_commands.command(name="modonly", description="Only for channel managers")
    @app_commands.default_permissions(manage_channels=True)
    async def modonly(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("hello, moderator")

    @app_commands.command(name="tidy", description="Edits its follow-up, then deletes its reply")
    async def tidy(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("temporary")
        original = await interaction.original_response()
        kept = await interaction.followup.send("kept", wait=True)
        await kept.edit(content=f"kept (edited), original was {original.content!r}")
        await interaction.delete_original_response()

    @app_commands.command(name="announce", description="Posts in the channel itself")
    async def announce(self, interaction: discord.Interaction) -> None:
        channel = interaction.channel
        assert isinstance(channel, discord.TextChannel | discord.Thread)
        try:
            await channel.send("announcement")
        except discord.Forbidden as exc:
            self.errors.append(exc)
        await interaction.response.send_message("tried", ephemeral=True)

    @app_commands.command(name="menu", description="A reply with persistent buttons")
    async def menu(self, interaction: discord.Interaction, late: bool = False) -> None:
        view = choices(1)
        if late:
            view.add_item(Choice("late", 1))
        await interaction.response.send_message("pick one", view=view)

    @app_commands.command(name="stray", description="Calls an endpoint the server lacks")
    async def stray(self, interaction: discord.Interaction) -> None:
        try:
            await self.bot.http.request(discord.http.Route("GET", "/nonexistent/{x}", x=1))
        except discord.NotFound as exc:
            self.errors.append(exc)
        await interaction.response.send_message("done")


class Talk(commands.Cog):
    """Answers messages that mention the bot or reply to it: a reply, then an edit of that reply."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.seen: list[discord.Message] = []  # members' messages, as discord.py parsed them
        self.own: list[discord.Message] = []  # the bot's own, which Discord sends it too
        self.replies: list[discord.Message] = []
        self.errors: list[Exception] = []

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        assert me is not None
        if message.author.id == me.id:
            self.own.append(message)
            return
        self.seen.append(message)
        resolved = message.reference.resolved if message.reference else None
        to_me = isinstance(resolved, discord.Message) and resolved.author.id == me.id
        if not (me.mentioned_in(message) or to_me):
            return
        if "edit yours" in message.content:
            try:
                await message.edit(content="mine now")
            except discord.HTTPException as exc:
                self.errors.append(exc)
            return
        reply = await message.reply(f"heard {message.content!r}")
        self.replies.append(await reply.edit(content=f"{reply.content} (edited)"))


class DemoBot(commands.Bot):
    def __init__(self, *, guild_id: int | None = None, fast_reidentify: bool = True) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.guild_id = guild_id
        self.fast_reidentify = fast_reidentify
        self.demo: Demo | None = None
        self.talk: Talk | None = None
        self.resumes = 0
        self.clicks: list[tuple[str, int, int]] = []  # (custom_id, user id, message id) per click
        self.errors: list[Exception] = []

    async def setup_hook(self) -> None:
        self.demo = Demo(self)
        self.talk = Talk(self)
        await self.add_cog(self.demo)
        await self.add_cog(self.talk)
        self.add_dynamic_items(Choice)
        await self.tree.sync()
        if self.guild_id is not None:
            guild = discord.Object(id=self.guild_id)

            @app_commands.command(name="guildonly", description="Synced to one guild")
            async def guildonly(interaction: discord.Interaction) -> None:
                await interaction.response.send_message("guild command")

            self.tree.add_command(guildonly, guild=guild)
            await self.tree.sync(guild=guild)

    async def on_resumed(self) -> None:
        self.resumes += 1

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py sleeps 5 s before a re-IDENTIFY; the loopback server has no identify rate limit.
        if not self.fast_reidentify:
            await super().before_identify_hook(shard_id, initial=initial)
