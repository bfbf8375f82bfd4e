"""Every store of ``Storage`` is one repository class, the same on every database, that has each
method of its protocol with the protocol's own signature."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from storage.protocols import (
    CharacterStore,
    ConversationStore,
    LimitStore,
    MetaStore,
    ReplyStore,
    RulesStore,
    SettingsStore,
    Storage,
    StoryStore,
)
from storage.repositories import Characters, Conversations, Limits, Meta, Replies, Rules, Settings, Stories

REPOSITORIES = {
    "settings": (SettingsStore, Settings),
    "meta": (MetaStore, Meta),
    "rules": (RulesStore, Rules),
    "stories": (StoryStore, Stories),
    "conversations": (ConversationStore, Conversations),
    "replies": (ReplyStore, Replies),
    "limits": (LimitStore, Limits),
    "characters": (CharacterStore, Characters),
}


def test_every_store_of_storage_has_its_repository() -> None:
    stores = {f.name for f in dataclasses.fields(Storage)} - {"close"}
    assert stores == set(REPOSITORIES), "a new store needs its repository (and a line here)"


@pytest.mark.parametrize("name", sorted(REPOSITORIES))
def test_the_repository_has_every_method_of_its_protocol_with_its_signature(name: str) -> None:
    protocol, repository = REPOSITORIES[name]
    wanted = {m for m in vars(protocol) if not m.startswith("_") and callable(getattr(protocol, m))}
    assert wanted, protocol
    for method in wanted:
        assert inspect.signature(getattr(repository, method)) == inspect.signature(
            getattr(protocol, method)
        ), f"{repository.__name__}.{method}"
