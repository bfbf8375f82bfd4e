"""Channel rules without Discord or a database: blocked phrases, matching and redaction."""

from __future__ import annotations

import pytest

from domain.errors import UserFacingError
from domain.rules import MAX_PHRASE_CHARS, Blocklist, normalize_phrase

CHANNEL, THREAD, OTHER = 20, 30, 40
ALICE, BOB = 1, 2


# --- phrases and the blocklist ---------------------------------------------------------


def test_phrases_are_stored_lower_case_with_single_spaces() -> None:
    assert normalize_phrase("  Bad \t  WORD \n") == "bad word"


@pytest.mark.parametrize("phrase", ["", "   ", "\n\t"])
def test_a_blank_phrase_is_refused(phrase: str) -> None:
    with pytest.raises(UserFacingError, match="visible character"):
        normalize_phrase(phrase)


def test_an_overlong_phrase_is_refused_with_the_bound() -> None:
    with pytest.raises(UserFacingError, match=f"at most {MAX_PHRASE_CHARS} characters, got 101"):
        normalize_phrase("x" * 101)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("a dragon appears", "dragon"),
        ("A DRAGON appears", "dragon"),
        ("Dragon!", "dragon"),
        ("(dragon), then", "dragon"),
        ("dragon's lair", "dragon"),  # the apostrophe is not a word character
        ("dragons everywhere", None),  # a longer word is another word
        ("snapdragon", None),
        ("dragon_fly", None),  # underscores are word characters
        ("drag on", None),
    ],
)
def test_whole_words_only_any_case_around_punctuation(text: str, found: str | None) -> None:
    assert Blocklist.of(["dragon"]).find(text) == found


def test_a_multi_word_phrase_matches_across_any_whitespace_but_not_parts() -> None:
    blocklist = Blocklist.of(["Dark Lord"])
    assert blocklist.find("the dark lord rises") == "dark lord"
    assert blocklist.find("the DARK\n  Lord rises") == "dark lord"
    assert blocklist.find("the dark lords rise") is None
    assert blocklist.find("the dark and the lord") is None
    assert blocklist.find("dark") is None


@pytest.mark.parametrize(
    ("phrase", "hit", "miss"),
    [
        ("c++", "I write c++ daily", "I write c daily"),
        ("a.b", "see a.b now", "see axb now"),
        ("(yes)", "say (yes) twice", "say yes twice"),
        ("what?", "so what? fine", "so what fine"),
        ("$100", "costs $100 only", "costs 100 only"),
        ("back\\slash", "a back\\slash here", "a backslash here"),
        ("[x]*", "box [x]* done", "box xxx done"),
    ],
)
def test_regex_metacharacters_in_a_phrase_are_literal(phrase: str, hit: str, miss: str) -> None:
    blocklist = Blocklist.of([phrase])
    assert blocklist.find(hit) == phrase
    assert blocklist.find(miss) is None


def test_redaction_blacks_out_every_match_keeping_its_length() -> None:
    blocklist = Blocklist.of(["dragon", "dark lord"])
    text = "The Dragon met the dark  lord; dragons fled. DRAGON!"
    assert blocklist.redact(text) == "The ██████ met the ██████████; dragons fled. ██████!"


def test_the_longest_phrase_wins_where_phrases_overlap() -> None:
    blocklist = Blocklist.of(["bad", "bad word"])
    assert blocklist.redact("a bad word and a bad day") == "a ████████ and a ███ day"
    assert blocklist.find("a bad word") == "bad word"


def test_an_empty_blocklist_changes_nothing() -> None:
    assert Blocklist().find("anything") is None
    assert Blocklist().redact("anything at all") == "anything at all"


def test_redaction_is_applied_the_same_way_to_each_growing_streamed_text() -> None:
    # stream_reply applies the transform to the whole text so far, each edit: a word that was
    # already complete stays hidden in every later edit, whatever arrives after it.
    blocklist = Blocklist.of(["wolf"])
    deltas = ["The ", "wolf", " howled", " at the Wolf", "-moon"]
    edits = []
    text = ""
    for delta in deltas:
        text += delta
        edits.append(blocklist.redact(text))
    assert edits == [
        "The ",
        "The ████",
        "The ████ howled",
        "The ████ howled at the ████",
        "The ████ howled at the ████-moon",
    ]
    assert all("wolf" not in e.lower() for e in edits)


def test_union_keeps_both_lists() -> None:
    union = Blocklist.of(["a1"]) | Blocklist.of(["b2"])
    assert union.phrases == ("a1", "b2")
    assert union.find("x b2 y") == "b2"
