"""Machine actions: what Defender returns for a submitted target, and how to find them.

A machine action has an id and a status that moves from Pending or InProgress to a
final one (Succeeded, Failed, TimeOut, Cancelled). A status Defender adds later is
kept as it was spelled (``raw_status``) and read as ``UNKNOWN``, never a crash.
Listing uses OData ``$filter`` on the properties Defender documents as filterable;
``relatedFileInfo`` is not one of them, so the file is compared here, by the caller.
"""

from __future__ import annotations

__all__ = [
    "MachineAction",
    "MachineActionStatus",
    "MachineActionType",
    "Submission",
    "SubmissionOutcome",
    "build_machine_action_filter",
    "odata_quote",
    "parse_machine_action",
]

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from shared.defender_models import (
    as_integer,
    as_lower,
    as_object,
    as_text,
    as_timestamp,
    first_present,
    required_text,
)


class MachineActionStatus(StrEnum):
    """The status of a machine action, as Defender documents it.

    ``UNKNOWN`` stands for a value Defender added after this list was written;
    the action's ``raw_status`` keeps the original spelling.
    """

    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMEOUT = "TimeOut"
    CANCELLED = "Cancelled"
    UNKNOWN = "Unknown"

    @property
    def is_final(self) -> bool:
        """Whether the action can no longer change (an unknown status is not final)."""
        return self in _FINAL_STATUSES

    @property
    def is_open(self) -> bool:
        """Whether the action is still waiting for, or running on, its device."""
        return self in (MachineActionStatus.PENDING, MachineActionStatus.IN_PROGRESS)

    @classmethod
    def parse(cls, raw: object) -> MachineActionStatus:
        """The status named by ``raw`` in any letter case; UNKNOWN otherwise."""
        if isinstance(raw, str):
            return _STATUS_BY_LOWER.get(raw.strip().lower(), cls.UNKNOWN)
        return cls.UNKNOWN


_FINAL_STATUSES = frozenset(
    {
        MachineActionStatus.SUCCEEDED,
        MachineActionStatus.FAILED,
        MachineActionStatus.TIMEOUT,
        MachineActionStatus.CANCELLED,
    }
)
_STATUS_BY_LOWER = {status.value.lower(): status for status in MachineActionStatus}
# Some integrations spell the documented "Cancelled" with one l.
_STATUS_BY_LOWER["canceled"] = MachineActionStatus.CANCELLED


class MachineActionType(StrEnum):
    """The machine action types Defender documents; used to filter lists."""

    RUN_ANTIVIRUS_SCAN = "RunAntiVirusScan"
    OFFBOARD = "Offboard"
    LIVE_RESPONSE = "LiveResponse"
    COLLECT_INVESTIGATION_PACKAGE = "CollectInvestigationPackage"
    ISOLATE = "Isolate"
    UNISOLATE = "Unisolate"
    STOP_AND_QUARANTINE_FILE = "StopAndQuarantineFile"
    RESTRICT_CODE_EXECUTION = "RestrictCodeExecution"
    UNRESTRICT_CODE_EXECUTION = "UnrestrictCodeExecution"


@dataclass(frozen=True, slots=True)
class MachineAction:
    """What Defender returns for a submitted target, and later its progress."""

    id: str
    action_type: str
    status: MachineActionStatus
    raw_status: str
    machine_id: str | None
    file_identifier: str | None = None
    file_identifier_type: str | None = None
    requestor: str | None = None
    requestor_comment: str | None = None
    created: datetime | None = None
    last_updated: datetime | None = None
    computer_dns_name: str | None = None
    error_hresult: int | None = None
    cancellation_comment: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    def concerns_file(self, sha1: str) -> bool:
        """Whether this action names the file ``sha1`` (any letter case)."""
        return (
            self.file_identifier is not None
            and self.file_identifier.strip().lower() == sha1.lower()
        )


class SubmissionOutcome(StrEnum):
    """What a StopAndQuarantineFile call achieved."""

    CREATED = "created"
    ALREADY_IN_PROGRESS = "already_in_progress"
    RECOVERED_AFTER_UNKNOWN = "recovered_after_unknown"


@dataclass(frozen=True, slots=True)
class Submission:
    """The result of submitting a target: how it went, and the action if known.

    ``action`` is None only for ``already_in_progress`` when the open action could
    not be found in the list of machine actions.
    """

    outcome: SubmissionOutcome
    action: MachineAction | None


def parse_machine_action(document: object) -> MachineAction:
    """A machine action from its JSON object."""
    fields = as_object(document, "machine action")
    related = fields.get("relatedFileInfo")
    related = related if isinstance(related, Mapping) else {}
    raw_status = as_text(fields.get("status")) or ""

    return MachineAction(
        id=required_text(fields, "id", "machine action"),
        action_type=as_text(fields.get("type")) or "",
        status=MachineActionStatus.parse(raw_status),
        raw_status=raw_status,
        machine_id=as_lower(as_text(fields.get("machineId"))),
        file_identifier=as_lower(as_text(related.get("fileIdentifier"))),
        file_identifier_type=as_text(related.get("fileIdentifierType")),
        requestor=as_text(fields.get("requestor")),
        requestor_comment=as_text(fields.get("requestorComment")),
        created=as_timestamp(fields.get("creationDateTimeUtc")),
        last_updated=as_timestamp(
            first_present(fields, "lastUpdateDateTimeUtc", "lastUpdateTimeUtc")
        ),
        computer_dns_name=as_text(fields.get("computerDnsName")),
        error_hresult=as_integer(fields.get("errorHResult")),
        cancellation_comment=as_text(fields.get("cancellationComment")),
    )


def odata_quote(value: str) -> str:
    """``value`` as an OData string literal: single-quoted, inner quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def build_machine_action_filter(
    *,
    machine_id: str | None = None,
    action_type: MachineActionType | None = None,
    statuses: Sequence[MachineActionStatus] = (),
    requestor: str | None = None,
    created_since: datetime | None = None,
) -> str | None:
    """The ``$filter`` expression for a list of machine actions; None for no filter.

    Only properties Defender documents as filterable are used (machineId, type,
    status, requestor, creationDateTimeUtc). Every value is quoted here; the
    client also validates ``machine_id`` and URL-encodes the whole expression.
    """
    clauses: list[str] = []
    if machine_id is not None:
        clauses.append("machineId eq " + odata_quote(machine_id))
    if action_type is not None:
        clauses.append("type eq " + odata_quote(MachineActionType(action_type).value))

    chosen = [MachineActionStatus(status) for status in statuses]
    if MachineActionStatus.UNKNOWN in chosen:
        raise ValueError("statuses: Unknown is not a status Defender can filter on")
    if len(chosen) == 1:
        clauses.append("status eq " + odata_quote(chosen[0].value))
    elif chosen:
        either = " or ".join("status eq " + odata_quote(s.value) for s in chosen)
        clauses.append(f"({either})")

    if requestor is not None:
        clauses.append("requestor eq " + odata_quote(requestor))
    if created_since is not None:
        clauses.append("creationDateTimeUtc ge " + _odata_datetime(created_since))

    return " and ".join(clauses) or None


def _odata_datetime(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("created_since must carry a time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
