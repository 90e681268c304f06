"""The API budget in one process: windows, share, holds, and the pure decision."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from shared.budget import (
    DEVICE_AV_INFO_WINDOWS,
    DOCUMENTED_WINDOWS,
    WINDOW_MARGIN_SECONDS,
    BucketState,
    MemoryBudget,
    Window,
    budget_row_key,
    decide_spend,
    shared_windows,
    windows_for,
)
from shared.errors import ApiBudgetExhausted, ApiError

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MARGIN = timedelta(seconds=WINDOW_MARGIN_SECONDS)
MACHINE = "machines/{id}"
SUBMIT = "machines/{id}/StopAndQuarantineFile"
AV_INFO = "deviceavinfo"


class ManualClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(name="budget")
def _budget(clock: ManualClock) -> MemoryBudget:
    return MemoryBudget(clock=clock)


def spend_until_refused(budget: MemoryBudget, route: str) -> ApiBudgetExhausted:
    """Spend on ``route`` until refused; return the refusal."""
    for _ in range(10_000):
        try:
            budget.spend(route)
        except ApiBudgetExhausted as refusal:
            return refusal
    raise AssertionError(f"{route} was never refused")


def granted_before_refusal(budget: MemoryBudget, route: str) -> int:
    """Spend on ``route`` until refused; return how many calls were granted."""
    for granted in range(10_000):
        try:
            budget.spend(route)
        except ApiBudgetExhausted:
            return granted
    raise AssertionError(f"{route} was never refused")


class TestWindows:
    def test_deviceavinfo_has_its_own_lower_limits(self) -> None:
        assert windows_for("deviceavinfo") == (Window(60, 30), Window(3600, 1000))
        assert windows_for("/DeviceAvInfo") == DEVICE_AV_INFO_WINDOWS

    @pytest.mark.parametrize(
        "route",
        [MACHINE, SUBMIT, "files/{id}", "machineactions", "machineactions/{id}"],
    )
    def test_every_other_api_has_the_documented_limits(self, route: str) -> None:
        assert windows_for(route) == (Window(60, 100), Window(3600, 1500))

    def test_share_floors_each_limit_and_keeps_at_least_one(self) -> None:
        assert shared_windows(DOCUMENTED_WINDOWS, 0.5) == (
            Window(60, 50),
            Window(3600, 750),
        )
        assert shared_windows(DEVICE_AV_INFO_WINDOWS, 0.33) == (
            Window(60, 9),
            Window(3600, 330),
        )
        assert shared_windows(DOCUMENTED_WINDOWS, 0.001) == (
            Window(60, 1),
            Window(3600, 1),
        )


class TestMinuteWindow:
    def test_exactly_one_hundred_calls_pass_in_a_minute(
        self, budget: MemoryBudget, clock: ManualClock
    ) -> None:
        for _ in range(100):
            budget.spend(MACHINE)
            clock.advance(0.5)

        with pytest.raises(ApiBudgetExhausted) as refused:
            budget.spend(MACHINE)

        assert refused.value.route == MACHINE
        assert refused.value.retry_at == START + timedelta(seconds=60) + MARGIN
        assert isinstance(refused.value, ApiError)

    def test_refusal_names_the_api_and_the_time(self, budget: MemoryBudget) -> None:
        refusal = spend_until_refused(budget, SUBMIT)

        assert SUBMIT in str(refusal)
        assert refusal.retry_at.isoformat() in str(refusal)
        assert "not sent" in str(refusal)
        assert refusal.retry_at.tzinfo is not None

    def test_a_slot_frees_when_the_first_call_leaves_the_window(
        self, budget: MemoryBudget, clock: ManualClock
    ) -> None:
        for _ in range(100):
            budget.spend(MACHINE)
            clock.advance(0.5)
        retry_at = spend_until_refused(budget, MACHINE).retry_at

        clock.now = retry_at - timedelta(milliseconds=1)
        with pytest.raises(ApiBudgetExhausted):
            budget.spend(MACHINE)

        clock.now = retry_at
        budget.spend(MACHINE)
        refusal = spend_until_refused(budget, MACHINE)
        assert refusal.retry_at == retry_at + timedelta(seconds=0.5)

    def test_refused_calls_are_not_counted(
        self, budget: MemoryBudget, clock: ManualClock
    ) -> None:
        for _ in range(100):
            budget.spend(MACHINE)
        for _ in range(50):
            with pytest.raises(ApiBudgetExhausted):
                budget.spend(MACHINE)

        clock.advance(60 + WINDOW_MARGIN_SECONDS)

        assert granted_before_refusal(budget, MACHINE) == 100

    def test_each_api_has_its_own_count(self, budget: MemoryBudget) -> None:
        spend_until_refused(budget, MACHINE)

        budget.spend(SUBMIT)
        budget.spend("machineactions/{id}")


class TestHourWindow:
    def test_fifteen_hundred_calls_an_hour_at_most(
        self, budget: MemoryBudget, clock: ManualClock
    ) -> None:
        granted = 0
        for _ in range(15):
            granted += granted_before_refusal(budget, MACHINE)
            clock.advance(60 + WINDOW_MARGIN_SECONDS)

        refusal = spend_until_refused(budget, MACHINE)

        assert granted == 1500
        assert refusal.retry_at == START + timedelta(seconds=3600) + MARGIN

    def test_deviceavinfo_allows_thirty_a_minute_and_a_thousand_an_hour(
        self, budget: MemoryBudget, clock: ManualClock
    ) -> None:
        per_minute = granted_before_refusal(budget, AV_INFO)
        total = per_minute
        for _ in range(40):
            clock.advance(60 + WINDOW_MARGIN_SECONDS)
            total += granted_before_refusal(budget, AV_INFO)

        assert per_minute == 30
        assert total == 1000


class TestShare:
    def test_half_share_allows_fifty_a_minute(self, clock: ManualClock) -> None:
        budget = MemoryBudget(clock=clock, share=0.5)

        assert granted_before_refusal(budget, MACHINE) == 50

    def test_half_share_allows_seven_hundred_fifty_an_hour(
        self, clock: ManualClock
    ) -> None:
        budget = MemoryBudget(clock=clock, share=0.5)
        total = 0
        for _ in range(20):
            total += granted_before_refusal(budget, MACHINE)
            clock.advance(60 + WINDOW_MARGIN_SECONDS)

        assert total == 750

    @pytest.mark.parametrize("share", [0.0, -0.5, 1.01])
    def test_share_outside_zero_to_one_is_refused(self, share: float) -> None:
        with pytest.raises(ValueError, match="share"):
            MemoryBudget(share=share)

    def test_windows_can_be_given(self, clock: ManualClock) -> None:
        budget = MemoryBudget(clock=clock, windows=lambda route: (Window(10, 2),))

        budget.spend(MACHINE)
        budget.spend(MACHINE)
        refusal = spend_until_refused(budget, MACHINE)

        assert refusal.retry_at == START + timedelta(seconds=10) + MARGIN


class TestHold:
    def test_hold_refuses_every_call_until_it_passes(
        self, budget: MemoryBudget, clock: ManualClock
    ) -> None:
        until = START + timedelta(seconds=30)
        budget.hold(SUBMIT, until)

        with pytest.raises(ApiBudgetExhausted) as refused:
            budget.spend(SUBMIT)
        assert refused.value.retry_at == until

        clock.now = until
        budget.spend(SUBMIT)

    def test_hold_concerns_its_api_only(self, budget: MemoryBudget) -> None:
        budget.hold(SUBMIT, START + timedelta(seconds=30))

        budget.spend(MACHINE)

    def test_hold_keeps_the_later_time(
        self, budget: MemoryBudget, clock: ManualClock
    ) -> None:
        budget.hold(SUBMIT, START + timedelta(seconds=30))
        budget.hold(SUBMIT, START + timedelta(seconds=10))
        clock.advance(20)

        with pytest.raises(ApiBudgetExhausted) as refused:
            budget.spend(SUBMIT)

        assert refused.value.retry_at == START + timedelta(seconds=30)

    def test_hold_and_full_window_give_the_later_time(
        self, budget: MemoryBudget
    ) -> None:
        for _ in range(100):
            budget.spend(MACHINE)
        budget.hold(MACHINE, START + timedelta(seconds=5))

        refusal = spend_until_refused(budget, MACHINE)

        assert refusal.retry_at == START + timedelta(seconds=60) + MARGIN

    def test_naive_hold_time_is_read_as_utc(
        self, budget: MemoryBudget, clock: ManualClock
    ) -> None:
        budget.hold(SUBMIT, (START + timedelta(seconds=30)).replace(tzinfo=None))

        refusal = spend_until_refused(budget, SUBMIT)

        assert refusal.retry_at == START + timedelta(seconds=30)


class TestSnapshot:
    def test_snapshot_lists_counts_limits_and_holds_by_route(
        self, clock: ManualClock
    ) -> None:
        budget = MemoryBudget(clock=clock, share=0.5)
        for _ in range(3):
            budget.spend(SUBMIT)
        clock.advance(120)
        budget.spend(SUBMIT)
        budget.spend(AV_INFO)
        budget.hold(MACHINE, clock.now + timedelta(seconds=30))

        snapshot = budget.snapshot()

        assert snapshot == [
            BucketState(
                route=AV_INFO,
                calls_last_minute=1,
                calls_last_hour=1,
                limits=(Window(60, 15), Window(3600, 500)),
                not_before=None,
            ),
            BucketState(
                route=MACHINE,
                calls_last_minute=0,
                calls_last_hour=0,
                limits=(Window(60, 50), Window(3600, 750)),
                not_before=clock.now + timedelta(seconds=30),
            ),
            BucketState(
                route=SUBMIT,
                calls_last_minute=1,
                calls_last_hour=4,
                limits=(Window(60, 50), Window(3600, 750)),
                not_before=None,
            ),
        ]

    def test_snapshot_drops_a_hold_that_has_passed(
        self, budget: MemoryBudget, clock: ManualClock
    ) -> None:
        budget.hold(MACHINE, START + timedelta(seconds=30))
        clock.advance(30)

        (state,) = budget.snapshot()

        assert state.not_before is None

    def test_empty_budget_has_an_empty_snapshot(self, budget: MemoryBudget) -> None:
        assert budget.snapshot() == []


class TestRoutes:
    @pytest.mark.parametrize(
        "route",
        [
            "machines/1e5bc9d7e413ddd7902c2932e418702b84d0cc07",
            "machineactions/141408d1-384c-4c19-8b57-ba39e378011a",
            "",
            "machines/{id}\n",
            "x" * 201,
        ],
    )
    def test_a_route_that_is_not_a_template_is_refused(
        self, budget: MemoryBudget, route: str
    ) -> None:
        with pytest.raises(ValueError, match="route"):
            budget.spend(route)

    @pytest.mark.parametrize(
        "route", [SUBMIT, MACHINE, "machineactions/{id}/cancel", "a\\b#c?d~e", "é"]
    )
    def test_row_key_holds_no_character_tables_refuse(self, route: str) -> None:
        key = budget_row_key(route)

        assert not set(key) & set("/\\#?{}")
        assert key.isascii()
        assert key.isprintable()

    def test_row_keys_of_different_routes_differ(self) -> None:
        routes = ["a/b", "a~2Fb", "a_b", "a.b", "machines/{id}", "machines/{id}/"]

        assert len({budget_row_key(route) for route in routes}) == len(routes)


class TestDecideSpend:
    def test_granted_call_is_added_in_order_and_old_calls_are_pruned(self) -> None:
        calls = (0.0, 100.0, 4000.0, 4005.0)

        decision = decide_spend(
            calls, now=4002.0, not_before=None, windows=DOCUMENTED_WINDOWS
        )

        assert decision.granted
        assert decision.retry_at is None
        assert decision.calls == (4000.0, 4002.0, 4005.0)

    def test_refusal_keeps_the_log_without_the_call(self) -> None:
        calls = tuple(float(t) for t in range(10))

        decision = decide_spend(
            calls, now=10.0, not_before=None, windows=(Window(60, 10),)
        )

        assert not decision.granted
        assert decision.calls == calls
        assert decision.retry_at == 0.0 + 60 + WINDOW_MARGIN_SECONDS

    def test_an_overfull_window_waits_for_enough_calls_to_leave(self) -> None:
        # Another instance's clock may have let more in than this share allows.
        calls = tuple(float(t) for t in range(5))

        decision = decide_spend(
            calls, now=10.0, not_before=None, windows=(Window(60, 2),)
        )

        assert decision.retry_at == 3.0 + 60 + WINDOW_MARGIN_SECONDS

    def test_a_call_leaves_its_window_at_its_time_plus_span(self) -> None:
        span = 60 + WINDOW_MARGIN_SECONDS

        inside = decide_spend(
            (0.0,), now=span - 0.001, not_before=None, windows=(Window(60, 1),)
        )
        left = decide_spend((0.0,), now=span, not_before=None, windows=(Window(60, 1),))

        assert not inside.granted
        assert left.granted
        assert left.calls == (span,)

    def test_a_hold_in_the_past_is_ignored(self) -> None:
        decision = decide_spend(
            (), now=10.0, not_before=9.0, windows=DOCUMENTED_WINDOWS
        )

        assert decision.granted

    def test_input_log_is_not_changed(self) -> None:
        calls = [1.0, 2.0]

        decide_spend(calls, now=3.0, not_before=None, windows=DOCUMENTED_WINDOWS)

        assert calls == [1.0, 2.0]


def test_many_threads_at_once_never_pass_the_limit(clock: ManualClock) -> None:
    budget = MemoryBudget(clock=clock)
    granted: list[int] = []
    lock = threading.Lock()

    def spend_many() -> None:
        count = 0
        for _ in range(40):
            try:
                budget.spend(MACHINE)
            except ApiBudgetExhausted:
                continue
            count += 1
        with lock:
            granted.append(count)

    threads = [threading.Thread(target=spend_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(granted) == 100
