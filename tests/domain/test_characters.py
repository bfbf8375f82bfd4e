"""Character rules: names Discord accepts and no one else's, lengths, addressing by name."""

from __future__ import annotations

import pytest

from domain.characters import (
    NAME_MAX,
    addressed_character,
    avatar_colour,
    check_avatar_url,
    check_name,
    check_not_taken,
    check_persona,
    initial,
)
from domain.errors import UserFacingError


def test_a_name_is_tidied_and_kept() -> None:
    assert check_name("  Captain   Mira ") == "Captain Mira"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "1 to"),
        ("x" * (NAME_MAX + 1), "1 to"),
        ("Clyde", "Discord refuses"),
        ("my DISCORD pal", "Discord refuses"),
        ("@Mira", "`@`"),
        ("Mi#ra", "`#`"),
        ("everyone", "reserved"),
        ("Mi\u200bra", "invisible"),
    ],
)
def test_names_discord_or_the_server_would_refuse(name: str, why: str) -> None:
    with pytest.raises(UserFacingError, match=why):
        check_name(name)


def test_a_character_may_not_take_a_members_a_roles_or_the_bots_name() -> None:
    for where in ("members", "roles", "bot"):
        names = {"members": [], "roles": [], "bot": [], where: ["ADA"]}
        with pytest.raises(UserFacingError, match="pass for"):
            check_not_taken("ada", **names)  # type: ignore[arg-type]
    check_not_taken("Mira", members=["Ada"], roles=["@everyone", "Moderator"], bot=["Transcord"])


def test_lengths_and_avatar_links() -> None:
    with pytest.raises(UserFacingError):
        check_persona("   ")
    assert check_avatar_url(" https://example.com/a.png ") == "https://example.com/a.png"
    for bad in ("http://example.com/a.png", "javascript:alert(1)", "https://"):
        with pytest.raises(UserFacingError):
            check_avatar_url(bad)


def test_a_message_addresses_the_character_it_starts_with() -> None:
    names = ["Mira", "Mira Vane", "Bard"]
    assert addressed_character("mira vane, hello", names) == ("Mira Vane", "hello")
    assert addressed_character("Mira: ahoy", names) == ("Mira", "ahoy")
    assert addressed_character("Bard", names) == ("Bard", "")
    assert addressed_character("Miranda, hi", names) is None
    assert addressed_character("hi Bard", names) is None


def test_the_drawn_avatar_is_the_same_for_a_name_whatever_its_case() -> None:
    assert avatar_colour("Mira") == avatar_colour("MIRA")
    assert initial("  ~mira") == "M"
