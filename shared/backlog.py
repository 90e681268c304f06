"""The backlog: targets that could not be submitted now, waiting on a queue.

A target is deferred when Defender's budget is spent, Defender answered 429, a
call failed in a way that may pass (5xx, a lost answer, a refused token), or
another instance is submitting the same target. The pipeline then puts it here,
before its trigger returns, with the time it may be tried again; nothing that was
deferred lives only in memory.

On Azure the backlog is a Storage queue. A deferred target is one message whose
visibility delay is the time to wait, so the queue trigger (``functions/backlog``)
sees it when budget has come back, and never earlier. Messages never expire
(time-to-live -1): a queue's default of 7 days would drop targets silently.

A message is a JSON document (``DeferredTarget.to_message``). One that cannot be
read, or whose target has failed ``BACKLOG_MAX_ATTEMPTS`` times, is written to
the poison queue ``<name>-poison`` with the reason, and logged as an error. The
host also moves a message there after ``MAX_DEQUEUE_COUNT`` failed tries of the
function itself (host.json ``maxDequeueCount``); the handler writes the reason
on that last try so a person never finds a poison message without one.

Limitations:
    A message holds at most 64 KB; a target is a few hundred bytes to a few KB,
    so ``defer`` refuses (raises) a document past that rather than cut it.
    The queue's depth counts delayed messages too, and the oldest message's age
    is read from the front of the queue (``peek``), which only sees visible
    messages: a backlog of delayed targets shows a depth but no age. The
    Functions scale controller also counts delayed messages, so a long backlog
    can add instances that find nothing visible to do; the plan's maximum
    instance count bounds that.
"""

from __future__ import annotations

__all__ = [
    "MAX_DEQUEUE_COUNT",
    "Backlog",
    "BacklogDepth",
    "DeferredTarget",
    "MemoryBacklog",
    "PoisonRecord",
    "QueueBacklog",
    "is_fault_deferral",
]

import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.storage.queue import QueueClient

from shared import telemetry
from shared.codec import CodecError, decode_target, encode_target
from shared.targets import Target

logger = logging.getLogger(__name__)

# Must equal host.json extensions.queues.maxDequeueCount (a test checks it): on the
# try with this count the handler poisons the message itself, with its reason.
MAX_DEQUEUE_COUNT = 5

_MESSAGE_KIND = "deferred-target"
_MESSAGE_VERSION = 1
_MAX_MESSAGE_BYTES = 48 * 1024  # 64 KB once base64-encoded
_MAX_VISIBILITY = timedelta(days=7) - timedelta(seconds=1)

# Reasons that only mean "not yet": they never use up a target's attempts.
_WAITING_REASONS = frozenset(
    {"api_budget_exhausted", "api_throttled", "claimed_elsewhere"}
)


def is_fault_deferral(reason: str) -> bool:
    """Whether a deferral counts against ``BACKLOG_MAX_ATTEMPTS``."""
    return reason not in _WAITING_REASONS


@dataclass(frozen=True, slots=True)
class DeferredTarget:
    """A target waiting in the backlog, and its history there."""

    target: Target
    reason: str
    retry_at: datetime
    attempts: int
    first_deferred_at: datetime
    source: str

    def to_message(self) -> str:
        """The queue message: versioned JSON."""
        return json.dumps(
            {
                "kind": _MESSAGE_KIND,
                "version": _MESSAGE_VERSION,
                "reason": self.reason,
                "retry_at": self.retry_at.isoformat(),
                "attempts": self.attempts,
                "first_deferred_at": self.first_deferred_at.isoformat(),
                "source": self.source,
                "target": encode_target(self.target),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_message(cls, body: bytes | str) -> DeferredTarget:
        """Read a queue message back.

        Raises:
            CodecError: the body is not a deferred target of this version.
        """
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CodecError(f"not JSON: {exc}") from None
        if not isinstance(document, dict) or document.get("kind") != _MESSAGE_KIND:
            raise CodecError("not a deferred target")
        if document.get("version") != _MESSAGE_VERSION:
            raise CodecError(f"message version {document.get('version')!r}")

        attempts = document.get("attempts")
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
            raise CodecError("attempts must be a whole number")
        return cls(
            target=decode_target(document.get("target")),
            reason=_text(document, "reason"),
            retry_at=_time(document, "retry_at"),
            attempts=attempts,
            first_deferred_at=_time(document, "first_deferred_at"),
            source=_text(document, "source"),
        )


@dataclass(frozen=True, slots=True)
class BacklogDepth:
    """How much waits, for the command line and the depth metrics."""

    messages: int
    poisoned: int
    oldest_age_seconds: float | None
    where: str

    def to_json(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "messages": self.messages,
            "poisoned": self.poisoned,
            "oldest_age_seconds": self.oldest_age_seconds,
        }


@dataclass(frozen=True, slots=True)
class PoisonRecord:
    """A message given up on: what it held, why, and when."""

    reason: str
    body: str
    poisoned_at: datetime
    dequeue_count: int | None = None

    def to_message(self) -> str:
        return json.dumps(
            {
                "kind": "poisoned-backlog-message",
                "reason": self.reason,
                "poisoned_at": self.poisoned_at.isoformat(),
                "dequeue_count": self.dequeue_count,
                "body": self.body,
            },
            separators=(",", ":"),
        )


class Backlog(Protocol):
    """Where deferred targets wait."""

    def defer(self, item: DeferredTarget) -> None:
        """Keep ``item`` until ``item.retry_at``; raise if it cannot be kept."""
        ...

    def poison(self, record: PoisonRecord) -> None:
        """Set a message aside for a person, with its reason."""
        ...

    def depth(self) -> BacklogDepth: ...


class QueueBacklog:
    """The backlog on an Azure Storage queue and its poison queue.

    Both clients must encode messages in base64 (``StorageAccount.queue`` does).
    """

    def __init__(
        self,
        queue: QueueClient,
        poison_queue: QueueClient,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._queue = queue
        self._poison = poison_queue
        self._now = now

    def defer(self, item: DeferredTarget) -> None:
        message = item.to_message()
        if len(message.encode()) > _MAX_MESSAGE_BYTES:
            raise ValueError(
                f"the deferred target is {len(message)} bytes, past the queue's "
                "message limit"
            )

        delay = _visibility_delay(item.retry_at - self._now())
        self._queue.send_message(message, visibility_timeout=delay, time_to_live=-1)
        _log_deferred(item, delay)

    def poison(self, record: PoisonRecord) -> None:
        self._poison.send_message(record.to_message(), time_to_live=-1)
        _log_poisoned(record)

    def depth(self) -> BacklogDepth:
        waiting = self._queue.get_queue_properties().approximate_message_count or 0
        poisoned = self._poison.get_queue_properties().approximate_message_count or 0

        oldest: float | None = None
        for message in self._queue.peek_messages(max_messages=1):
            if message.inserted_on is not None:
                oldest = (self._now() - message.inserted_on).total_seconds()

        depth = BacklogDepth(
            waiting, poisoned, oldest, f"queue {self._queue.queue_name}"
        )
        telemetry.record_backlog_depth(depth.messages, depth.oldest_age_seconds)
        return depth


class MemoryBacklog:
    """Deferred targets held for one run of the command line; thread-safe.

    Nothing resubmits them: the run reports them, and whoever ran it decides.
    """

    def __init__(
        self, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._items: list[DeferredTarget] = []
        self._poisoned: list[PoisonRecord] = []
        self._now = now
        self._lock = threading.Lock()

    def defer(self, item: DeferredTarget) -> None:
        with self._lock:
            self._items.append(item)
        _log_deferred(item, _visibility_delay(item.retry_at - self._now()))

    def poison(self, record: PoisonRecord) -> None:
        with self._lock:
            self._poisoned.append(record)
        _log_poisoned(record)

    def depth(self) -> BacklogDepth:
        with self._lock:
            firsts = [item.first_deferred_at for item in self._items]
            oldest = (self._now() - min(firsts)).total_seconds() if firsts else None
            return BacklogDepth(
                len(self._items), len(self._poisoned), oldest, "memory (this run)"
            )

    def items(self) -> list[DeferredTarget]:
        with self._lock:
            return list(self._items)

    def poisoned(self) -> list[PoisonRecord]:
        with self._lock:
            return list(self._poisoned)


def _visibility_delay(wait: timedelta) -> int:
    """Whole seconds, rounded up so a message never shows before its time."""
    clamped = min(max(wait, timedelta(0)), _MAX_VISIBILITY)
    return math.ceil(clamped.total_seconds())


def _log_deferred(item: DeferredTarget, delay: int) -> None:
    telemetry.record_backlog_event("deferred", item.reason)
    logger.info(
        "backlog.deferred",
        extra={
            "alert_id": item.target.alert_id,
            "device_id": item.target.device_id,
            "sha1": item.target.sha1,
            "reason": item.reason,
            "retry_at": item.retry_at.isoformat(),
            "delay_seconds": delay,
            "attempts": item.attempts,
        },
    )


def _log_poisoned(record: PoisonRecord) -> None:
    telemetry.record_backlog_event("poisoned", record.reason.split(":", 1)[0])
    logger.error(
        "backlog.poisoned",
        extra={
            "reason": record.reason,
            "dequeue_count": record.dequeue_count,
            "body_bytes": len(record.body),
        },
    )


def _text(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise CodecError(f"{key} must be a non-empty string")
    return value


def _time(document: dict[str, Any], key: str) -> datetime:
    try:
        value = datetime.fromisoformat(_text(document, key))
    except ValueError:
        raise CodecError(f"{key} must be an ISO 8601 time") from None
    if value.tzinfo is None:
        raise CodecError(f"{key} must carry a time zone")
    return value
