"""The moderation gate without Discord: blocklist matching and redaction, lock, cooldown, limit."""

from __future__ import annotations

import pytest
from discord import app_commands

from cogs.utils.moderation import (
    LOCKED_MESSAGE,
    MAX_PHRASE_CHARS,
    Blocklist,
    ChannelRules,
    Gate,
    normalize_phrase,
)
from cogs.utils.replies import UserFacingError, error_message

CHANNEL, THREAD, OTHER = 20, 30, 40
ALICE, BOB = 1, 2


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


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


# --- the gate ---------------------------------------------------------------------------


def test_no_rules_let_everything_through() -> None:
    gate = Gate()
    admission = gate.admit([(CHANNEL, ChannelRules())], ALICE, ["hello dragon"])
    assert admission.redact.redact("dragon") == "dragon"
    gate.release(admission)
    assert gate.inflight(CHANNEL) == 0


def test_a_locked_channel_refuses_with_the_lock_message() -> None:
    with pytest.raises(UserFacingError) as info:
        Gate().admit([(CHANNEL, ChannelRules(locked=True))], ALICE, ["hi"])
    assert error_message(info.value) == f"🔒 {LOCKED_MESSAGE}"


def test_a_thread_is_locked_when_its_parent_is() -> None:
    scopes = [(CHANNEL, ChannelRules(locked=True)), (THREAD, ChannelRules())]
    with pytest.raises(UserFacingError, match="locked"):
        Gate().admit(scopes, ALICE, ["hi"])


def test_a_blocked_phrase_in_any_text_is_refused_naming_it() -> None:
    rules = ChannelRules(blocklist=Blocklist.of(["dark lord"]))
    with pytest.raises(UserFacingError) as info:
        Gate().admit([(CHANNEL, rules)], ALICE, ["fine", "Hail the Dark Lord!"])
    assert "“dark lord”" in error_message(info.value)


def test_a_thread_uses_its_own_and_its_parents_blocklist() -> None:
    scopes = [
        (CHANNEL, ChannelRules(blocklist=Blocklist.of(["orc"]))),
        (THREAD, ChannelRules(blocklist=Blocklist.of(["elf"]))),
    ]
    gate = Gate()
    for word in ("orc", "elf"):
        with pytest.raises(UserFacingError, match=word):
            gate.admit(scopes, ALICE, [f"an {word}"])
    admission = gate.admit(scopes, ALICE, ["a dwarf"])
    assert admission.redact.redact("orc and elf and dwarf") == "███ and ███ and dwarf"


def test_cooldown_is_per_user_and_says_how_long_to_wait() -> None:
    clock = Clock()
    gate = Gate(clock)
    rules = [(CHANNEL, ChannelRules(cooldown_s=30))]
    gate.release(gate.admit(rules, ALICE, ["one"]))
    clock.now += 10.2
    with pytest.raises(app_commands.CommandOnCooldown) as info:
        gate.admit(rules, ALICE, ["two"])
    assert info.value.retry_after == 20  # 19.8 s, rounded up
    assert error_message(info.value) == "⏳ Slow down: you can use this again in 20 s."
    gate.release(gate.admit(rules, BOB, ["bob is not cooling down"]))
    gate.release(gate.admit([(OTHER, ChannelRules(cooldown_s=30))], ALICE, ["another channel"]))
    clock.now += 20
    gate.release(gate.admit(rules, ALICE, ["three"]))


def test_a_refused_request_does_not_start_the_cooldown() -> None:
    clock = Clock()
    gate = Gate(clock)
    rules = ChannelRules(cooldown_s=30, blocklist=Blocklist.of(["nope"]))
    with pytest.raises(UserFacingError):
        gate.admit([(CHANNEL, rules)], ALICE, ["nope"])
    gate.admit([(CHANNEL, rules)], ALICE, ["fine"])  # not cooling down


def test_changing_the_cooldown_starts_afresh() -> None:
    clock = Clock()
    gate = Gate(clock)
    gate.admit([(CHANNEL, ChannelRules(cooldown_s=60))], ALICE, ["one"])
    clock.now += 6
    gate.admit([(CHANNEL, ChannelRules(cooldown_s=5))], ALICE, ["new period"])
    with pytest.raises(app_commands.CommandOnCooldown):
        gate.admit([(CHANNEL, ChannelRules(cooldown_s=5))], ALICE, ["too soon"])
    gate.reset_cooldowns(CHANNEL)
    gate.admit([(CHANNEL, ChannelRules(cooldown_s=5))], ALICE, ["after a reset"])


def test_limit_refuses_past_n_in_flight_and_frees_a_slot_on_release() -> None:
    gate = Gate()
    rules = [(CHANNEL, ChannelRules(max_inflight=2))]
    first = gate.admit(rules, ALICE, ["1"])
    gate.admit(rules, BOB, ["2"])
    with pytest.raises(UserFacingError) as info:
        gate.admit(rules, ALICE, ["3"])
    assert error_message(info.value).startswith("⏳ This channel is busy: 2 of its requests")
    gate.release(first)
    gate.release(first)  # twice is harmless
    assert gate.inflight(CHANNEL) == 1
    gate.admit(rules, ALICE, ["4"])


def test_a_busy_refusal_does_not_start_the_cooldown() -> None:
    gate = Gate(Clock())
    rules = [(CHANNEL, ChannelRules(max_inflight=1, cooldown_s=60))]
    running = gate.admit(rules, ALICE, ["1"])
    with pytest.raises(UserFacingError, match="busy"):
        gate.admit(rules, BOB, ["2"])
    gate.release(running)
    gate.admit(rules, BOB, ["3"])  # Bob was refused, so he is not cooling down


def test_requests_in_a_thread_count_against_the_parents_limit() -> None:
    gate = Gate()
    parent = (CHANNEL, ChannelRules(max_inflight=1))
    gate.admit([parent, (THREAD, ChannelRules())], ALICE, ["in the thread"])
    with pytest.raises(UserFacingError, match="busy"):
        gate.admit([parent], BOB, ["in the channel"])
