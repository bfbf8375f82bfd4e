"""Characters per server: created, listed, edited and deleted, each change in the audit log."""

from __future__ import annotations

import time
from typing import Any

from domain.characters import MAX_CHARACTERS, Character, NameTaken, name_key
from storage.driver import Connection
from storage.repositories.base import Repository, audit
from storage.types import LimitReached

_COLUMNS = "id, guild_id, name, persona, greeting, avatar_url, avatar, created_by, created_at, updated_at"


def _character(row: Any) -> Character:
    id_, guild_id, name, persona, greeting, avatar_url, avatar, created_by, created_at, updated_at = row
    return Character(
        id=int(id_),
        guild_id=int(guild_id),
        name=name,
        persona=persona,
        greeting=greeting,
        avatar_url=avatar_url,
        avatar=bytes(avatar) if avatar is not None else None,
        created_by=int(created_by),
        created_at=float(created_at),
        updated_at=float(updated_at),
    )


class Characters(Repository):
    async def create_character(
        self,
        guild_id: int,
        name: str,
        persona: str,
        *,
        greeting: str = "",
        avatar_url: str = "",
        avatar: bytes | None = None,
        actor_id: int,
    ) -> Character | None:
        now = time.time()
        async with self._db.transaction() as tx:
            if await _find(tx, guild_id, name) is not None:
                return None
            count = await tx.fetchval("SELECT COUNT(*) FROM characters WHERE guild_id = $1", guild_id)
            if int(count) >= MAX_CHARACTERS:
                raise LimitReached("characters", MAX_CHARACTERS)
            await tx.execute(
                "INSERT INTO characters (guild_id, name, name_key, persona, greeting, avatar_url, avatar,"
                " created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                guild_id,
                name,
                name_key(name),
                persona,
                greeting,
                avatar_url,
                avatar,
                actor_id,
                now,
                now,
            )
            await audit(tx, "guild", guild_id, actor_id, "character create", name, now)
            return await _find(tx, guild_id, name)

    async def character(self, guild_id: int, name: str) -> Character | None:
        async with self._db.reading() as db:
            return await _find(db, guild_id, name)

    async def character_by_id(self, character_id: int) -> Character | None:
        async with self._db.reading() as db:
            row = await db.fetchrow(f"SELECT {_COLUMNS} FROM characters WHERE id = $1", character_id)
        return _character(row) if row is not None else None

    async def characters(self, guild_id: int) -> list[Character]:
        async with self._db.reading() as db:
            rows = await db.fetch(
                f"SELECT {_COLUMNS} FROM characters WHERE guild_id = $1 ORDER BY name_key", guild_id
            )
        return [_character(row) for row in rows]

    async def update_character(
        self,
        guild_id: int,
        name: str,
        *,
        actor_id: int,
        new_name: str | None = None,
        persona: str | None = None,
        greeting: str | None = None,
        avatar_url: str | None = None,
        avatar: bytes | None = None,
    ) -> Character | None:
        now = time.time()
        async with self._db.transaction() as tx:
            old = await _find(tx, guild_id, name)
            if old is None:
                return None
            if new_name is not None and name_key(new_name) != name_key(old.name):
                if await _find(tx, guild_id, new_name) is not None:
                    raise NameTaken(new_name)
            new_avatar: tuple[bytes | None, str] | None = (avatar, "") if avatar is not None else None
            new_avatar = (None, avatar_url) if avatar_url is not None else new_avatar
            stored_avatar, stored_url = new_avatar or (old.avatar, old.avatar_url)
            renamed = new_name if new_name is not None else old.name
            await tx.execute(
                "UPDATE characters SET name = $1, name_key = $2, persona = $3, greeting = $4,"
                " avatar_url = $5, avatar = $6, updated_at = $7 WHERE id = $8",
                renamed,
                name_key(renamed),
                persona if persona is not None else old.persona,
                greeting if greeting is not None else old.greeting,
                stored_url,
                stored_avatar,
                now,
                old.id,
            )
            changed = [
                k
                for k, v in (("name", new_name), ("persona", persona), ("greeting", greeting))
                if v is not None
            ]
            if new_avatar is not None:
                changed.append("avatar")
            detail = f"{old.name}: {', '.join(changed) or 'nothing'}"
            if new_name is not None and new_name != old.name:
                detail += f" (now {new_name})"
            await audit(tx, "guild", guild_id, actor_id, "character edit", detail, now)
            return await _find(tx, guild_id, renamed)

    async def delete_character(self, guild_id: int, name: str, *, actor_id: int) -> bool:
        now = time.time()
        async with self._db.transaction() as tx:
            old = await _find(tx, guild_id, name)
            if old is None:
                return False
            await tx.execute("DELETE FROM characters WHERE id = $1", old.id)
            await audit(tx, "guild", guild_id, actor_id, "character delete", old.name, now)
        return True


async def _find(db: Connection, guild_id: int, name: str) -> Character | None:
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM characters WHERE guild_id = $1 AND name_key = $2", guild_id, name_key(name)
    )
    return _character(row) if row is not None else None
