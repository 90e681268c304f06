"""The action tracker: follows open machine actions to their final status.

A StopAndQuarantineFile action starts Pending or InProgress, and Defender settles it
later as Succeeded, Failed, TimeOut or Cancelled. The ledger keeps each target's
action id and last known status; the tracker, run by a timer, brings every open one
up to date and reports each one that has finished.

One run spends as few API calls as the list endpoint allows:

1. read the open entries from the ledger; with none, call nothing;
2. list the StopAndQuarantineFile actions created since the oldest open submission,
   in one call of the largest page. The list cannot be narrowed to our ids: its
   ``$filter`` takes ``id eq`` one id at a time, and clauses joined by ``or`` are
   not something to count on (the simulator refuses them), so asking by id would
   cost one call per action;
3. look up one by one the open actions the list did not return, at most
   ``max_single_lookups`` a run; the rest wait for the next run;
4. close as TimeOut any action still open three days and an hour after its
   submission, when Defender has given up delivering it.

Each action that reaches a final status gives one ``action.final`` log record and
one count of ``quarantine.machine_action_outcomes``; each run gives one
``tracker.run`` record with the numbers of its ``TrackerReport``.

An API fault ends the run early and is reported, never raised: what was learnt
before it is recorded, and the next run resumes. A storage fault (``AzureError``
from the ledger) raises, because nothing the tracker learns can be kept without it.

Limitations:
    The list reads its first page only (10,000 actions). In a tenant that creates
    more StopAndQuarantineFile actions than that within the window, the others are
    looked up one by one, ``max_single_lookups`` a run, and may lag a few runs.
    An action that the list did not return and whose timeout has passed is closed
    as TimeOut without asking Defender. Should it in fact have finished otherwise,
    the ledger says TimeOut, which allows the pipeline to submit the target again.
"""

from __future__ import annotations

__all__ = [
    "DELIVERY_TIMEOUT",
    "TIMEOUT_GRACE",
    "ActionTracker",
    "TrackerApi",
    "TrackerReport",
]

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from shared import telemetry
from shared.defender_client import InvalidIdentifierError, validate_action_id
from shared.errors import ApiError
from shared.ledger import Ledger, LedgerEntry
from shared.machine_actions import MachineAction, MachineActionStatus, MachineActionType

logger = logging.getLogger(__name__)

# "The Stop and quarantine action has a maximum timeout period of 3 days"
# (respond-file-alerts, shared/defender-api.md section 1.4).
DELIVERY_TIMEOUT = timedelta(days=3)
# Defender counts its 3 days from its own creation time and needs a moment to mark
# the action TimeOut; within this hour its own final word, even a last-minute
# success, is awaited rather than guessed.
TIMEOUT_GRACE = timedelta(hours=1)

# The list window starts this long before the oldest open submission: a submission
# with all its retries lasts up to 5 minutes (shared.ledger.CLAIM_SECONDS) before
# its time is recorded, and Defender's clock may disagree with ours by minutes.
_LIST_MARGIN = timedelta(minutes=10)
# The most $top allows on GET machineactions (shared/defender-api.md section 4).
_LIST_TOP = 10_000


class TrackerApi(Protocol):
    """What the tracker needs from Defender; ``DefenderClient`` satisfies it."""

    def list_machine_actions(
        self,
        *,
        action_type: MachineActionType | None = ...,
        created_since: datetime | None = ...,
        top: int = ...,
    ) -> tuple[MachineAction, ...]: ...

    def get_machine_action(self, action_id: str) -> MachineAction: ...


@dataclass(frozen=True, slots=True)
class TrackerReport:
    """What one run of the tracker did.

    ``open`` entries had an open action at the start; the API told the status of
    ``checked`` of them; ``finished`` reached a final status Defender reported and
    ``timed_out`` were closed by the tracker after the timeout; ``still_open``
    remain open. ``api_calls`` counts the list and each lookup (not the client's
    retries). ``lookups_deferred`` actions the list missed wait for the next run
    because of the lookup cap. ``incomplete`` says why the run stopped early, if
    it did.
    """

    open: int
    checked: int
    finished: int
    timed_out: int
    still_open: int
    api_calls: int
    lookups_deferred: int = 0
    incomplete: str | None = None

    def to_json(self) -> dict[str, int | str | None]:
        return {
            "open": self.open,
            "checked": self.checked,
            "finished": self.finished,
            "timed_out": self.timed_out,
            "still_open": self.still_open,
            "api_calls": self.api_calls,
            "lookups_deferred": self.lookups_deferred,
            "incomplete": self.incomplete,
        }


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ActionTracker:
    """Follows every open machine action in the ledger to its final status."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        api: TrackerApi,
        now: Callable[[], datetime] = _utc_now,
        max_single_lookups: int = 20,
    ) -> None:
        if max_single_lookups < 0:
            raise ValueError("max_single_lookups must not be negative")
        self._ledger = ledger
        self._api = api
        self._now = now
        self._max_single_lookups = max_single_lookups

    def run(self) -> TrackerReport:
        """Bring every open action up to date; report what changed.

        Raises:
            AzureError: the ledger's storage failed. API faults never raise.
        """
        entries = [e for e in self._ledger.entries(open_only=True) if e.action_id]
        run = _Run(now=self._now(), open=len(entries))
        if entries:
            self._follow(entries, run)

        report = run.report()
        _log_run(report)
        return report

    def _follow(self, entries: list[LedgerEntry], run: _Run) -> None:
        try:
            listed = self._list_actions(entries, run)
        except ApiError as exc:
            # Nothing is closed without the list: it may say an action finished.
            run.stop("listing machine actions", exc)
            return

        unlisted: list[LedgerEntry] = []
        for entry in entries:
            action = listed.get(_key(entry))
            if action is None and not _is_expired(entry, run.now):
                unlisted.append(entry)
            else:
                self._settle(entry, action, run)

        self._look_up(unlisted, run)

    def _list_actions(
        self, entries: list[LedgerEntry], run: _Run
    ) -> dict[str, MachineAction]:
        since = _oldest_submission(entries, run.now) - _LIST_MARGIN

        run.api_calls += 1
        actions = self._api.list_machine_actions(
            action_type=MachineActionType.STOP_AND_QUARANTINE_FILE,
            created_since=since,
            top=_LIST_TOP,
        )
        return {action.id.lower(): action for action in actions}

    def _look_up(self, entries: list[LedgerEntry], run: _Run) -> None:
        """Ask for each action the list missed, oldest submission first."""
        oldest_first = sorted(entries, key=_submitted_at)
        for index, entry in enumerate(oldest_first):
            if run.lookups == self._max_single_lookups:
                run.lookups_deferred = len(oldest_first) - index
                return

            action_id = entry.action_id or ""
            if not _is_action_id(action_id):
                # Never sent: Defender's ids are GUIDs. The timeout closes it.
                logger.warning("tracker.action_id_invalid", extra=_target_fields(entry))
                continue

            run.lookups += 1
            run.api_calls += 1
            try:
                action = self._api.get_machine_action(action_id)
            except ApiError as exc:
                run.stop(f"looking up machine action {action_id}", exc)
                return
            self._settle(entry, action, run)

    def _settle(
        self, entry: LedgerEntry, action: MachineAction | None, run: _Run
    ) -> None:
        """Record what is now known of one entry's action."""
        if action is not None:
            run.checked += 1

        if action is not None and action.is_final:
            self._record_final(entry, action.status, run, action=action)
            run.finished += 1
        elif _is_expired(entry, run.now):
            self._record_final(entry, MachineActionStatus.TIMEOUT, run, action=None)
            run.timed_out += 1
        elif action is not None:
            self._record_progress(entry, action, run)

    def _record_final(
        self,
        entry: LedgerEntry,
        status: MachineActionStatus,
        run: _Run,
        *,
        action: MachineAction | None,
    ) -> None:
        """Close the entry's action: Defender's final status, or the tracker's."""
        self._ledger.record_action_status(
            device_id=entry.device_id,
            sha1=entry.sha1,
            action_id=entry.action_id or "",
            status=str(status),
            at=run.now,
        )
        telemetry.record_machine_action_outcome(str(status))

        ended = (action.last_updated if action else None) or run.now
        logger.info(
            "action.final",
            extra={
                **_target_fields(entry),
                "status": str(status),
                "closed_by": "defender" if action else "tracker",
                "minutes_from_submission": _minutes_since(entry.submitted_at, ended),
                "error_hresult": action.error_hresult if action else None,
            },
        )

    def _record_progress(
        self, entry: LedgerEntry, action: MachineAction, run: _Run
    ) -> None:
        """Note a move between open statuses; an unknown one is left alone."""
        if not action.is_open:
            # A status Defender added after this code was written: recording it
            # would end the tracking of an action that may still change.
            logger.warning(
                "tracker.status_unknown",
                extra={**_target_fields(entry), "raw_status": action.raw_status},
            )
            return
        if str(action.status) == entry.action_status:
            return

        self._ledger.record_action_status(
            device_id=entry.device_id,
            sha1=entry.sha1,
            action_id=entry.action_id or "",
            status=str(action.status),
            at=run.now,
        )
        logger.debug(
            "action.progressed",
            extra={**_target_fields(entry), "status": str(action.status)},
        )


@dataclass(slots=True)
class _Run:
    """The counts of one run as it goes."""

    now: datetime
    open: int
    checked: int = 0
    finished: int = 0
    timed_out: int = 0
    api_calls: int = 0
    lookups: int = 0
    lookups_deferred: int = 0
    incomplete: str | None = None

    def stop(self, step: str, exc: ApiError) -> None:
        self.incomplete = f"{step} failed ({type(exc).__name__}): {exc}"

    def report(self) -> TrackerReport:
        return TrackerReport(
            open=self.open,
            checked=self.checked,
            finished=self.finished,
            timed_out=self.timed_out,
            still_open=self.open - self.finished - self.timed_out,
            api_calls=self.api_calls,
            lookups_deferred=self.lookups_deferred,
            incomplete=self.incomplete,
        )


def _key(entry: LedgerEntry) -> str:
    return (entry.action_id or "").lower()


def _is_action_id(value: str) -> bool:
    try:
        validate_action_id(value)
    except InvalidIdentifierError:
        return False
    return True


def _submitted_at(entry: LedgerEntry) -> datetime:
    return entry.submitted_at or datetime.min.replace(tzinfo=UTC)


def _is_expired(entry: LedgerEntry, now: datetime) -> bool:
    """Whether Defender has surely given up delivering the entry's action."""
    if entry.submitted_at is None:
        return False
    return now - entry.submitted_at >= DELIVERY_TIMEOUT + TIMEOUT_GRACE


def _oldest_submission(entries: Iterable[LedgerEntry], now: datetime) -> datetime:
    submitted = [e.submitted_at for e in entries if e.submitted_at is not None]
    # An entry without a submission time cannot bound the window; the list then
    # reaches back as far as any action can still be open.
    return min(submitted, default=now - DELIVERY_TIMEOUT - TIMEOUT_GRACE)


def _minutes_since(start: datetime | None, end: datetime) -> float | None:
    if start is None:
        return None
    # Defender's clock may run behind ours; a finish before the start is zero.
    return round(max((end - start).total_seconds(), 0.0) / 60, 1)


def _target_fields(entry: LedgerEntry) -> dict[str, str | None]:
    return {
        "action_id": entry.action_id,
        "device_id": entry.device_id,
        "sha1": entry.sha1,
    }


def _log_run(report: TrackerReport) -> None:
    level = logging.INFO if report.incomplete is None else logging.WARNING
    logger.log(level, "tracker.run", extra=report.to_json())
