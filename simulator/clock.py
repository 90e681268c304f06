"""The simulator's clock: wall time sped up by a factor, or a manual clock for tests.

Every time the simulator reasons about (limit windows, machine-action progress,
timestamps in answers) comes from one ``Clock``: a callable that returns seconds
since the Unix epoch. Tests use ``ManualClock`` so that a minute-long window or a
three-day timeout passes with one ``advance`` call and nothing ever sleeps.
"""

from __future__ import annotations

__all__ = [
    "DEMO_EPOCH",
    "Clock",
    "ManualClock",
    "ScaledClock",
    "format_moment",
    "format_timestamp",
]

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]

# Monday 6 January 2025, 09:00 UTC: a fixed start so that tests and the demo tenant's
# "last seen" dates agree on what "now" is.
DEMO_EPOCH = datetime(2025, 1, 6, 9, 0, tzinfo=UTC).timestamp()


class ManualClock:
    """A clock that moves only when told to; safe to read from many threads."""

    def __init__(self, start: float = DEMO_EPOCH) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} seconds)")

        with self._lock:
            self._now += seconds
            return self._now


class ScaledClock:
    """Wall time that runs ``scale`` times faster from the moment it is made."""

    def __init__(
        self,
        scale: float = 1.0,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if scale <= 0:
            raise ValueError(f"time scale must be positive, not {scale}")

        self.scale = scale
        self._monotonic = monotonic
        self._wall_start = wall()
        self._monotonic_start = monotonic()

    def __call__(self) -> float:
        # Monotonic, so that a wall-clock step (NTP) never moves the simulator back.
        elapsed = self._monotonic() - self._monotonic_start
        return self._wall_start + elapsed * self.scale


def format_timestamp(seconds: float) -> str:
    """An ISO 8601 UTC time with seven fractional digits, as Defender writes them."""
    return format_moment(datetime.fromtimestamp(seconds, tz=UTC))


def format_moment(moment: datetime) -> str:
    """``format_timestamp`` for a datetime (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
