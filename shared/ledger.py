"""The ledger: what the playbook has judged and submitted, per target.

A target is the pair (device id, SHA-1). The ledger answers the questions that keep
the playbook from acting twice or too widely, whatever the number of instances and
however often Event Hubs delivers the same alert:

- has this target an open or succeeded machine action already? (never submit again)
- how many distinct devices has this SHA-1 been submitted for since a moment?
  (the per-file device cap)
- may this instance submit the target now? (a **claim**: only one instance at a
  time may hold it; see below)

Submitting is claim, call Defender, record. The claim is written before the call,
so a process that dies between the call and the record leaves a claim behind, not
silence. Once that claim has expired, the next claimant is told to look among
Defender's machine actions (``Claim.recover_since``) before it submits again: the
action the dead process created is then found and recorded, not duplicated.

``Ledger`` is the protocol the pipeline and the action tracker use.
``MemoryLedger`` keeps it in this process (the command line without storage, unit
tests); ``shared.table_ledger.TableLedger`` keeps it in Azure Table storage, shared
by every instance. Both decide claims with ``decide_claim``, so they agree.
"""

from __future__ import annotations

__all__ = [
    "CLAIM_SECONDS",
    "MAX_ALERT_IDS",
    "MAX_VERDICTS",
    "Claim",
    "ClaimRefusal",
    "Ledger",
    "LedgerConflictError",
    "LedgerEntityError",
    "LedgerEntry",
    "MemoryLedger",
    "VerdictRecord",
    "decide_claim",
]

import dataclasses
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from shared.errors import DefenderQuarantineError

# After these final statuses a new submission may be worth trying; after Succeeded,
# or while an action is open, it never is. "Refused" is the ledger's own: Defender
# answered a permanent error (400, 404) and created no action.
_RESUBMITTABLE_STATUSES = frozenset({"Failed", "TimeOut", "Cancelled", "Refused"})
_OPEN_STATUSES = frozenset({"Pending", "InProgress"})

MAX_ALERT_IDS = 20  # enough to trace a target back, bounded against alert storms
MAX_VERDICTS = 20  # the latest verdicts; older ones are in Application Insights

# How long a claim protects a submission in flight. It must outlast one
# submission with all its retries (four retries, 30 s reads, waits of up to 10 s).
CLAIM_SECONDS = 300


class LedgerConflictError(DefenderQuarantineError):
    """Other instances kept changing a target's entry; the write was not made.

    It concerns one target, and passes: the pipeline defers that target.
    """


class LedgerEntityError(DefenderQuarantineError, ValueError):
    """A stored ledger entry does not hold what this release writes.

    It concerns one target: the pipeline defers that target (a person must look
    if it keeps failing), and the other targets go on.
    """


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    """One judgement of a target: when, what, and why."""

    at: datetime
    verdict: str
    reason: str
    alert_id: str


@dataclass(slots=True)
class LedgerEntry:
    """The record of one target: its machine action, verdicts and alerts.

    ``claim_id`` and ``claimed_at`` are set while an instance is submitting.
    ``recover_since`` is set when a submission may have reached Defender without
    its answer being recorded: the next claimant looks for an action created
    since then before it submits.
    """

    device_id: str
    sha1: str
    action_id: str | None = None
    action_status: str | None = None
    action_updated_at: datetime | None = None
    submitted_at: datetime | None = None
    submissions: int = 0
    alert_ids: list[str] = field(default_factory=list)
    verdicts: list[VerdictRecord] = field(default_factory=list)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    last_error: str | None = None
    claim_id: str | None = None
    claimed_at: datetime | None = None
    recover_since: datetime | None = None

    @property
    def blocks_resubmission(self) -> bool:
        """True while an action is open, or once one has succeeded."""
        if self.submissions == 0:
            return False
        return self.action_status not in _RESUBMITTABLE_STATUSES

    @property
    def has_open_action(self) -> bool:
        """An action Defender has not finished, which the tracker follows."""
        return self.action_id is not None and self.action_status in _OPEN_STATUSES

    def note_alert(self, alert_id: str) -> None:
        if alert_id not in self.alert_ids:
            self.alert_ids = [*self.alert_ids, alert_id][-MAX_ALERT_IDS:]

    def note_verdict(self, record: VerdictRecord) -> None:
        self.verdicts = [*self.verdicts, record][-MAX_VERDICTS:]
        self.note_alert(record.alert_id)
        self.first_seen = self.first_seen or record.at
        self.last_seen = record.at

    # The state changes below are the ledger's rules; every ledger applies them
    # to its copy of the entry, so that they cannot drift apart.

    def take_claim(self, claim: Claim, *, alert_id: str, at: datetime) -> None:
        """Hold a granted claim."""
        self.claim_id = claim.claim_id
        self.claimed_at = at
        self.recover_since = claim.recover_since
        self.note_alert(alert_id)

    def note_submission(
        self,
        claim: Claim,
        *,
        action_id: str | None,
        action_status: str | None,
        at: datetime,
    ) -> None:
        """Defender answered with a machine action; the claim ends."""
        self.action_id = action_id
        self.action_status = action_status
        self.action_updated_at = at
        self.submitted_at = at
        self.submissions += 1
        self.last_error = None
        self._end_claim(claim)

    def note_refusal(self, claim: Claim, *, error: str, at: datetime) -> None:
        """Defender refused for good: an attempt with no action; the claim ends."""
        self.action_id = None
        self.action_status = "Refused"
        self.action_updated_at = at
        self.submissions += 1
        self.last_error = error
        self._end_claim(claim)

    def release_claim(self, claim: Claim, *, maybe_sent: bool, at: datetime) -> bool:
        """End ``claim`` with nothing recorded; False when it is no longer the
        current claim (a newer holder took over: nothing to change)."""
        if self.claim_id != claim.claim_id:
            return False
        if maybe_sent:
            self.recover_since = self.recover_since or self.claimed_at or at
        self.claim_id = None
        self.claimed_at = None
        return True

    def note_action_status(self, *, action_id: str, status: str, at: datetime) -> bool:
        """The tracker's news; False when it is about an action that a newer
        submission replaced."""
        if self.action_id != action_id:
            return False
        self.action_status = status
        self.action_updated_at = at
        return True

    def _end_claim(self, claim: Claim) -> None:
        """Clear the claim unless a newer one holds it; the answer is recorded,
        so nothing is left to recover."""
        if self.claim_id in (None, claim.claim_id):
            self.claim_id = None
            self.claimed_at = None
        self.recover_since = None


class ClaimRefusal(StrEnum):
    """Why a target may not be submitted now."""

    DUPLICATE = "duplicate"
    CLAIMED_ELSEWHERE = "claimed_elsewhere"
    RESUBMISSIONS_EXHAUSTED = "resubmissions_exhausted"


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to "may I submit this target now?".

    Granted: ``claim_id`` identifies this holder, and ``recover_since`` (when
    set) says to look for an existing action created since then first.
    Refused: ``refusal`` says why, ``entry`` is the record that refused it, and
    ``retry_at`` (for a claim held elsewhere) is when it expires.
    """

    device_id: str
    sha1: str
    claim_id: str
    refusal: ClaimRefusal | None = None
    entry: LedgerEntry | None = None
    recover_since: datetime | None = None
    retry_at: datetime | None = None

    @property
    def granted(self) -> bool:
        return self.refusal is None


def decide_claim(
    entry: LedgerEntry | None,
    *,
    device_id: str,
    sha1: str,
    now: datetime,
    max_submissions: int,
) -> Claim:
    """Whether a new claim on the target of ``entry`` may be granted at ``now``."""
    claim_id = uuid.uuid4().hex
    if entry is None:
        return Claim(device_id, sha1, claim_id)

    recover_since = entry.recover_since
    if entry.claim_id is not None and entry.claimed_at is not None:
        expires = entry.claimed_at + timedelta(seconds=CLAIM_SECONDS)
        if now < expires:
            return Claim(
                device_id,
                sha1,
                claim_id,
                refusal=ClaimRefusal.CLAIMED_ELSEWHERE,
                entry=entry,
                retry_at=expires,
            )
        # The holder vanished mid-submission: its call may have reached Defender.
        recover_since = min(filter(None, (recover_since, entry.claimed_at)))

    if entry.blocks_resubmission:
        refusal = ClaimRefusal.DUPLICATE
    elif entry.submissions >= max_submissions:
        refusal = ClaimRefusal.RESUBMISSIONS_EXHAUSTED
    else:
        return Claim(device_id, sha1, claim_id, recover_since=recover_since)
    return Claim(device_id, sha1, claim_id, refusal=refusal, entry=entry)


class Ledger(Protocol):
    """What the pipeline and the tracker need to stay exact across instances."""

    def find(self, device_id: str, sha1: str) -> LedgerEntry | None: ...

    def devices_submitted(self, sha1: str, *, since: datetime) -> int: ...

    def record_verdict(
        self,
        *,
        device_id: str,
        sha1: str,
        alert_id: str,
        verdict: str,
        reason: str,
        at: datetime,
    ) -> None:
        """Note a judgement of the target (kept bounded, newest last)."""
        ...

    def claim(
        self,
        *,
        device_id: str,
        sha1: str,
        alert_id: str,
        at: datetime,
        max_submissions: int,
    ) -> Claim:
        """Take the right to submit the target, unless ``decide_claim`` refuses.

        At most one instance holds a granted claim on a target at a time.
        """
        ...

    def record_submission(
        self,
        claim: Claim,
        *,
        action_id: str | None,
        action_status: str | None,
        at: datetime,
    ) -> LedgerEntry:
        """Defender answered with a machine action (or "already in progress");
        the claim ends."""
        ...

    def record_refusal(self, claim: Claim, *, error: str, at: datetime) -> LedgerEntry:
        """Defender refused for good (400, 404): an attempt, with no action."""
        ...

    def release(self, claim: Claim, *, maybe_sent: bool, at: datetime) -> None:
        """End a claim that recorded nothing. ``maybe_sent``: the request may
        have reached Defender, so the next claimant must look before submitting."""
        ...

    def record_action_status(
        self,
        *,
        device_id: str,
        sha1: str,
        action_id: str,
        status: str,
        at: datetime,
    ) -> LedgerEntry | None:
        """The tracker's news of an action; ignored unless it is still the
        target's current action."""
        ...

    def entries(self, *, open_only: bool = False) -> list[LedgerEntry]:
        """Every entry, or those with an open machine action."""
        ...


class MemoryLedger:
    """A ledger held in this process; thread-safe, forgotten on exit."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], LedgerEntry] = {}
        self._lock = threading.Lock()

    def find(self, device_id: str, sha1: str) -> LedgerEntry | None:
        with self._lock:
            entry = self._entries.get((device_id, sha1))
            return dataclasses.replace(entry) if entry else None

    def devices_submitted(self, sha1: str, *, since: datetime) -> int:
        with self._lock:
            return sum(
                1
                for entry in self._entries.values()
                if entry.sha1 == sha1
                and entry.submitted_at is not None
                and entry.submitted_at >= since
            )

    def record_verdict(
        self,
        *,
        device_id: str,
        sha1: str,
        alert_id: str,
        verdict: str,
        reason: str,
        at: datetime,
    ) -> None:
        with self._lock:
            entry = self._entry(device_id, sha1)
            entry.note_verdict(VerdictRecord(at, verdict, reason, alert_id))

    def claim(
        self,
        *,
        device_id: str,
        sha1: str,
        alert_id: str,
        at: datetime,
        max_submissions: int,
    ) -> Claim:
        with self._lock:
            existing = self._entries.get((device_id, sha1))
            claim = decide_claim(
                dataclasses.replace(existing) if existing else None,
                device_id=device_id,
                sha1=sha1,
                now=at,
                max_submissions=max_submissions,
            )
            if claim.granted:
                self._entry(device_id, sha1).take_claim(claim, alert_id=alert_id, at=at)
            return claim

    def record_submission(
        self,
        claim: Claim,
        *,
        action_id: str | None,
        action_status: str | None,
        at: datetime,
    ) -> LedgerEntry:
        with self._lock:
            entry = self._entry(claim.device_id, claim.sha1)
            entry.note_submission(
                claim, action_id=action_id, action_status=action_status, at=at
            )
            return dataclasses.replace(entry)

    def record_refusal(self, claim: Claim, *, error: str, at: datetime) -> LedgerEntry:
        with self._lock:
            entry = self._entry(claim.device_id, claim.sha1)
            entry.note_refusal(claim, error=error, at=at)
            return dataclasses.replace(entry)

    def release(self, claim: Claim, *, maybe_sent: bool, at: datetime) -> None:
        with self._lock:
            entry = self._entries.get((claim.device_id, claim.sha1))
            if entry is not None:
                entry.release_claim(claim, maybe_sent=maybe_sent, at=at)

    def record_action_status(
        self,
        *,
        device_id: str,
        sha1: str,
        action_id: str,
        status: str,
        at: datetime,
    ) -> LedgerEntry | None:
        with self._lock:
            entry = self._entries.get((device_id, sha1))
            if entry is None:
                return None
            changed = entry.note_action_status(
                action_id=action_id, status=status, at=at
            )
            return dataclasses.replace(entry) if changed else None

    def entries(self, *, open_only: bool = False) -> list[LedgerEntry]:
        with self._lock:
            return [
                dataclasses.replace(entry)
                for entry in self._entries.values()
                if entry.has_open_action or not open_only
            ]

    def _entry(self, device_id: str, sha1: str) -> LedgerEntry:
        return self._entries.setdefault(
            (device_id, sha1), LedgerEntry(device_id=device_id, sha1=sha1)
        )
