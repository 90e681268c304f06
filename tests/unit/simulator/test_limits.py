"""The sliding-window rate limiter, without HTTP."""

from __future__ import annotations

import pytest

from simulator.limits import (
    DEFAULT_WINDOWS,
    DEVICE_AV_INFO_WINDOWS,
    RateLimiter,
    Window,
    retry_after_seconds,
)


def test_documented_limits_are_100_a_minute_1500_an_hour_and_30_1000_for_av_info() -> (
    None
):
    assert (Window(60, 100), Window(3600, 1500)) == DEFAULT_WINDOWS
    assert (Window(60, 30), Window(3600, 1000)) == DEVICE_AV_INFO_WINDOWS


def test_call_at_the_limit_passes_and_the_next_waits_for_the_oldest() -> None:
    limiter = RateLimiter()
    windows = (Window(60, 3),)

    granted = [limiter.try_acquire("app", "api", windows, now) for now in (0, 10, 20)]
    wait = limiter.try_acquire("app", "api", windows, 30)

    assert granted == [None, None, None]
    assert wait == 30  # the call at 0 leaves the window at 60


def test_window_is_sliding_so_no_burst_passes_at_a_minute_boundary() -> None:
    limiter = RateLimiter()
    windows = (Window(60, 2),)
    limiter.try_acquire("app", "api", windows, 59)
    limiter.try_acquire("app", "api", windows, 59.5)

    # A fixed window would have reset at 60; a sliding one has not.
    assert limiter.try_acquire("app", "api", windows, 61) == pytest.approx(58)


def test_call_leaves_the_window_exactly_its_length_later() -> None:
    limiter = RateLimiter()
    windows = (Window(60, 1),)
    limiter.try_acquire("app", "api", windows, 0)

    assert limiter.try_acquire("app", "api", windows, 59.999) is not None
    assert limiter.try_acquire("app", "api", windows, 60) is None


def test_refused_calls_are_not_counted() -> None:
    limiter = RateLimiter()
    windows = (Window(60, 1),)
    limiter.try_acquire("app", "api", windows, 0)
    for now in range(1, 60):
        limiter.try_acquire("app", "api", windows, now)

    assert limiter.try_acquire("app", "api", windows, 60) is None


def test_longest_wait_of_all_windows_wins() -> None:
    limiter = RateLimiter()
    windows = (Window(60, 10), Window(3600, 10))
    for now in range(10):
        limiter.try_acquire("app", "api", windows, now)

    assert limiter.try_acquire("app", "api", windows, 100) == 3500


def test_each_application_and_api_counts_apart() -> None:
    limiter = RateLimiter()
    windows = (Window(60, 1),)
    limiter.try_acquire("app", "api", windows, 0)

    assert limiter.try_acquire("other-app", "api", windows, 0) is None
    assert limiter.try_acquire("app", "other-api", windows, 0) is None
    assert limiter.try_acquire("app", "api", windows, 0) == 60


def test_reset_forgets_every_count() -> None:
    limiter = RateLimiter()
    windows = (Window(60, 1),)
    limiter.try_acquire("app", "api", windows, 0)

    limiter.reset()

    assert limiter.try_acquire("app", "api", windows, 0) is None


@pytest.mark.parametrize(
    ("wait", "scale", "seconds"),
    [(10, 1, 10), (9.2, 1, 10), (0.01, 1, 1), (60, 60, 1), (3000, 60, 50), (61, 60, 2)],
)
def test_retry_after_is_whole_real_seconds_rounded_up_and_at_least_one(
    wait: float, scale: float, seconds: int
) -> None:
    assert retry_after_seconds(wait, scale) == seconds
