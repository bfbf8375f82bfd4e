"""The character store's contract, on both backends: per server, names whatever their case, the
avatar kept as bytes or as a URL, each change in the audit log, kept across a restart."""

from __future__ import annotations

import pytest

from domain.characters import MAX_CHARACTERS, NameTaken
from domain.settings import ChannelSettings
from storage import Storage
from storage.types import LimitReached
from tests.storage.conftest import Opener

GUILD, OTHER = 10, 11
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


async def test_create_find_list_and_keep_across_a_restart(store: Storage, open_storage: Opener) -> None:
    made = await store.characters.create_character(
        GUILD, "Captain Mira", "You are a pirate captain.", greeting="Ahoy!", avatar=PNG, actor_id=1
    )
    assert made is not None and made.name == "Captain Mira" and made.avatar == PNG
    await store.characters.create_character(
        GUILD, "Bard", "You sing.", avatar_url="https://example.com/bard.png", actor_id=1
    )
    await store.characters.create_character(OTHER, "Elsewhere", "Other server.", actor_id=2)

    assert await store.characters.create_character(GUILD, "captain MIRA", "dup", actor_id=1) is None
    found = await store.characters.character(GUILD, "CAPTAIN mira")
    assert found == made
    assert await store.characters.character(OTHER, "Captain Mira") is None
    assert [c.name for c in await store.characters.characters(GUILD)] == ["Bard", "Captain Mira"]
    bard = await store.characters.character(GUILD, "bard")
    assert bard is not None and bard.avatar is None and bard.avatar_url == "https://example.com/bard.png"

    again = await open_storage(ChannelSettings())
    try:
        assert await again.characters.character_by_id(made.id) == made
    finally:
        await again.close()


async def test_edit_rename_and_delete_are_logged(store: Storage) -> None:
    await store.characters.create_character(GUILD, "Mira", "A pirate.", avatar=PNG, actor_id=1)
    await store.characters.create_character(GUILD, "Bard", "A bard.", actor_id=1)

    edited = await store.characters.update_character(
        GUILD, "mira", actor_id=2, new_name="Mira Vane", avatar_url="https://example.com/m.png"
    )
    assert edited is not None and edited.name == "Mira Vane" and edited.persona == "A pirate."
    assert edited.avatar is None and edited.avatar_url == "https://example.com/m.png"
    with pytest.raises(NameTaken):
        await store.characters.update_character(GUILD, "Mira Vane", actor_id=2, new_name="BARD")
    assert await store.characters.update_character(GUILD, "nobody", actor_id=2, persona="x") is None
    # renaming to the same name in another case is no clash with itself
    recased = await store.characters.update_character(GUILD, "mira vane", actor_id=2, new_name="MIRA VANE")
    assert recased is not None and recased.name == "MIRA VANE"

    assert await store.characters.delete_character(GUILD, "bard", actor_id=3)
    assert not await store.characters.delete_character(GUILD, "bard", actor_id=3)
    assert [c.name for c in await store.characters.characters(GUILD)] == ["MIRA VANE"]

    log = await store.rules.audit_log(GUILD, [], limit=20)
    actions = [(e.action, e.actor_id) for e in reversed(log)]
    assert actions == [
        ("character create", 1),
        ("character create", 1),
        ("character edit", 2),
        ("character edit", 2),
        ("character delete", 3),
    ]


async def test_a_server_has_a_limited_number(store: Storage) -> None:
    for i in range(MAX_CHARACTERS):
        await store.characters.create_character(GUILD, f"c{i}", "p", actor_id=1)
    with pytest.raises(LimitReached):
        await store.characters.create_character(GUILD, "one more", "p", actor_id=1)
    assert await store.characters.create_character(OTHER, "one more", "p", actor_id=1) is not None
