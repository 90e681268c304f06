"""Faults on demand: latency, server errors, dropped connections and 429 storms.

Faults hit ``/api`` calls only, before the API sees them, except a drop "after",
which lets the call take effect and then loses the answer: the client cannot tell
whether its machine action exists. ``*_next`` counts make a test exact; the
``*_rate`` shares are drawn from a generator seeded by ``seed``, so a run repeats.

An injected fault is not counted against the rate limits (the call never reached
the API), except a drop "after", which did.
"""

from __future__ import annotations

__all__ = ["DropMode", "FaultInjector", "FaultKind", "Faults", "FaultsError"]

import dataclasses
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FaultsError(ValueError):
    """A fault setting out of range or of the wrong type."""


class DropMode(StrEnum):
    """When a dropped call loses its connection."""

    BEFORE = "before"  # before the body is read: nothing happened
    AFTER = "after"  # after the call took effect: the outcome is unknown


class FaultKind(StrEnum):
    """What happens to one call."""

    NONE = "none"
    ERROR = "error"
    THROTTLE = "throttle"
    DROP_BEFORE = "drop_before"
    DROP_AFTER = "drop_after"


@dataclass(frozen=True, slots=True)
class Faults:
    """The fault settings; the defaults inject nothing.

    ``throttle_retry_after`` is the ``Retry-After`` of an injected 429, in seconds;
    0 sends the 429 without the header, which the documentation does not promise
    (defender-api.md section 10), so a client's fallback can be tested.
    """

    latency_ms: int = 0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    drop_mode: DropMode = DropMode.BEFORE
    throttle_next: int = 0
    error_next: int = 0
    drop_next: int = 0
    throttle_retry_after: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        whole = ("latency_ms", "throttle_next", "error_next", "drop_next", "seed")
        for name in (*whole, "throttle_retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FaultsError(f"{name} must be a whole number >= 0, not {value!r}")
        for name in ("error_rate", "drop_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FaultsError(f"{name} must be a number, not {value!r}")
            if not 0.0 <= value <= 1.0:
                raise FaultsError(f"{name} must be between 0 and 1, not {value!r}")
        if self.error_rate + self.drop_rate > 1.0:
            raise FaultsError("error_rate and drop_rate together cannot exceed 1")
        if not isinstance(self.drop_mode, DropMode):
            raise FaultsError(f"drop_mode must be a DropMode, not {self.drop_mode!r}")

    @classmethod
    def from_json(cls, data: object) -> Faults:
        """Read the control endpoint's body; absent keys take their defaults."""
        if not isinstance(data, dict):
            raise FaultsError("faults must be a JSON object")

        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FaultsError(f"unknown fault settings: {', '.join(unknown)}")

        values = dict(data)
        if "drop_mode" in values:
            try:
                values["drop_mode"] = DropMode(values["drop_mode"])
            except ValueError as exc:
                modes = ", ".join(mode.value for mode in DropMode)
                raise FaultsError(f"drop_mode must be one of: {modes}") from exc
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {
            item.name: getattr(self, item.name) for item in dataclasses.fields(self)
        }


class FaultInjector:
    """Decides the fault of each call in turn; used under the state lock."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.configure(faults or Faults())

    def configure(self, faults: Faults) -> None:
        """Replace every setting; the counts and the random sequence restart."""
        self.faults = faults
        self._throttle_next = faults.throttle_next
        self._error_next = faults.error_next
        self._drop_next = faults.drop_next
        # Not for security: a seeded sequence so that a faulty run can be repeated.
        self._random = random.Random(faults.seed)  # noqa: S311

    def draw(self) -> FaultKind:
        """The fault for the next call: counted faults first, then random shares."""
        counted = self._draw_counted()
        if counted is not FaultKind.NONE:
            return counted

        if not (self.faults.drop_rate or self.faults.error_rate):
            return FaultKind.NONE
        roll = self._random.random()
        if roll < self.faults.drop_rate:
            return self._dropped()
        if roll < self.faults.drop_rate + self.faults.error_rate:
            return FaultKind.ERROR
        return FaultKind.NONE

    def _draw_counted(self) -> FaultKind:
        if self._drop_next:
            self._drop_next -= 1
            return self._dropped()
        if self._error_next:
            self._error_next -= 1
            return FaultKind.ERROR
        if self._throttle_next:
            self._throttle_next -= 1
            return FaultKind.THROTTLE
        return FaultKind.NONE

    def _dropped(self) -> FaultKind:
        if self.faults.drop_mode is DropMode.AFTER:
            return FaultKind.DROP_AFTER
        return FaultKind.DROP_BEFORE
