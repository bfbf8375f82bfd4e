"""World objects rendered as Discord API v10 JSON (field lists from discord-api-docs).

Ids are strings and permissions are strings, as Discord sends them. Fields discord.py reads with
``data[...]`` (not ``.get``) are always present; leaving one out kills the client's gateway parser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopback.world import Application, Channel, Guild, Member, Role, User, World


def user(u: User) -> dict[str, Any]:
    return {
        "id": str(u.id),
        "username": u.name,
        "discriminator": "0",
        "global_name": u.global_name,
        "avatar": None,
        "bot": u.bot,
        "system": False,
        "banner": None,
        "accent_color": None,
        "public_flags": 0,
        "flags": 0,
        "avatar_decoration_data": None,
    }


def role(r: Role) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(r.id),
        "name": r.name,
        "color": r.color,
        "colors": {"primary_color": r.color, "secondary_color": None, "tertiary_color": None},
        "hoist": r.hoist,
        "icon": None,
        "unicode_emoji": None,
        "position": r.position,
        "permissions": str(r.permissions),
        "managed": r.bot_id is not None,
        "mentionable": r.mentionable,
        "flags": 0,
    }
    if r.bot_id is not None:
        data["tags"] = {"bot_id": str(r.bot_id)}
    return data


def member(m: Member, *, permissions: int | None = None, with_user: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "nick": m.nick,
        "avatar": None,
        "banner": None,
        "roles": [str(r) for r in m.roles],
        "joined_at": m.joined_at,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
    }
    if with_user:
        data["user"] = user(m.user)
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def channel(c: Channel, *, permissions: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(c.id),
        "type": int(c.type),
        "guild_id": str(c.guild_id),
        "name": c.name,
        "parent_id": str(c.parent_id) if c.parent_id else None,
        "last_message_id": str(c.last_message_id) if c.last_message_id else None,
        "rate_limit_per_user": c.rate_limit_per_user,
        "flags": 0,
        "nsfw": c.nsfw,
    }
    if c.is_thread:
        data.update(
            owner_id=str(c.owner_id),
            message_count=0,
            member_count=1,
            total_message_sent=0,
            thread_metadata={
                "archived": c.archived,
                "auto_archive_duration": c.auto_archive_duration,
                "archive_timestamp": c.created_at,
                "locked": False,
                "create_timestamp": c.created_at,
            },
        )
    else:
        data.update(
            position=c.position,
            topic=c.topic,
            default_auto_archive_duration=1440,
            permission_overwrites=[
                {"id": str(o.id), "type": o.type, "allow": str(o.allow), "deny": str(o.deny)}
                for o in c.overwrites
            ],
        )
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def guild(g: Guild) -> dict[str, Any]:
    """The guild object proper (no members/channels): what GUILD_CREATE extends."""
    return {
        "id": str(g.id),
        "name": g.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(g.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": [role(r) for r in g.roles.values()],
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "max_members": 500000,
        "vanity_url_code": None,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": g.locale,
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
    }


def guild_create(g: Guild, world: World) -> dict[str, Any]:
    return {
        **guild(g),
        "joined_at": g.members[world.application.bot.id].joined_at,
        "large": False,
        "unavailable": False,
        "member_count": len(g.members),
        "voice_states": [],
        "members": [member(m) for m in g.members.values()],
        "channels": [channel(c) for c in g.channels.values() if not c.is_thread],
        "threads": [channel(c) for c in g.threads if not c.archived],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def application(app: Application) -> dict[str, Any]:
    return {
        "id": str(app.id),
        "name": app.name,
        "icon": None,
        "description": app.description,
        "summary": "",
        "type": None,
        "bot_public": True,
        "bot_require_code_grant": False,
        "verify_key": "0" * 64,
        "owner": user(app.owner),
        "team": None,
        "flags": app.flags,
        "bot": user(app.bot),
        "tags": [],
        "redirect_uris": [],
        "interactions_endpoint_url": None,
        "role_connections_verification_url": None,
        "approximate_guild_count": 1,
        "integration_types_config": {"0": {}},
    }


def ready(
    world: World, *, session_id: str, resume_url: str, shard: list[int] | None, guild_ids: list[int]
) -> dict[str, Any]:
    """READY for a session on ``shard``: its guilds (``guild_ids``) as unavailable stubs, as Discord
    sends them before their GUILD_CREATEs."""
    data: dict[str, Any] = {
        "v": 10,
        "user": {**user(world.application.bot), "verified": True, "mfa_enabled": False, "email": None},
        "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
        "session_id": session_id,
        "session_type": "normal",
        "resume_gateway_url": resume_url,
        "application": {"id": str(world.application.id), "flags": world.application.flags},
        "private_channels": [],
        "relationships": [],
        "presences": [],
        "_trace": ["loopback"],
    }
    if shard is not None:  # echoed only when IDENTIFY carried one
        data["shard"] = shard
    return data


def event(name: str, subject: Any, world: World) -> dict[str, Any]:
    """The DISPATCH payload of a world event (``World.listen`` hands over the object it is about)."""
    if name == "GUILD_CREATE":
        return guild_create(subject, world)
    if name == "CHANNEL_CREATE":
        return channel(subject)
    if name == "THREAD_CREATE":
        return {**channel(subject), "newly_created": True}
    if name == "GUILD_ROLE_CREATE":
        return {"guild_id": str(subject.guild_id), "role": role(subject)}
    if name == "GUILD_MEMBER_ADD":
        return {**member(subject), "guild_id": str(subject.guild_id)}
    raise ValueError(f"no payload for world event {name}")
