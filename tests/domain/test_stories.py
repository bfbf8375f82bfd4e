"""A story's cast, as plain rules: the names given, who speaks after a player's turn, what each is asked."""

from __future__ import annotations

import pytest

from domain.characters import Character
from domain.errors import UserFacingError
from domain.stories import (
    MAX_CAST,
    NARRATOR,
    STORYTELLER,
    cast_request,
    next_speakers,
    opener,
    parse_cast,
    unknown_cast_message,
    unknown_names,
)
from model_service import GenerationParams

MIRA, BARD, OTTO = 7, 8, 9
ORDER = (NARRATOR, MIRA, BARD)


def test_the_cast_is_names_separated_by_commas_each_once_in_order() -> None:
    assert parse_cast(" Mira ,  Old   Bard,mira,, ") == ["Mira", "Old Bard"]
    with pytest.raises(UserFacingError, match="separated by commas"):
        parse_cast(" , ,")
    with pytest.raises(UserFacingError, match=f"at most {MAX_CAST} characters, got 6"):
        parse_cast(",".join(f"c{i}" for i in range(6)))


def test_unknown_names_are_all_named() -> None:
    assert unknown_names(["MIRA", "Ghost", "Spook"], ["Mira", "Bard"]) == ["Ghost", "Spook"]
    assert "no character named “Ghost”;" in unknown_cast_message(["Ghost"])
    assert "no characters named “Ghost”, “Spook”;" in unknown_cast_message(["Ghost", "Spook"])


def test_in_rotation_one_of_the_cast_speaks_after_each_player_round_and_round() -> None:
    present = set(ORDER)
    assert opener(ORDER, present) == NARRATOR
    assert next_speakers(ORDER, present, NARRATOR, "rotation") == [MIRA]
    assert next_speakers(ORDER, present, MIRA, "rotation") == [BARD]
    assert next_speakers(ORDER, present, BARD, "rotation") == [NARRATOR]
    assert next_speakers(ORDER, present, None, "rotation") == [NARRATOR]  # no line of the cast yet


def test_a_character_who_left_is_passed_over_and_the_rotation_keeps_its_place() -> None:
    without_mira = {NARRATOR, BARD}
    assert next_speakers(ORDER, without_mira, NARRATOR, "rotation") == [BARD]
    assert next_speakers(ORDER, without_mira, MIRA, "rotation") == [BARD]  # she spoke last, then left
    assert opener((MIRA, BARD), {BARD}) == BARD
    assert next_speakers(ORDER, set(), BARD, "rotation") == []
    assert opener(ORDER, set()) is None


def test_with_all_the_whole_cast_speaks_in_order_after_each_player() -> None:
    assert next_speakers(ORDER, set(ORDER), BARD, "all") == [NARRATOR, MIRA, BARD]
    assert next_speakers((MIRA, OTTO, BARD), {MIRA, BARD}, None, "all") == [MIRA, BARD]


def test_the_narrator_tells_the_story_on_and_a_character_speaks_as_itself() -> None:
    params = GenerationParams(max_new_tokens=512, temperature=0.5)
    lines = [(None, "The sea was grey."), ("alice", "Alice waves."), ("Mira", "Ahoy!")]
    narrator = Character(NARRATOR, 1, "Narrator", STORYTELLER)
    told = cast_request("A voyage.", lines, narrator, params, "tiny", turn_tokens=60)
    assert told.system_prompt == STORYTELLER and told.params.max_new_tokens == 60
    assert "The sea was grey.\n\nalice: Alice waves.\n\nMira: Ahoy!\n\n" in told.prompt

    mira = Character(MIRA, 1, "Mira", "  A pirate captain. ")
    spoken = cast_request("A voyage.", lines, mira, params, None, turn_tokens=60)
    assert spoken.system_prompt is not None and spoken.system_prompt.startswith(
        "You are Mira, a character in a story that a group of players tells together. A pirate captain.\n"
    )
    assert spoken.prompt.startswith("Premise: A voyage.\n\nThe story so far:\n\nThe sea was grey.")
    assert spoken.prompt.endswith("Mira: Ahoy!\n\nWhat does Mira say and do now? Answer as Mira.")
    assert (spoken.mode, spoken.params.max_new_tokens, spoken.params.temperature) == ("chat", 60, 0.5)
    first = cast_request("A voyage.", [], mira, params, None, turn_tokens=60)
    assert (
        first.prompt
        == "Premise: A voyage.\n\nThe story begins. What does Mira say and do first? Answer as Mira."
    )
