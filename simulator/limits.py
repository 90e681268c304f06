"""Rate limits: sliding windows per application and API, as Defender counts them.

Each API has its own budget per application (defender-api.md section 10: limits are
"per API" and on "the combination of application+tenant"). The simulator counts with
a sliding log, not fixed windows: the 101st call in any 60-second span is refused,
which is the strictest reading and never lets a burst through at a window edge. A
refused call is not counted, so waiting ``Retry-After`` seconds always frees a slot.

Not thread-safe by itself: the simulator calls it under its state lock.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_WINDOWS",
    "DEVICE_AV_INFO_WINDOWS",
    "RateLimiter",
    "Window",
    "retry_after_seconds",
]

import bisect
import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``calls`` calls in any span of ``seconds``."""

    seconds: float
    calls: int


# 100 calls a minute and 1500 an hour for every API the playbook calls except
# deviceavinfo, which allows 30 and 1000 (defender-api.md sections 1.4, 5 and 10).
DEFAULT_WINDOWS = (Window(60, 100), Window(3600, 1500))
DEVICE_AV_INFO_WINDOWS = (Window(60, 30), Window(3600, 1000))


class RateLimiter:
    """Sliding-log counters, one per (application, API bucket)."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], list[float]] = {}

    def try_acquire(
        self, app_id: str, bucket: str, windows: tuple[Window, ...], now: float
    ) -> float | None:
        """Count one call and return None, or return how long until one would pass.

        A call made at time t occupies a window of length w during [t, t + w).
        """
        calls = self._calls.setdefault((app_id, bucket), [])
        longest = max(window.seconds for window in windows)
        del calls[: bisect.bisect_right(calls, now - longest)]

        wait = 0.0
        for window in windows:
            inside = bisect.bisect_right(calls, now - window.seconds)
            if len(calls) - inside >= window.calls:
                # The oldest call inside the window must leave it before the next
                # can enter; refused calls are never stored, so it is just one.
                oldest = calls[len(calls) - window.calls]
                wait = max(wait, oldest + window.seconds - now)
        if wait > 0:
            return wait

        calls.append(now)
        return None

    def reset(self) -> None:
        self._calls.clear()


def retry_after_seconds(wait: float, time_scale: float) -> int:
    """``Retry-After`` in whole real seconds: rounded up, never below one."""
    return max(1, math.ceil(wait / time_scale))
