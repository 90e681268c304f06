"""The budget: how many Defender API calls this app may still make, per API.

Defender limits calls per tenant and application, and per API: 100 calls a minute
and 1500 an hour for each API the playbook calls, 30 and 1000 for ``deviceavinfo``
(shared/defender-api.md sections 1.4, 5 and 10). Azure Functions runs many
instances of this app at once, and every one of them spends the same limits, so
the count is kept where all of them see it.

Every request to Defender first **spends** one call on its API (named by its route
template, such as ``machines/{id}/StopAndQuarantineFile``, never by a URL with ids
in it). A spend either counts the call or raises ``ApiBudgetExhausted`` with the
time a call may next be made, counting nothing; it never waits, so an Event Hub
handler is never held up by the budget and defers the target to the backlog
instead. A 429 from Defender **holds** the API: no instance calls it again before
the time Defender gave, whatever the local count says.

Counting is a sliding log, the strictest reading of "N calls per minute" and the
one the project's simulator uses: a call made at ``t`` occupies a window from
``t`` for the window's length, and a call is refused while any window already
holds its limit. Each window is counted ``WINDOW_MARGIN_SECONDS`` longer than
documented (see there why).

``MemoryBudget`` keeps the count in this process (the command line, tests).
``TableBudget`` keeps it in Azure Table storage, one entity per API, written with
optimistic concurrency so that no window is exceeded whatever the number of
instances. Both decide with ``decide_spend``, so they agree; they live in one
module with it, which is why it is longer than most.

Limitations:

- A call that is counted and then fails before it is sent (no token, connection
  refused) stays counted until it leaves its window. The budget errs on the safe
  side: it may refuse a call Defender would have accepted, never the reverse.
- The count relies on the instances' clocks agreeing to within the margin; a call
  logged by an instance whose clock runs ahead stays counted longer, again on the
  safe side.
- ``TableBudget`` writes one entity per spend: every API's calls pass through one
  row, whose throughput bounds the whole app's call rate on that API (far above
  100 a minute). Under heavy contention a spend may give up after a few tries and
  defer its call although budget was left.
"""

from __future__ import annotations

__all__ = [
    "DEVICE_AV_INFO_ROUTE",
    "DEVICE_AV_INFO_WINDOWS",
    "DOCUMENTED_WINDOWS",
    "WINDOW_MARGIN_SECONDS",
    "BucketState",
    "Budget",
    "MemoryBudget",
    "SpendDecision",
    "TableBudget",
    "Window",
    "budget_row_key",
    "decide_spend",
    "shared_windows",
    "windows_for",
]

import bisect
import itertools
import json
import logging
import math
import random
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableEntity, UpdateMode

from shared.errors import ApiBudgetExhausted

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``calls`` calls in any span of ``seconds``."""

    seconds: float
    calls: int


# 100 calls a minute and 1500 an hour for every API the playbook calls, except
# deviceavinfo: 30 and 1000 (shared/defender-api.md sections 1.4, 5 and 10).
DOCUMENTED_WINDOWS = (Window(60, 100), Window(3600, 1500))
DEVICE_AV_INFO_WINDOWS = (Window(60, 30), Window(3600, 1000))
DEVICE_AV_INFO_ROUTE = "deviceavinfo"

# Our clock and Defender's can differ a little, and a request reaches Defender a
# moment after we count it, so Defender's window for a call ends a little after
# ours would. Counting every window this much longer frees a slot no earlier than
# Defender does.
WINDOW_MARGIN_SECONDS = 1.0

_MINUTE = 60.0
_HOUR = 3600.0

# A route template is short; a run of 32 hex digits is a device id, SHA-1 or
# action id, which would give every device its own count and defeat the limit.
_MAX_ROUTE_LENGTH = 200
_IDENTIFIER_LIKE = re.compile(r"[0-9a-fA-F-]{32,}")


def windows_for(route: str) -> tuple[Window, ...]:
    """The documented limits of the API ``route``."""
    if route.strip("/").lower() == DEVICE_AV_INFO_ROUTE:
        return DEVICE_AV_INFO_WINDOWS
    return DOCUMENTED_WINDOWS


def shared_windows(windows: Iterable[Window], share: float) -> tuple[Window, ...]:
    """The windows with this app's ``share`` of each limit: floor, at least one."""
    return tuple(
        Window(window.seconds, max(1, math.floor(window.calls * share)))
        for window in windows
    )


@dataclass(frozen=True, slots=True)
class SpendDecision:
    """What ``decide_spend`` concluded, in seconds since the epoch.

    ``calls`` is the log to keep: pruned to the longest window, and holding the new
    call when it was granted. ``retry_at`` is set only when the call was refused.
    """

    granted: bool
    calls: tuple[float, ...]
    retry_at: float | None


def decide_spend(
    calls: Sequence[float],
    *,
    now: float,
    not_before: float | None,
    windows: Sequence[Window],
) -> SpendDecision:
    """Whether one more call may be made ``now``, and the log that results.

    ``calls`` are the times of earlier calls, oldest first. A refused call is not
    added, so the oldest call inside a full window is the one whose departure
    frees a slot: ``retry_at`` is the latest such departure, or the hold if later.
    """
    spans = [
        (window.seconds + WINDOW_MARGIN_SECONDS, window.calls) for window in windows
    ]
    longest = max((span for span, _ in spans), default=0.0)
    kept = list(calls[bisect.bisect_right(calls, now - longest) :])

    retry_at = not_before if not_before is not None and not_before > now else None
    for span, limit in spans:
        inside = len(kept) - bisect.bisect_right(kept, now - span)
        if inside >= limit:
            leaves = kept[len(kept) - limit] + span
            retry_at = leaves if retry_at is None else max(retry_at, leaves)
    if retry_at is not None:
        return SpendDecision(granted=False, calls=tuple(kept), retry_at=retry_at)

    bisect.insort(kept, now)
    return SpendDecision(granted=True, calls=tuple(kept), retry_at=None)


@dataclass(frozen=True, slots=True)
class BucketState:
    """One API's budget as the command line shows it.

    ``limits`` are this app's share of the documented windows. ``not_before`` is
    the hold after a 429, while it is in force.
    """

    route: str
    calls_last_minute: int
    calls_last_hour: int
    limits: tuple[Window, ...]
    not_before: datetime | None


class Budget(Protocol):
    """The Defender API budget, per API, as the client spends it."""

    def spend(self, route: str) -> None:
        """Count one call on ``route`` now.

        Raises:
            ApiBudgetExhausted: a window is full or a hold is in force; nothing
                was counted.
        """

    def hold(self, route: str, until: datetime) -> None:
        """Let no call on ``route`` be made before ``until`` (Defender said 429).

        An existing later hold stays.
        """

    def snapshot(self) -> list[BucketState]:
        """Every API's recent calls, limits and hold, sorted by route."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _seconds(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _check_route(route: str) -> None:
    if not route or len(route) > _MAX_ROUTE_LENGTH or not route.isprintable():
        raise ValueError(f"a budget route must be a short route template: {route!r}")
    if _IDENTIFIER_LIKE.search(route):
        raise ValueError(
            "a budget route must be a route template such as machines/{id}, "
            "not a path with an identifier in it"
        )


class _Rules:
    """The clock, the limits and the share, as both budgets apply them."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        windows: Callable[[str], tuple[Window, ...]],
        share: float,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be above 0 and at most 1, not {share}")
        self._clock = clock
        self._windows = windows
        self._share = share

    def now(self) -> float:
        return _seconds(self._clock())

    def limits(self, route: str) -> tuple[Window, ...]:
        return shared_windows(self._windows(route), self._share)

    def bucket_state(
        self, route: str, calls: Sequence[float], not_before: float | None, now: float
    ) -> BucketState:
        return BucketState(
            route=route,
            calls_last_minute=_count_since(calls, now - _MINUTE),
            calls_last_hour=_count_since(calls, now - _HOUR),
            limits=self.limits(route),
            not_before=_moment(not_before)
            if not_before is not None and not_before > now
            else None,
        )


def _count_since(calls: Sequence[float], since: float) -> int:
    return len(calls) - bisect.bisect_right(calls, since)


def _later(held: float | None, until: float) -> float:
    return until if held is None else max(held, until)


class MemoryBudget:
    """The budget of one process; safe to use from many threads."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = _utc_now,
        windows: Callable[[str], tuple[Window, ...]] = windows_for,
        share: float = 1.0,
    ) -> None:
        self._rules = _Rules(clock, windows, share)
        self._calls: dict[str, tuple[float, ...]] = {}
        self._holds: dict[str, float] = {}
        self._lock = threading.Lock()

    def spend(self, route: str) -> None:
        """Count one call on ``route`` now, or raise ``ApiBudgetExhausted``."""
        _check_route(route)
        limits = self._rules.limits(route)

        with self._lock:
            decision = decide_spend(
                self._calls.get(route, ()),
                now=self._rules.now(),
                not_before=self._holds.get(route),
                windows=limits,
            )
            self._calls[route] = decision.calls

        if decision.retry_at is not None:
            raise ApiBudgetExhausted(route, _moment(decision.retry_at))

    def hold(self, route: str, until: datetime) -> None:
        """No call on ``route`` before ``until``; a later hold stays."""
        _check_route(route)
        with self._lock:
            self._holds[route] = _later(self._holds.get(route), _seconds(until))
        logger.info("budget.held", extra={"route": route, "until": until.isoformat()})

    def snapshot(self) -> list[BucketState]:
        """Every API spent or held so far, sorted by route."""
        with self._lock:
            now = self._rules.now()
            routes = sorted(self._calls.keys() | self._holds.keys())
            return [
                self._rules.bucket_state(
                    route, self._calls.get(route, ()), self._holds.get(route), now
                )
                for route in routes
            ]


_PARTITION = "budget"

# Conflicting writers retry at once after a pause of up to a few milliseconds,
# drawn at random so that they do not collide again in step. A spend that still
# loses after this many tries defers its call by about a second.
_ATTEMPTS = 12
_MAX_PAUSE_SECONDS = 0.005
_CONTENTION_RETRY_SECONDS = 1.0

_KEY_SAFE = frozenset(string.ascii_letters + string.digits + "-_.")


def budget_row_key(route: str) -> str:
    """The RowKey of ``route``'s entity: every character outside letters, digits,
    ``-``, ``_`` and ``.`` becomes ``~`` and its UTF-8 bytes in hex.

    Table keys refuse ``/``, ``\\``, ``#``, ``?`` and control characters, and
    braces are best kept out of the URLs that address an entity.
    """
    return "".join(
        char if char in _KEY_SAFE else "".join(f"~{b:02X}" for b in char.encode())
        for char in route
    )


@dataclass(frozen=True, slots=True)
class _Stored:
    calls: tuple[float, ...]
    not_before: float | None
    etag: str | None  # None: there is no entity yet


class TableBudget:
    """The budget shared by every instance through one Azure table.

    One entity per API: PartitionKey ``budget``, RowKey ``budget_row_key(route)``,
    with ``Route``, ``Calls`` (the sliding log, see ``_encode_calls``) and
    ``NotBefore`` (the hold, absent when there is none). Every change is a read
    followed by a write that succeeds only if nobody wrote in between (the
    entity's ETag); a writer that loses reads again.

    Storage faults other than write conflicts (``AzureError``) reach the caller.
    """

    def __init__(
        self,
        table: TableClient,
        *,
        clock: Callable[[], datetime] = _utc_now,
        windows: Callable[[str], tuple[Window, ...]] = windows_for,
        share: float = 1.0,
        attempts: int = _ATTEMPTS,
        pause: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        self._table = table
        self._rules = _Rules(clock, windows, share)
        self._attempts = attempts
        self._pause = pause
        self._jitter = jitter

    def spend(self, route: str) -> None:
        """Count one call on ``route`` now, or raise ``ApiBudgetExhausted``.

        Raises:
            ApiBudgetExhausted: a window is full, a hold is in force, or other
                instances kept winning the write (retry in about a second).
            AzureError: the table could not be read or written.
        """
        _check_route(route)
        limits = self._rules.limits(route)
        key = budget_row_key(route)

        for _ in range(self._attempts):
            stored = self._read(key)
            now = self._rules.now()
            decision = decide_spend(
                stored.calls, now=now, not_before=stored.not_before, windows=limits
            )
            if decision.retry_at is not None:
                raise ApiBudgetExhausted(route, _moment(decision.retry_at))

            # A granted call means any hold has passed: it is dropped.
            if self._write(key, route, stored, decision.calls, not_before=None):
                return
            self._pause_briefly()

        # Nothing was sent: deferring the call costs a second, whereas waiting here
        # would hold up the caller for as long as the contention lasts.
        retry_at = _moment(self._rules.now() + _CONTENTION_RETRY_SECONDS)
        logger.warning(
            "budget.contention",
            extra={
                "route": route,
                "attempts": self._attempts,
                "retry_at": retry_at.isoformat(),
            },
        )
        raise ApiBudgetExhausted(route, retry_at)

    def hold(self, route: str, until: datetime) -> None:
        """No call on ``route`` before ``until``; a later hold stays.

        A hold that loses every write to other instances is logged and dropped:
        the caller still defers its own call, and an instance that calls the API
        anyway meets the same 429 and holds it in turn.

        Raises:
            AzureError: the table could not be read or written.
        """
        _check_route(route)
        key = budget_row_key(route)
        wanted = _seconds(until)

        for _ in range(self._attempts):
            stored = self._read(key)
            if stored.not_before is not None and stored.not_before >= wanted:
                return
            if self._write(key, route, stored, stored.calls, not_before=wanted):
                logger.info(
                    "budget.held", extra={"route": route, "until": until.isoformat()}
                )
                return
            self._pause_briefly()

        logger.warning(
            "budget.hold_contention",
            extra={
                "route": route,
                "attempts": self._attempts,
                "until": until.isoformat(),
            },
        )

    def snapshot(self) -> list[BucketState]:
        """Every API with an entity in the table, sorted by route."""
        entities = self._table.query_entities(
            "PartitionKey eq @partition", parameters={"partition": _PARTITION}
        )
        now = self._rules.now()

        states = []
        for entity in entities:
            route = entity.get("Route")
            if not isinstance(route, str):
                continue
            stored = _parse_entity(entity)
            states.append(
                self._rules.bucket_state(route, stored.calls, stored.not_before, now)
            )
        return sorted(states, key=lambda state: state.route)

    def _read(self, key: str) -> _Stored:
        try:
            entity = self._table.get_entity(_PARTITION, key)
        except ResourceNotFoundError:
            return _Stored(calls=(), not_before=None, etag=None)
        return _parse_entity(entity)

    def _write(
        self,
        key: str,
        route: str,
        stored: _Stored,
        calls: Sequence[float],
        *,
        not_before: float | None,
    ) -> bool:
        """Write the entity unless someone else did since ``stored`` was read."""
        entity: dict[str, Any] = {
            "PartitionKey": _PARTITION,
            "RowKey": key,
            "Route": route,
            "Calls": _encode_calls(calls),
        }
        if not_before is not None:
            entity["NotBefore"] = _moment(not_before)

        try:
            if stored.etag is None:
                self._table.create_entity(entity)
            else:
                self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=stored.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            # Another instance created, changed or removed the entity first.
            return False
        return True

    def _pause_briefly(self) -> None:
        self._pause(self._jitter() * _MAX_PAUSE_SECONDS)


def _parse_entity(entity: TableEntity) -> _Stored:
    not_before = entity.get("NotBefore")
    return _Stored(
        calls=_decode_calls(entity.get("Calls"), entity.get("Route")),
        not_before=_seconds(not_before) if isinstance(not_before, datetime) else None,
        etag=entity.metadata.get("etag"),
    )


def _encode_calls(calls: Sequence[float]) -> str:
    """The log as JSON: the first call in epoch milliseconds, then the gaps.

    A whole hour of calls fits in one property this way (at most 1500 numbers of
    a few digits). Times are rounded up to the millisecond, so a call is never
    stored as older than it is.
    """
    millis = [math.ceil(call * 1000) for call in calls]
    gaps = [later - earlier for earlier, later in itertools.pairwise(millis)]
    return json.dumps(millis[:1] + gaps, separators=(",", ":"))


def _decode_calls(text: object, route: object) -> tuple[float, ...]:
    try:
        numbers = json.loads(text) if isinstance(text, str) else None
        if not isinstance(numbers, list) or not all(
            isinstance(n, int) and n >= 0 for n in numbers
        ):
            raise ValueError("not a list of whole non-negative numbers")
    except ValueError as exc:
        # Only this module writes the entity, so this is a bug or a hand edit.
        # Starting the count afresh may let a burst through, which Defender
        # then answers with a 429 that holds the API for every instance.
        logger.error("budget.unreadable", extra={"route": route, "error": str(exc)})
        return ()

    total = 0
    calls = []
    for number in numbers:
        total += number
        calls.append(total / 1000)
    return tuple(calls)
