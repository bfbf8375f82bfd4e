"""Each repository written once, over the driver interface (:mod:`storage.driver`).

The same classes serve SQLite and PostgreSQL: :func:`build_storage` puts them over a driver.
"""

from __future__ import annotations

from domain.settings import ChannelSettings
from storage.driver import Driver
from storage.protocols import Storage
from storage.repositories.characters import Characters
from storage.repositories.conversations import Conversations
from storage.repositories.limits import Limits
from storage.repositories.meta import Meta
from storage.repositories.replies import Replies
from storage.repositories.rules import Rules
from storage.repositories.settings import Settings
from storage.repositories.stories import Stories


def build_storage(driver: Driver, defaults: ChannelSettings) -> Storage:
    """The repositories over ``driver``; closing the result closes the driver."""
    return Storage(
        settings=Settings(driver, defaults),
        meta=Meta(driver),
        rules=Rules(driver),
        stories=Stories(driver),
        conversations=Conversations(driver),
        replies=Replies(driver),
        limits=Limits(driver),
        characters=Characters(driver),
        close=driver.close,
    )


__all__ = [
    "Characters",
    "Conversations",
    "Limits",
    "Meta",
    "Replies",
    "Rules",
    "Settings",
    "Stories",
    "build_storage",
]
