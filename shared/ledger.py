"""The ledger: what the playbook has submitted, per target.

A target is the pair (device id, SHA-1). The ledger answers the two questions that
keep the playbook from acting twice or too widely:

- has this target an open or succeeded machine action already? (never submit again)
- how many distinct devices has this SHA-1 been submitted for since a moment?
  (the per-file device cap)

``Ledger`` is the protocol the pipeline uses; ``MemoryLedger`` keeps it in the
process, which is exact for one process and one run (the command line, tests).

Limitations:
    ``MemoryLedger`` forgets on restart and is not shared between Function
    instances, so an at-least-once redelivery seen by another instance can submit a
    target again (Defender then answers "already in progress" while the first action
    is open). The durable, shared ledger on Azure Table storage is issue #6.
"""

from __future__ import annotations

__all__ = ["Ledger", "LedgerEntry", "MemoryLedger"]

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

# After these final statuses a new submission may be worth trying; after Succeeded,
# or while an action is open, it never is.
_RESUBMITTABLE_STATUSES = frozenset({"Failed", "TimeOut", "Cancelled"})

_MAX_ALERT_IDS = 20  # enough to trace a target back, bounded against alert storms


@dataclass(slots=True)
class LedgerEntry:
    """The record of one target: its machine action and the alerts that named it."""

    device_id: str
    sha1: str
    action_id: str | None = None
    action_status: str | None = None
    submitted_at: datetime | None = None
    submissions: int = 0
    alert_ids: list[str] = field(default_factory=list)

    @property
    def blocks_resubmission(self) -> bool:
        """True while an action is open, or once one has succeeded."""
        if self.submissions == 0:
            return False
        return self.action_status not in _RESUBMITTABLE_STATUSES


class Ledger(Protocol):
    """What the pipeline needs to stay idempotent and within the device cap."""

    def find(self, device_id: str, sha1: str) -> LedgerEntry | None: ...

    def devices_submitted(self, sha1: str, *, since: datetime) -> int: ...

    def record_submission(
        self,
        *,
        device_id: str,
        sha1: str,
        alert_id: str,
        action_id: str | None,
        action_status: str | None,
        at: datetime,
    ) -> LedgerEntry: ...


class MemoryLedger:
    """A ledger held in this process; thread-safe."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], LedgerEntry] = {}
        self._lock = threading.Lock()

    def find(self, device_id: str, sha1: str) -> LedgerEntry | None:
        with self._lock:
            return self._entries.get((device_id, sha1))

    def devices_submitted(self, sha1: str, *, since: datetime) -> int:
        with self._lock:
            return sum(
                1
                for entry in self._entries.values()
                if entry.sha1 == sha1
                and entry.submitted_at is not None
                and entry.submitted_at >= since
            )

    def record_submission(
        self,
        *,
        device_id: str,
        sha1: str,
        alert_id: str,
        action_id: str | None,
        action_status: str | None,
        at: datetime,
    ) -> LedgerEntry:
        with self._lock:
            entry = self._entries.setdefault(
                (device_id, sha1), LedgerEntry(device_id=device_id, sha1=sha1)
            )
            entry.action_id = action_id
            entry.action_status = action_status
            entry.submitted_at = at
            entry.submissions += 1
            if alert_id not in entry.alert_ids:
                entry.alert_ids = [*entry.alert_ids, alert_id][-_MAX_ALERT_IDS:]
            return entry

    def entries(self) -> list[LedgerEntry]:
        """Every entry, for reports and tests."""
        with self._lock:
            return list(self._entries.values())
