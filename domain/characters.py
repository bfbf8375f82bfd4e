"""Characters: a server's named personas that speak through webhooks, and the rules for them.

No Discord and no I/O here: the checks take the names already taken in the server (members',
roles', the bot's) as plain strings, so they are tested as plain functions.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from domain.errors import UserFacingError

NAME_MAX = 32  # Discord allows a webhook username of 80; a character's name is kept short
PERSONA_MAX = 1500
GREETING_MAX = 500
AVATAR_URL_MAX = 512
MAX_CHARACTERS = 50  # per server
# Discord refuses a webhook username containing these (400 "Username cannot contain ...").
REFUSED_BY_DISCORD = ("discord", "clyde")
# Discord refuses usernames with these, and they would read as mentions or markup.
FORBIDDEN_CHARS = ("@", "#", ":", "```", "<", ">", "`", "*", "_", "~", "|", "\\")
RESERVED = ("everyone", "here", "system")


class NameTaken(Exception):
    """Another character of the server already has this name (case aside)."""


@dataclass(frozen=True)
class Character:
    id: int
    guild_id: int
    name: str
    persona: str
    greeting: str = ""
    avatar_url: str = ""  # an https URL the moderator gave
    avatar: bytes | None = None  # or a stored PNG (an uploaded image, or the drawn initial)
    created_by: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0


def name_key(name: str) -> str:
    """How names are compared: case, accents' composition and spacing do not matter."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def check_name(name: str) -> str:
    """The name as it will be stored (spaces collapsed), or a UserFacingError saying why not."""
    name = " ".join(unicodedata.normalize("NFKC", name).split())
    if not 1 <= len(name) <= NAME_MAX:
        raise UserFacingError(f"A character's name must be 1 to {NAME_MAX} characters long.")
    key = name_key(name)
    for word in REFUSED_BY_DISCORD:
        if word in key:
            raise UserFacingError(
                f"Discord refuses webhook names containing “{word}”: pick another name for the character."
            )
    for bad in FORBIDDEN_CHARS:
        if bad in name:
            raise UserFacingError(f"A character's name may not contain `{bad}`.")
    if key in RESERVED:
        raise UserFacingError(f"“{name}” is reserved: pick another name for the character.")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise UserFacingError("A character's name may not contain control or invisible characters.")
    return name


def check_persona(persona: str) -> str:
    persona = persona.strip()
    if not 1 <= len(persona) <= PERSONA_MAX:
        raise UserFacingError(f"A character's persona must be 1 to {PERSONA_MAX} characters long.")
    return persona


def check_greeting(greeting: str) -> str:
    greeting = greeting.strip()
    if len(greeting) > GREETING_MAX:
        raise UserFacingError(f"A character's greeting may be at most {GREETING_MAX} characters long.")
    return greeting


def check_avatar_url(url: str) -> str:
    url = url.strip()
    if len(url) > AVATAR_URL_MAX or not re.fullmatch(r"https://[^\s/$.?#][^\s]*", url):
        raise UserFacingError("An avatar must be an image attachment or an https:// link to an image.")
    return url


def clash(name: str, taken: Iterable[str]) -> str | None:
    """The name of a member, role or the bot that ``name`` would impersonate, or None."""
    key = name_key(name)
    return next((other for other in taken if other and name_key(other.lstrip("@")) == key), None)


def check_not_taken(name: str, *, members: Iterable[str], roles: Iterable[str], bot: Iterable[str]) -> None:
    for what, names in (("the bot", bot), ("a member", members), ("a role", roles)):
        if (other := clash(name, names)) is not None:
            raise UserFacingError(
                f"“{name}” is the name of {what} here (“{other}”): a character may not pass for someone."
            )


def addressed_character(text: str, names: Iterable[str]) -> tuple[str, str] | None:
    """The character a message starts with, as ``(name, the rest)``: the longest name that is the
    message's first words (case-insensitive), followed by its end, a space or punctuation."""
    stripped = text.lstrip()
    best: tuple[str, str] | None = None
    for name in names:
        if not name or len(stripped) < len(name) or name_key(stripped[: len(name)]) != name_key(name):
            continue
        rest = stripped[len(name) :]
        if rest and not (rest[0].isspace() or rest[0] in ",:;!?.-—"):
            continue
        if best is None or len(name) > len(best[0]):
            best = (name, rest.lstrip(" ,:;—-").strip())
    return best


def avatar_colour(name: str) -> tuple[int, int, int]:
    """A colour of the name's own, the same every time (the drawn avatar's background)."""
    digest = hashlib.sha256(name_key(name).encode()).digest()
    hue = digest[0] / 255
    # A fairly dark, saturated colour, so a white initial reads on it.
    r, g, b = colorsys.hls_to_rgb(hue, 0.42, 0.6)
    return int(r * 255), int(g * 255), int(b * 255)


def initial(name: str) -> str:
    return next((c.upper() for c in name if c.isalnum()), "?")
