"""The soak's own bookkeeping: how it reads a request's end, finds a lost write, measures growth."""

from __future__ import annotations

from benchmarks.soak_ledger import (
    ANSWERED,
    FAILED,
    REFUSED,
    THINKING,
    UNANSWERED,
    Fault,
    Sample,
    Shown,
    Stored,
    View,
    Write,
    by_phase,
    classify,
    growth,
    lost_writes,
    tracebacks,
)

FOOTER = "\n-# 24 tokens · 1.2 s · smollm2 · stopped at the token limit"


def one(*states: Shown, responded: bool = True) -> View:
    return View(responded, (tuple(states),))


def test_a_reply_left_on_thinking_is_counted_as_thinking() -> None:
    view = one(Shown(1.0, "", loading=True))
    assert classify(view, 0.0, needs_footer=True).status == THINKING


def test_a_footer_makes_an_answer_final_and_times_it() -> None:
    view = one(
        Shown(1.0, "", loading=True), Shown(1.5, "**Hi** there …"), Shown(3.0, "**Hi** there you" + FOOTER)
    )
    outcome = classify(view, 0.5, needs_footer=True)
    assert (outcome.status, outcome.final, outcome.duplicates) == (ANSWERED, True, 0)
    assert outcome.first_text_s == 1.0 and outcome.final_s == 2.5


def test_an_answer_is_final_when_its_footer_first_shows_not_when_a_later_click_edits_it() -> None:
    view = one(
        Shown(1.0, "**Hi** there …"),
        Shown(2.0, "**Hi** there you" + FOOTER),
        Shown(300.0, "**Hi** again" + FOOTER),  # Regenerate, pressed minutes later by another request
    )
    outcome = classify(view, 0.0, needs_footer=True)
    assert outcome.final_s == 2.0


def test_a_partial_answer_is_answered_but_never_final() -> None:
    view = one(Shown(1.0, "", loading=True), Shown(2.0, "**Hi** there …"))
    outcome = classify(view, 0.0, needs_footer=True)
    assert (outcome.status, outcome.final) == (ANSWERED, False)
    # A command without a footer is final once its text no longer ends with the streaming mark.
    assert not classify(view, 0.0, needs_footer=False).final
    assert classify(one(Shown(1.0, "👋 joined story #1")), 0.0, needs_footer=False).final


def test_an_answer_whose_write_then_failed_is_refused_not_acknowledged() -> None:
    # The text and its footer were shown, then saving the turn failed: the error is written under it.
    view = one(
        Shown(1.0, "**Hi** there you" + FOOTER),
        Shown(
            2.0,
            "**Hi** there you" + FOOTER + "\n\n🗄️ The bot's database can't be reached right now, so "
            "the answer above was not saved",
        ),
    )
    outcome = classify(view, 0.0, needs_footer=True)
    assert (outcome.status, outcome.final) == (REFUSED, False)


def test_refusals_failures_and_silence() -> None:
    busy = one(Shown(1.0, "⏳ The model is busy right now; try again in 5 s."))
    assert classify(busy, 0.0, needs_footer=True).status == REFUSED
    cut = one(Shown(1.0, "**Hi** there\n\n🗄️ The bot's database can't be reached right now"))
    assert classify(cut, 0.0, needs_footer=True).status == REFUSED
    generic = one(
        Shown(1.0, "Something went wrong on our side while handling this command. It has been logged.")
    )
    assert classify(generic, 0.0, needs_footer=True).status == FAILED
    assert classify(View(False), 0.0, needs_footer=True).status == UNANSWERED
    # The placeholder deleted and nothing said instead: a failure, not an answer.
    gone = one(Shown(1.0, "", loading=True), Shown(1.0, "", deleted=True))
    assert classify(gone, 0.0, needs_footer=True).status == FAILED


def test_a_clicked_message_counts_only_what_changed_after_the_click() -> None:
    view = one(Shown(1.0, "old" + FOOTER), Shown(5.0, "new …"), Shown(6.0, "new text" + FOOTER))
    outcome = classify(view, 4.0, needs_footer=True)
    assert outcome.first_text_s == 1.0 and outcome.final_s == 2.0


def test_two_final_answers_to_one_request_are_a_duplicate() -> None:
    view = View(True, ((Shown(1.0, "a" + FOOTER),), (Shown(2.0, "a" + FOOTER),)))
    assert classify(view, 0.0, needs_footer=True).duplicates == 1


def test_an_acknowledged_tag_missing_from_the_database_is_lost() -> None:
    kept = Write("turn", (1,), "sk00001x", 1.0, acked=True)
    lost = Write("story", (2,), "sk00002x", 2.0, acked=True)
    never_acked = Write("rule", (3,), "sk00003x", 3.0, acked=False)
    stored = Stored(tags={"turn": {"sk00001x"}, "story": set(), "rule": set()})
    assert lost_writes([kept, lost, never_acked], stored) == [lost]


def test_a_setting_holds_its_last_acknowledged_value_or_a_later_one() -> None:
    key = (7, "temperature")
    first = Write("setting", key, 0.3, 1.0, acked=True)
    second = Write("setting", key, 0.4, 2.0, acked=True)
    later = Write("setting", key, 0.5, 3.0, acked=False)  # may have landed without the member seeing it
    for value, lost in (("0.4", False), ("0.5", False), ("0.3", True)):
        found = lost_writes([first, second, later], Stored(settings={key: value}))
        assert bool(found) is lost, value
    assert lost_writes([first], Stored()) == [first]  # the row is gone altogether


def test_growth_compares_the_end_with_the_start_after_warm_up() -> None:
    samples = [Sample(t, 100.0 if t < 10 else 200.0 + t, 40) for t in range(0, 100, 5)]
    figures = growth(samples, warm_up_s=10)
    assert figures["rss_start_mb"] is not None and figures["rss_end_mb"] is not None
    assert figures["rss_start_mb"] < figures["rss_end_mb"]
    assert figures["rss_growth"] is not None and 0.2 < figures["rss_growth"] < 0.5
    assert figures["fd_growth"] == 0
    assert growth(samples[:3], warm_up_s=10)["rss_growth"] is None  # too few to tell


def test_latency_is_split_before_during_and_after_each_fault() -> None:
    fault = Fault("db", 100.0, 110.0)
    timed = [(95.0, 1.0, 2.0), (105.0, 5.0, 9.0), (112.0, 1.5, 3.0), (300.0, 1.0, 1.0)]
    phases = by_phase(timed, [fault], window=10.0)["db"]
    assert phases["before"]["final"]["p50"] == 2.0
    assert phases["during"]["first"]["p50"] == 5.0
    assert phases["after"]["final"]["n"] == 1


def test_tracebacks_are_found_with_their_log_line() -> None:
    log = "\n".join(
        [
            "2026 INFO transcord ready",
            "2026 ERROR core.replies command generate failed",
            "\x1b[31mTraceback (most recent call last):",
            '  File "x.py", line 1, in f',
            "RuntimeError: boom",
            "",
            "The above exception was the direct cause of the following exception:",
            "",
            "Traceback (most recent call last):",
            '  File "y.py", line 2, in g',
            "ValueError: chained",
            "2026 INFO transcord shutting down",
        ]
    )
    found = tracebacks(log)
    assert len(found) == 1 and "command generate failed" in found[0] and "ValueError: chained" in found[0]
