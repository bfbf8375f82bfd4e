"""Story mode's pure parts: whose turn it is, the prompt window, the transcript."""

from __future__ import annotations

from cogs.story import next_player, transcript, turn_started_at
from domain.stories import CONTEXT_CHARS, story_prompt
from model_service.types import MAX_PROMPT_CHARS
from storage import Story, StoryPlayer, StorySkip, StoryTurn

ALICE, BOB, CAROL = StoryPlayer(1, "alice", 1.0), StoryPlayer(2, "bob", 2.0), StoryPlayer(3, "carol", 3.0)


def story(mode: str = "round-robin") -> Story:
    return Story(1, 10, 20, ALICE.user_id, "A crab keeps a lighthouse.", mode, 3, "open", 0.0)  # type: ignore[arg-type]


def turn(seq: int, kind: str, author: StoryPlayer | None, text: str = "…") -> StoryTurn:
    return StoryTurn(
        seq, kind, author.user_id if author else None, author.name if author else "bot", text, 0.0
    )  # type: ignore[arg-type]


def test_round_robin_goes_round_in_join_order() -> None:
    players = [ALICE, BOB, CAROL]
    turns = [turn(1, "opening", None)]
    assert next_player(story(), players, turns) == ALICE
    turns += [turn(2, "player", ALICE), turn(3, "bot", None)]
    assert next_player(story(), players, turns) == BOB
    turns += [turn(4, "player", BOB), turn(5, "bot", None), turn(6, "player", CAROL), turn(7, "bot", None)]
    assert next_player(story(), players, turns) == ALICE


def test_a_late_joiner_comes_after_the_last_author_not_out_of_order() -> None:
    turns = [turn(1, "player", ALICE), turn(2, "bot", None), turn(3, "player", BOB)]
    assert next_player(story(), [ALICE, BOB], turns) == ALICE
    assert next_player(story(), [ALICE, BOB, CAROL], turns) == CAROL


def test_a_skipped_turn_passes_to_the_next_player_and_a_later_turn_counts_again() -> None:
    players = [ALICE, BOB, CAROL]
    turns = [turn(1, "opening", None), turn(2, "player", ALICE), turn(3, "bot", None)]
    skips = [StorySkip(BOB.user_id, None, 0.0)]  # bob timed out right after alice wrote
    assert next_player(story(), players, turns, skips) == CAROL
    later = [*turns, StoryTurn(4, "player", CAROL.user_id, "carol", "…", 5.0)]
    assert next_player(story(), players, later, skips) == ALICE
    assert next_player(story(), players, later, [*skips, StorySkip(ALICE.user_id, 2, 6.0)]) == BOB
    assert turn_started_at(story(), later, skips) == 5.0


def test_free_mode_has_no_turn_order() -> None:
    assert next_player(story("free"), [ALICE, BOB], [turn(1, "player", ALICE)]) is None


def test_the_prompt_keeps_the_premise_and_the_latest_turns_that_fit() -> None:
    texts = [f"turn {i} " + "x" * 90 for i in range(100)]  # ~10 000 characters of story
    prompt = story_prompt("The premise.", texts)
    assert len(prompt) <= CONTEXT_CHARS < MAX_PROMPT_CHARS
    assert prompt.startswith("The premise.\n\n")
    assert prompt.endswith(texts[-1])  # the newest turn, whole
    kept = prompt.split("\n\n")[1:]
    assert kept == texts[-len(kept) :]  # a contiguous, most recent run, in order
    assert len(kept) > 20


def test_a_huge_latest_turn_is_cut_from_the_left_and_a_huge_premise_is_capped() -> None:
    prompt = story_prompt("P" * 5000, ["old", "y" * 5000 + "END"])
    assert len(prompt) <= CONTEXT_CHARS
    assert prompt.startswith("P" * 100) and prompt.endswith("END")
    assert "old" not in prompt


def test_a_short_story_is_all_there_and_blank_turns_are_skipped() -> None:
    assert story_prompt(" Premise ", ["One.", "  ", " Two. "]) == "Premise\n\nOne.\n\nTwo."
    assert story_prompt("Premise", []) == "Premise"


def test_the_transcript_labels_each_part_in_order() -> None:
    turns = [
        turn(1, "opening", None, " Once. "),
        turn(2, "player", ALICE, "Then."),
        turn(4, "bot", None, "After."),
    ]
    text = transcript(story(), [ALICE, BOB], turns)
    header, body = text.split("\n\n", 1)
    assert header.splitlines()[:3] == [
        "Story #1",
        "Premise: A crab keeps a lighthouse.",
        "Turns: round-robin · Players: alice, bob",
    ]
    assert body == "[Opening]\nOnce.\n\n[alice]\nThen.\n\n[bot]\nAfter.\n"


def test_the_story_is_asked_of_a_storyteller_a_paragraph_at_a_time() -> None:
    from domain.stories import STORY_TURN_TOKENS, STORYTELLER, story_request
    from model_service import GenerationParams

    params = GenerationParams(max_new_tokens=512, temperature=0.8)
    opening = story_request("A crab keeps a lighthouse.", [], params, "smollm2")
    assert (opening.mode, opening.system_prompt, opening.model) == ("chat", STORYTELLER, "smollm2")
    assert opening.prompt == "Write the opening paragraph of a story about: A crab keeps a lighthouse."
    assert opening.params.max_new_tokens == STORY_TURN_TOKENS and opening.params.temperature == 0.8

    later = story_request("A crab keeps a lighthouse.", ["It was dark.", "The crab sang."], params, None)
    assert later.prompt == (
        "Premise: A crab keeps a lighthouse.\n\nThe story so far:\n\nIt was dark.\n\nThe crab sang.\n\n"
        "Write the next paragraph of the story, carrying on from where it stops."
    )
    short = story_request("P", [], GenerationParams(max_new_tokens=512), None, turn_tokens=60)
    assert short.params.max_new_tokens == 60  # the story's own length, not the channel's


def test_a_story_with_a_cast_attributes_every_line_in_the_transcript_and_in_show() -> None:
    from dataclasses import replace

    from cogs.story import story_lines

    cast_story = replace(story("free"), cast_turns="all", narrator=True)
    turns = [
        StoryTurn(1, "opening", None, "Narrator", " Once. ", 0.0, 0, 11),
        StoryTurn(2, "player", ALICE.user_id, "alice", "Then.", 0.0),
        StoryTurn(3, "bot", None, "Mira", "Ahoy!", 0.0, 7, 12),
        StoryTurn(5, "bot", None, "Narrator", "After.", 0.0, 0, 13),
    ]
    text = transcript(cast_story, [ALICE], turns, ["Narrator", "Mira (left)"])
    header, body = text.split("\n\n", 1)
    assert header.splitlines()[2:4] == ["Turns: free · Players: alice", "Cast (all): Narrator, Mira (left)"]
    assert body == "[Narrator]\nOnce.\n\n[alice]\nThen.\n\n[Mira]\nAhoy!\n\n[Narrator]\nAfter.\n"
    assert story_lines(turns) == [
        "`1` **Narrator**: Once.",
        "`2` **alice**: Then.",
        "`3` **Mira**: Ahoy!",
        "`5` **Narrator**: After.",
    ]
