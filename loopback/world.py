"""The world the loopback server pretends to be: one application, its bot, guilds, channels, roles, members.

Tests and the playground build it through :class:`World` (usually via the server's ``add_*`` helpers).
Every change is announced to listeners as a gateway event name plus payload, so a connected bot sees
channels, threads and roles created after it logged in, as it would on Discord.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Any

from loopback.wire import Snowflakes, iso_now


class Perm(IntFlag):
    """The permission bits the loopback world uses (values from Discord's permission table)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    MANAGE_ROLES = 1 << 28
    MANAGE_WEBHOOKS = 1 << 29
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    SEND_MESSAGES_IN_THREADS = 1 << 38
    MODERATE_MEMBERS = 1 << 40


ALL_PERMISSIONS = (1 << 51) - 1

EVERYONE_DEFAULT = (
    Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.ADD_REACTIONS
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.USE_EXTERNAL_EMOJIS
    | Perm.USE_APPLICATION_COMMANDS
    | Perm.CREATE_PUBLIC_THREADS
    | Perm.SEND_MESSAGES_IN_THREADS
)

BOT_DEFAULT = EVERYONE_DEFAULT | Perm.MANAGE_MESSAGES | Perm.MANAGE_THREADS


class ChannelType(IntEnum):
    TEXT = 0
    CATEGORY = 4
    NEWS = 5
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12


@dataclass(eq=False)
class User:
    id: int
    name: str
    global_name: str | None = None
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass(eq=False)
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    color: int = 0
    hoist: bool = False
    mentionable: bool = False
    bot_id: int | None = None  # set on the role Discord manages for a bot

    @property
    def is_everyone(self) -> bool:
        return self.id == self.guild_id


@dataclass(eq=False)
class Overwrite:
    id: int
    type: int  # 0 role, 1 member
    allow: int = 0
    deny: int = 0


@dataclass(eq=False)
class Channel:
    id: int
    guild_id: int
    name: str
    type: int = ChannelType.TEXT
    position: int = 0
    topic: str | None = None
    nsfw: bool = False
    parent_id: int | None = None  # category for channels, parent channel for threads
    overwrites: list[Overwrite] = field(default_factory=list)
    owner_id: int | None = None  # threads only
    archived: bool = False
    auto_archive_duration: int = 1440  # threads only: minutes of inactivity before archiving
    rate_limit_per_user: int = 0  # slowmode, in seconds
    created_at: str = field(default_factory=iso_now)
    last_message_id: int | None = None

    @property
    def is_thread(self) -> bool:
        return self.type in (ChannelType.PUBLIC_THREAD, ChannelType.PRIVATE_THREAD)

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass(eq=False)
class Member:
    user: User
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=iso_now)

    @property
    def id(self) -> int:
        return self.user.id


@dataclass(eq=False)
class Guild:
    id: int
    name: str
    owner_id: int
    locale: str = "en-US"
    channels: dict[int, Channel] = field(default_factory=dict)
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    @property
    def threads(self) -> list[Channel]:
        return [c for c in self.channels.values() if c.is_thread]


@dataclass(eq=False)
class Application:
    id: int
    name: str
    bot: User
    owner: User
    flags: int = 0
    description: str = ""


# (event name, the object it is about): the gateway turns it into the DISPATCH payload.
Listener = Callable[[str, Any], object]  # what it returns is not used


class World:
    """Users, guilds and the application, with permission maths as Discord computes it."""

    def __init__(self, ids: Snowflakes, *, app_name: str = "Transcord") -> None:
        self.ids = ids
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        owner = self.add_user("app-owner")
        bot = self.add_user(app_name, bot=True)
        self.application = Application(id=ids.next(), name=app_name, bot=bot, owner=owner)
        self._listeners: list[Listener] = []

    # -- listening -------------------------------------------------------------------------------

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: str, subject: Any) -> None:
        for listener in list(self._listeners):
            listener(event, subject)

    # -- building --------------------------------------------------------------------------------

    def add_user(self, name: str, *, bot: bool = False, global_name: str | None = None) -> User:
        user = User(id=self.ids.next(), name=name, global_name=global_name, bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        *,
        owner: User | None = None,
        locale: str = "en-US",
        bot_permissions: int = BOT_DEFAULT,
        guild_id: int | None = None,
    ) -> Guild:
        """A guild with its @everyone role, its owner as a member and the bot (with its managed role).

        ``guild_id`` (default: a fresh snowflake) decides the guild's shard.
        """
        if guild_id is not None and guild_id in self.guilds:
            raise ValueError(f"guild id {guild_id} is taken")
        owner = owner or self.add_user(f"{name} owner".lower().replace(" ", "-"))
        guild = Guild(id=guild_id or self.ids.next(), name=name, owner_id=owner.id, locale=locale)
        guild.roles[guild.id] = Role(
            id=guild.id, guild_id=guild.id, name="@everyone", permissions=EVERYONE_DEFAULT
        )
        self.guilds[guild.id] = guild
        bot = self.application.bot
        bot_role = self._new_role(guild, bot.name, bot_permissions, bot_id=bot.id)
        self._new_member(guild, owner, ())
        self._new_member(guild, bot, (bot_role,))
        self._emit("GUILD_CREATE", guild)
        return guild

    def add_channel(
        self,
        guild: Guild,
        name: str,
        *,
        type: int = ChannelType.TEXT,
        topic: str | None = None,
        nsfw: bool = False,
        category: Channel | None = None,
        overwrites: Iterable[Overwrite] = (),
    ) -> Channel:
        position = sum(1 for c in guild.channels.values() if not c.is_thread)
        channel = Channel(
            id=self.ids.next(),
            guild_id=guild.id,
            name=name,
            type=type,
            position=position,
            topic=topic,
            nsfw=nsfw,
            parent_id=category.id if category else None,
            overwrites=list(overwrites),
        )
        guild.channels[channel.id] = channel
        self._emit("CHANNEL_CREATE", channel)
        return channel

    def add_thread(
        self,
        parent: Channel,
        name: str,
        *,
        owner: User | None = None,
        private: bool = False,
        thread_id: int | None = None,
        auto_archive_duration: int = 1440,
        rate_limit_per_user: int = 0,
    ) -> Channel:
        """A thread under ``parent``, announced as THREAD_CREATE; ``thread_id`` (default: a fresh
        snowflake) is the starter message's id for a thread started from a message, as on Discord."""
        if parent.is_thread:
            raise ValueError(f"a thread cannot hold a thread ({parent.name!r} is one)")
        guild = self.guilds[parent.guild_id]
        if thread_id is not None and self.channel(thread_id) is not None:
            raise ValueError(f"channel id {thread_id} is taken")
        thread = Channel(
            id=thread_id if thread_id is not None else self.ids.next(),
            guild_id=guild.id,
            name=name,
            type=ChannelType.PRIVATE_THREAD if private else ChannelType.PUBLIC_THREAD,
            parent_id=parent.id,
            owner_id=(owner or self.users[guild.owner_id]).id,
            auto_archive_duration=auto_archive_duration,
            rate_limit_per_user=rate_limit_per_user,
        )
        guild.channels[thread.id] = thread
        self._emit("THREAD_CREATE", thread)
        return thread

    def add_role(self, guild: Guild, name: str, permissions: int = 0, *, color: int = 0) -> Role:
        role = self._new_role(guild, name, int(permissions), color=color)
        self._emit("GUILD_ROLE_CREATE", role)
        return role

    def add_member(
        self,
        guild: Guild,
        user: User | str,
        roles: Iterable[Role] = (),
        *,
        nick: str | None = None,
        bot: bool = False,
    ) -> Member:
        """``user`` (a new user when given a name; a bot user with ``bot``) joins ``guild``."""
        if isinstance(user, str):
            user = self.add_user(user, bot=bot)
        elif bot and not user.bot:
            raise ValueError(f"user {user.name!r} is not a bot user")
        member = self._new_member(guild, user, roles, nick=nick)
        self._emit("GUILD_MEMBER_ADD", member)
        return member

    def _new_role(
        self, guild: Guild, name: str, permissions: int, *, color: int = 0, bot_id: int | None = None
    ) -> Role:
        role = Role(
            id=self.ids.next(),
            guild_id=guild.id,
            name=name,
            permissions=int(permissions),
            position=len(guild.roles),
            color=color,
            bot_id=bot_id,
        )
        guild.roles[role.id] = role
        return role

    def _new_member(
        self, guild: Guild, user: User, roles: Iterable[Role], *, nick: str | None = None
    ) -> Member:
        role_ids = [r.id for r in roles]
        unknown = [r for r in role_ids if r not in guild.roles]
        if unknown:
            raise ValueError(f"roles {unknown} are not in guild {guild.name!r}")
        member = Member(user=user, guild_id=guild.id, roles=role_ids, nick=nick)
        guild.members[user.id] = member
        return member

    # -- looking up ------------------------------------------------------------------------------

    def channel(self, channel_id: int) -> Channel | None:
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild.channels[channel_id]
        return None

    def member(self, guild: Guild, user: User | Member) -> Member:
        user_id = user.id
        try:
            return guild.members[user_id]
        except KeyError:
            raise LookupError(f"user {user_id} is not a member of guild {guild.name!r}") from None

    # -- permissions -----------------------------------------------------------------------------

    def base_permissions(self, member: Member) -> int:
        guild = self.guilds[member.guild_id]
        if member.id == guild.owner_id:
            return ALL_PERMISSIONS
        perms = guild.everyone.permissions
        for role_id in member.roles:
            perms |= guild.roles[role_id].permissions
        return ALL_PERMISSIONS if perms & Perm.ADMINISTRATOR else perms

    def permissions(self, member: Member, channel: Channel | None = None) -> int:
        """Discord's algorithm: base permissions, then @everyone, role and member overwrites.

        A thread takes its parent channel's overwrites.
        """
        perms = self.base_permissions(member)
        if channel is None or perms & Perm.ADMINISTRATOR:
            return perms
        if channel.is_thread and channel.parent_id is not None:
            channel = self.guilds[channel.guild_id].channels[channel.parent_id]
        by_id = {o.id: o for o in channel.overwrites}
        everyone = by_id.get(member.guild_id)
        if everyone:
            perms = (perms & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.roles:
            if role_id in by_id:
                allow |= by_id[role_id].allow
                deny |= by_id[role_id].deny
        perms = (perms & ~deny) | allow
        own = by_id.get(member.id)
        if own and own.type == 1:
            perms = (perms & ~own.deny) | own.allow
        return perms if perms & Perm.VIEW_CHANNEL else 0
