"""Clocks and the fault injector, without HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import DropMode, FaultKind, Faults, ManualClock
from simulator.clock import DEMO_EPOCH, ScaledClock, format_timestamp
from simulator.faults import FaultInjector, FaultsError


def test_manual_clock_starts_at_the_demo_epoch_and_moves_only_when_told() -> None:
    clock = ManualClock()

    before = clock()
    after = clock.advance(2.5)

    assert before == DEMO_EPOCH
    assert after == clock() == DEMO_EPOCH + 2.5


def test_manual_clock_refuses_to_go_back() -> None:
    with pytest.raises(ValueError, match="cannot go back"):
        ManualClock().advance(-1)


def test_scaled_clock_runs_faster_than_the_wall() -> None:
    ticks = iter([100.0, 101.0, 102.5])
    clock = ScaledClock(60, wall=lambda: 1000.0, monotonic=lambda: next(ticks))

    assert clock() == 1060.0
    assert clock() == 1150.0


def test_scaled_clock_refuses_a_scale_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(0)


def test_timestamps_have_seven_fractional_digits_and_z() -> None:
    assert format_timestamp(DEMO_EPOCH + 0.25) == "2025-01-06T09:00:00.2500000Z"


def test_counted_faults_come_first_drop_then_error_then_throttle() -> None:
    injector = FaultInjector(Faults(drop_next=1, error_next=2, throttle_next=1))

    kinds = [injector.draw() for _ in range(5)]

    assert kinds == [
        FaultKind.DROP_BEFORE,
        FaultKind.ERROR,
        FaultKind.ERROR,
        FaultKind.THROTTLE,
        FaultKind.NONE,
    ]


def test_drop_mode_after_drops_after_the_call() -> None:
    injector = FaultInjector(Faults(drop_rate=1.0, drop_mode=DropMode.AFTER))

    assert injector.draw() is FaultKind.DROP_AFTER


def test_random_faults_follow_the_seed() -> None:
    faults = Faults(error_rate=0.3, drop_rate=0.2, seed=42)

    injector, again = FaultInjector(faults), FaultInjector(faults)
    run = [injector.draw() for _ in range(200)]
    rerun = [again.draw() for _ in range(200)]

    assert run == rerun
    assert set(run) == {FaultKind.NONE, FaultKind.ERROR, FaultKind.DROP_BEFORE}


def test_faults_round_trip_through_json() -> None:
    faults = Faults(latency_ms=5, drop_mode=DropMode.AFTER, throttle_next=2, seed=9)

    assert Faults.from_json(faults.to_json()) == faults


@pytest.mark.parametrize(
    "data",
    [
        {"latency_ms": 1.5},
        {"error_next": True},
        {"error_rate": "0.5"},
        {"drop_mode": "never"},
        {"burst": 1},
        [],
    ],
)
def test_bad_fault_settings_are_refused(data: Any) -> None:
    with pytest.raises(FaultsError):
        Faults.from_json(data)
