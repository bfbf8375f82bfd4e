"""The scheduling policy on its own: ids in, plans out, no model, no tensors, no event loop."""

from __future__ import annotations

import pytest

from model_service.scheduler import Plan, Scheduler


def test_waiting_requests_join_their_models_batch_first_come_first_served_up_to_the_cap() -> None:
    policy = Scheduler(max_batch_size=2)
    for request_id, model in [(1, "a"), (2, "b"), (3, "a"), (4, "a")]:
        policy.add(request_id, model)
    plan = policy.schedule()
    assert plan.joins == {"a": (1, 3), "b": (2,)}
    assert set(plan.steps) == {"a", "b"}
    assert (policy.running, policy.waiting) == (3, 1)  # 4 waits: a's batch is full
    assert policy.rows("a") == (1, 3) and policy.rows("b") == (2,)  # in the order they joined

    # A row leaving makes room: the next turn lets 4 in, and both models step again.
    policy.finish(1, "a")
    plan = policy.schedule()
    assert plan.joins == {"a": (4,)} and set(plan.steps) == {"a", "b"}


def test_a_running_batch_steps_every_turn_without_newcomers() -> None:
    policy = Scheduler(max_batch_size=4)
    policy.add(1, "a")
    policy.schedule()
    assert policy.schedule() == Plan(joins={}, steps=("a",))
    policy.finish(1, "a")
    assert policy.schedule().empty and policy.idle


def test_requests_stopped_while_waiting_are_dropped_unstarted() -> None:
    policy = Scheduler(max_batch_size=1)
    for request_id in (1, 2, 3):
        policy.add(request_id, "a")
    policy.add(9, "a", "fill")
    plan = policy.schedule(stopped=lambda i: i in (2, 9))
    assert plan.joins == {"a": (1,)} and plan.dropped == (2, 9)
    assert plan.fill_start is None and not plan.fill_step
    assert policy.waiting == 1  # 3, behind 1 in a batch of one


def test_fills_of_the_first_waiting_model_go_together_and_others_wait_their_turn() -> None:
    policy = Scheduler(max_batch_size=3)
    for request_id, model in [(1, "bert"), (2, "gpt"), (3, "bert"), (4, "bert"), (5, "bert")]:
        policy.add(request_id, model, "fill")
    plan = policy.schedule()
    assert plan.fill_start == ("bert", (1, 3, 4)) and plan.fill_step
    assert policy.filling == 3 and policy.waiting == 2

    # While a fill batch is in progress, it takes one forward a turn and no other starts.
    plan = policy.schedule()
    assert plan.fill_start is None and plan.fill_step
    policy.fill_done()
    assert policy.schedule().fill_start == ("gpt", (2,))
    policy.fill_done()
    assert policy.schedule().fill_start == ("bert", (5,))


def test_generation_and_fills_share_a_turn() -> None:
    policy = Scheduler(max_batch_size=8)
    policy.add(1, "a")
    policy.add(2, "a", "fill")
    plan = policy.schedule()
    assert plan.joins == {"a": (1,)} and plan.steps == ("a",)
    assert plan.fill_start == ("a", (2,)) and plan.fill_step


def test_a_failed_batch_gives_back_its_rows_and_a_stop_gives_back_everything() -> None:
    policy = Scheduler(max_batch_size=8)
    for request_id in (1, 2):
        policy.add(request_id, "a")
    policy.add(3, "b")
    policy.schedule()
    assert sorted(policy.fail_model("a")) == [1, 2]
    assert policy.schedule().steps == ("b",)
    policy.add(4, "b")
    policy.add(5, "a", "fill")
    assert sorted(policy.drop_all()) == [3, 4, 5]
    assert policy.idle


def test_a_batch_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match="max_batch_size must be at least 1"):
        Scheduler(0)


# -- fair shares ------------------------------------------------------------------------------------


def drain(policy: Scheduler, model: str = "m") -> list[int]:
    """Run the policy to the end, one slot freed per turn: the order requests started in."""
    started: list[int] = []
    while not policy.idle:
        plan = policy.schedule()
        started += plan.joins.get(model, ())
        rows = policy.rows(model)
        if rows:
            policy.finish(rows[0], model)
    return started


def test_a_lone_channel_is_not_kept_behind_a_flood_from_another() -> None:
    policy = Scheduler(max_batch_size=8)
    for i in range(24):  # 24 members of one channel at once
        policy.add(i, "m", group="flood", member=f"member{i}")
    assert policy.schedule().joins == {"m": tuple(range(8))}
    policy.add(100, "m", group="quiet", member="lone")
    assert policy.place(100) == 2  # one of the flood's, then the lone channel's
    order = drain(policy)
    assert order.index(100) <= 1
    assert sorted(order) == sorted([*range(8, 24), 100])  # everyone is served


def test_within_a_channel_members_take_turns_and_each_members_own_keep_their_order() -> None:
    policy = Scheduler(max_batch_size=1)
    for i in range(5):  # one member with a macro
        policy.add(i, "m", group="c", member="macro")
    policy.add(10, "m", group="c", member="alice")
    policy.add(11, "m", group="c", member="bob")
    assert drain(policy) == [0, 10, 11, 1, 2, 3, 4]


def test_a_heavier_channel_takes_more_requests_per_turn() -> None:
    policy = Scheduler(max_batch_size=1)
    for i in range(6):
        policy.add(i, "m", group="stage", member=f"s{i}", weight=2)
        policy.add(100 + i, "m", group="lobby", member=f"l{i}")
    order = drain(policy)
    assert order[:6] == [0, 1, 100, 2, 3, 101]


def test_one_group_of_one_member_is_first_come_first_served_and_places_follow() -> None:
    policy = Scheduler(max_batch_size=1)
    for i in range(4):
        policy.add(i, "m")
    policy.schedule()
    assert [policy.place(i) for i in range(4)] == [None, 1, 2, 3]  # 0 is running
    assert policy.waiting_shares() == {"": 3}
    assert drain(policy) == [1, 2, 3]


def test_a_full_model_does_not_hold_up_another_models_requests() -> None:
    policy = Scheduler(max_batch_size=1)
    policy.add(1, "a", group="x")
    policy.add(2, "a", group="x")
    policy.add(3, "b", group="x")
    assert policy.schedule().joins == {"a": (1,), "b": (3,)}
