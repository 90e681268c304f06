"""The ledger in Azure Table storage, shared by every instance of the function app.

``TableLedger`` keeps the ``shared.ledger.Ledger`` protocol with the same answers
as ``MemoryLedger``, but in a table that every instance reads and writes.

Layout: one entity per target. The PartitionKey is the file's SHA-1 and the
RowKey the device id, so the per-file device cap (``devices_submitted``) is one
query inside one partition. Every ``LedgerEntry`` field is a property; the
bounded lists (alert ids, verdicts) are compact JSON strings, times are
Edm.DateTime values (read back as UTC), and ``HasOpenAction`` mirrors
``LedgerEntry.has_open_action`` so that the tracker's list of open actions is
filtered by the service.

Concurrency. Many instances may judge the same target at once (Event Hubs
delivers at least once; an alert storm names one target in many alerts). Every
write is read, decide, then a conditional write: ``create_entity`` when there
was no entity, a replace guarded by the entity's ETag when there was one. If
another instance wrote in between, the service refuses (409 or 412) and the
whole step runs again on what is now stored, up to ``MAX_WRITE_ATTEMPTS``
times; after that ``shared.ledger.LedgerConflictError`` (re-exported here)
tells the caller to try later. So of two instances claiming the same target,
exactly one is granted, and a verdict noted at the same moment as a claim
loses neither.

Failures of storage itself (unreachable, refused credentials, missing table)
are the SDK's ``azure.core.exceptions.AzureError`` and are raised as they are:
whether to retry or fail the batch is the caller's choice.

Limitations:

- ``entries()`` scans the whole table across partitions, with the open-action
  filter applied by the service; fine for a ledger of thousands of targets,
  slow for millions.
- A write whose answer is lost after the service applied it, and that the SDK
  then retries, is refused as a conflict and applied again on the new state: a
  verdict may then be listed twice, or a submission counted twice (which only
  brings ``RESUBMISSIONS_EXHAUSTED`` sooner). Both err on the safe side.
"""

from __future__ import annotations

__all__ = [
    "MAX_LAST_ERROR_CHARS",
    "MAX_WRITE_ATTEMPTS",
    "LedgerConflictError",
    "LedgerEntityError",
    "TableLedger",
    "entity_from_entry",
    "entry_from_entity",
]

import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.ledger import (
    Claim,
    LedgerConflictError,
    LedgerEntityError,
    LedgerEntry,
    VerdictRecord,
    decide_claim,
)
from shared.targets import is_sha1

logger = logging.getLogger(__name__)

# Each conflict means another instance's write went through, so the table moves
# on; ten rounds lose only to a target written by ten others in the same instant.
MAX_WRITE_ATTEMPTS = 10

# Defender's error messages are a sentence or two. The cap keeps a freak answer
# from failing the write: a string property holds at most 64 KiB.
MAX_LAST_ERROR_CHARS = 4_000

_ENTITY_VERSION = 1
_TABLE_NOT_FOUND = "TableNotFound"
_CONFLICT_PAUSE_MS = 10  # times the attempt number, at most; spreads the retries

T = TypeVar("T")


def entity_from_entry(entry: LedgerEntry) -> dict[str, Any]:
    """The Table storage entity that stores ``entry``.

    Raises:
        ValueError: an identifier is not 40 hexadecimal characters, or a time
            has no time zone (storage would read it as the machine's local time).
    """
    _check_identifier("device_id", entry.device_id)
    _check_identifier("sha1", entry.sha1)

    verdicts = [
        {
            "at": _aware("verdicts.at", record.at).isoformat(),
            "verdict": record.verdict,
            "reason": record.reason,
            "alert_id": record.alert_id,
        }
        for record in entry.verdicts
    ]
    last_error = entry.last_error
    if last_error is not None:
        last_error = last_error[:MAX_LAST_ERROR_CHARS]

    entity: dict[str, Any] = {
        "PartitionKey": entry.sha1.lower(),
        "RowKey": entry.device_id.lower(),
        "Version": _ENTITY_VERSION,
        "ActionId": entry.action_id,
        "ActionStatus": entry.action_status,
        "ActionUpdatedAt": _time("action_updated_at", entry.action_updated_at),
        "SubmittedAt": _time("submitted_at", entry.submitted_at),
        "Submissions": entry.submissions,
        "AlertIds": _compact_json(entry.alert_ids),
        "Verdicts": _compact_json(verdicts),
        "FirstSeen": _time("first_seen", entry.first_seen),
        "LastSeen": _time("last_seen", entry.last_seen),
        "LastError": last_error,
        "ClaimId": entry.claim_id,
        "ClaimedAt": _time("claimed_at", entry.claimed_at),
        "RecoverSince": _time("recover_since", entry.recover_since),
        "HasOpenAction": entry.has_open_action,
    }
    # A property set to None is not sent; with a replace, that removes it.
    return {name: value for name, value in entity.items() if value is not None}


def entry_from_entity(entity: Mapping[str, Any]) -> LedgerEntry:
    """The ledger entry an entity written by ``entity_from_entry`` stores.

    Raises:
        LedgerEntityError: a property is missing or not what this release
            writes; the message names the property.
    """
    properties = _Properties(entity)
    properties.check_version()
    return LedgerEntry(
        device_id=properties.identifier("RowKey"),
        sha1=properties.identifier("PartitionKey"),
        action_id=properties.optional_text("ActionId"),
        action_status=properties.optional_text("ActionStatus"),
        action_updated_at=properties.optional_time("ActionUpdatedAt"),
        submitted_at=properties.optional_time("SubmittedAt"),
        submissions=properties.count("Submissions"),
        alert_ids=properties.alert_ids("AlertIds"),
        verdicts=properties.verdicts("Verdicts"),
        first_seen=properties.optional_time("FirstSeen"),
        last_seen=properties.optional_time("LastSeen"),
        last_error=properties.optional_text("LastError"),
        claim_id=properties.optional_text("ClaimId"),
        claimed_at=properties.optional_time("ClaimedAt"),
        recover_since=properties.optional_time("RecoverSince"),
    )


@dataclass(frozen=True, slots=True)
class _Stored:
    """An entry as read, with the ETag a conditional write must match."""

    entry: LedgerEntry
    etag: str


class TableLedger:
    """The ledger in one Azure table; safe to share between processes and threads.

    Identifiers are 40 hexadecimal characters and are stored in lower case;
    anything else raises ``ValueError`` before it reaches a URL or a filter.
    Times must carry a time zone.
    """

    def __init__(self, table: TableClient) -> None:
        self._table = table

    @classmethod
    def create(cls, table_service: TableServiceClient, name: str) -> TableLedger:
        """A ledger in the table ``name``, created if it does not exist."""
        return cls(table_service.create_table_if_not_exists(name))

    def find(self, device_id: str, sha1: str) -> LedgerEntry | None:
        device_id, sha1 = _keys(device_id, sha1)
        stored = self._read(device_id, sha1)
        return stored.entry if stored else None

    def devices_submitted(self, sha1: str, *, since: datetime) -> int:
        _check_identifier("sha1", sha1)
        found = self._table.query_entities(
            "PartitionKey eq @sha1 and SubmittedAt ge @since",
            parameters={"sha1": sha1.lower(), "since": _aware("since", since)},
            select=["RowKey"],
        )
        return len({entity["RowKey"] for entity in found})

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
        device_id, sha1 = _keys(device_id, sha1)
        record = VerdictRecord(_aware("at", at), verdict, reason, alert_id)

        def note(entry: LedgerEntry | None) -> tuple[LedgerEntry, None]:
            entry = entry or LedgerEntry(device_id=device_id, sha1=sha1)
            entry.note_verdict(record)
            return entry, None

        self._update(device_id, sha1, "record_verdict", note)

    def claim(
        self,
        *,
        device_id: str,
        sha1: str,
        alert_id: str,
        at: datetime,
        max_submissions: int,
    ) -> Claim:
        device_id, sha1 = _keys(device_id, sha1)
        at = _aware("at", at)

        def take(entry: LedgerEntry | None) -> tuple[LedgerEntry | None, Claim]:
            claim = decide_claim(
                dataclasses.replace(entry) if entry else None,
                device_id=device_id,
                sha1=sha1,
                now=at,
                max_submissions=max_submissions,
            )
            if not claim.granted:
                return None, claim

            entry = entry or LedgerEntry(device_id=device_id, sha1=sha1)
            entry.take_claim(claim, alert_id=alert_id, at=at)
            return entry, claim

        return self._update(device_id, sha1, "claim", take)

    def record_submission(
        self,
        claim: Claim,
        *,
        action_id: str | None,
        action_status: str | None,
        at: datetime,
    ) -> LedgerEntry:
        device_id, sha1 = _keys(claim.device_id, claim.sha1)
        at = _aware("at", at)

        def record(entry: LedgerEntry | None) -> tuple[LedgerEntry, LedgerEntry]:
            entry = entry or LedgerEntry(device_id=device_id, sha1=sha1)
            entry.note_submission(
                claim, action_id=action_id, action_status=action_status, at=at
            )
            return entry, dataclasses.replace(entry)

        return self._update(device_id, sha1, "record_submission", record)

    def record_refusal(self, claim: Claim, *, error: str, at: datetime) -> LedgerEntry:
        device_id, sha1 = _keys(claim.device_id, claim.sha1)
        at = _aware("at", at)

        def record(entry: LedgerEntry | None) -> tuple[LedgerEntry, LedgerEntry]:
            entry = entry or LedgerEntry(device_id=device_id, sha1=sha1)
            entry.note_refusal(claim, error=error[:MAX_LAST_ERROR_CHARS], at=at)
            return entry, dataclasses.replace(entry)

        return self._update(device_id, sha1, "record_refusal", record)

    def release(self, claim: Claim, *, maybe_sent: bool, at: datetime) -> None:
        device_id, sha1 = _keys(claim.device_id, claim.sha1)
        at = _aware("at", at)

        def end(entry: LedgerEntry | None) -> tuple[LedgerEntry | None, None]:
            # A claim that is no longer the current one has nothing left to end.
            if entry is None or not entry.release_claim(
                claim, maybe_sent=maybe_sent, at=at
            ):
                return None, None
            return entry, None

        self._update(device_id, sha1, "release", end)

    def record_action_status(
        self,
        *,
        device_id: str,
        sha1: str,
        action_id: str,
        status: str,
        at: datetime,
    ) -> LedgerEntry | None:
        device_id, sha1 = _keys(device_id, sha1)
        at = _aware("at", at)

        def follow(
            entry: LedgerEntry | None,
        ) -> tuple[LedgerEntry | None, LedgerEntry | None]:
            # News of an action that a newer submission replaced is stale.
            if entry is None or not entry.note_action_status(
                action_id=action_id, status=status, at=at
            ):
                return None, None
            return entry, dataclasses.replace(entry)

        return self._update(device_id, sha1, "record_action_status", follow)

    def entries(self, *, open_only: bool = False) -> list[LedgerEntry]:
        """Every entry, or those with an open machine action.

        Both scan the table across partitions; ``open_only`` is a service-side
        filter on ``HasOpenAction``. An entity that cannot be read is left out
        and logged as an error (one bad record must not stop the tracker).
        """
        if open_only:
            found = self._table.query_entities("HasOpenAction eq true")
        else:
            found = self._table.list_entities()
        return [
            entry
            for entry in _readable(found)
            if entry.has_open_action or not open_only
        ]

    def _read(self, device_id: str, sha1: str) -> _Stored | None:
        try:
            entity = self._table.get_entity(partition_key=sha1, row_key=device_id)
        except ResourceNotFoundError as exc:
            if _is_missing_table(exc):
                raise
            return None

        etag = entity.metadata.get("etag")
        if not etag:
            raise LedgerEntityError(f"ledger entity {sha1}/{device_id} has no ETag")
        return _Stored(entry_from_entity(entity), etag)

    def _write(self, entry: LedgerEntry, stored: _Stored | None) -> None:
        entity = entity_from_entry(entry)
        if stored is None:
            self._table.create_entity(entity)
        else:
            self._table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=stored.etag,
                match_condition=MatchConditions.IfNotModified,
            )

    def _update(
        self,
        device_id: str,
        sha1: str,
        operation: str,
        change: Callable[[LedgerEntry | None], tuple[LedgerEntry | None, T]],
    ) -> T:
        """Read the entry, apply ``change``, write it back unless another did first.

        ``change`` gets the stored entry (None when there is none) and returns
        the entry to write (None: write nothing) and the caller's answer. It runs
        again on the new state after each conflict.
        """
        for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
            stored = self._read(device_id, sha1)
            entry, answer = change(stored.entry if stored else None)
            if entry is None:
                return answer

            try:
                self._write(entry, stored)
            except (ResourceExistsError, ResourceModifiedError) as exc:
                _log_conflict(device_id, sha1, operation, attempt, exc)
            except ResourceNotFoundError as exc:
                # Only if the entity was deleted since it was read.
                if _is_missing_table(exc):
                    raise
                _log_conflict(device_id, sha1, operation, attempt, exc)
            else:
                return answer

            if attempt < MAX_WRITE_ATTEMPTS:
                _pause(attempt)

        raise LedgerConflictError(
            f"the ledger entry of device {device_id} and file {sha1} changed under "
            f"each of {MAX_WRITE_ATTEMPTS} attempts to {operation}; try again later"
        )


def _readable(entities: Iterable[Mapping[str, Any]]) -> Iterator[LedgerEntry]:
    for entity in entities:
        try:
            yield entry_from_entity(entity)
        except LedgerEntityError as exc:
            logger.error(
                "ledger.entity_unreadable",
                extra={
                    "sha1": str(entity.get("PartitionKey")),
                    "device_id": str(entity.get("RowKey")),
                    "reason": str(exc),
                },
            )


def _log_conflict(
    device_id: str, sha1: str, operation: str, attempt: int, exc: Exception
) -> None:
    logger.debug(
        "ledger.write_conflict",
        extra={
            "device_id": device_id,
            "sha1": sha1,
            "operation": operation,
            "attempt": attempt,
            "conflict": type(exc).__name__,
        },
    )


def _pause(attempt: int) -> None:
    # A short random pause, so that instances which collided do not collide again.
    time.sleep(secrets.randbelow(_CONFLICT_PAUSE_MS * attempt + 1) / 1000)


def _is_missing_table(exc: ResourceNotFoundError) -> bool:
    """Whether the table is missing, rather than the entity (both answer 404)."""
    # The SDK sets error_code to a str enum, which equals the service's code.
    return bool(getattr(exc, "error_code", None) == _TABLE_NOT_FOUND)


def _keys(device_id: str, sha1: str) -> tuple[str, str]:
    _check_identifier("device_id", device_id)
    _check_identifier("sha1", sha1)
    return device_id.lower(), sha1.lower()


def _check_identifier(name: str, value: str) -> None:
    if not is_sha1(value):
        raise ValueError(f"{name} must be 40 hexadecimal characters")


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a time with a time zone")
    return value


def _time(name: str, value: datetime | None) -> datetime | None:
    return None if value is None else _aware(name, value)


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Properties:
    """Typed reads from one entity, each naming the property it refuses."""

    def __init__(self, entity: Mapping[str, Any]) -> None:
        self._entity = entity
        where = f"{entity.get('PartitionKey')!s:.40}/{entity.get('RowKey')!s:.40}"
        self._where = f"ledger entity {where}"

    def check_version(self) -> None:
        version = self._entity.get("Version")
        if version != _ENTITY_VERSION:
            raise LedgerEntityError(
                f"{self._where}: Version is {version!r:.20}; this release reads "
                f"{_ENTITY_VERSION}"
            )

    def identifier(self, name: str) -> str:
        value = self._entity.get(name)
        if not is_sha1(value):
            raise self._error(name, "40 hexadecimal characters")
        return str(value).lower()

    def optional_text(self, name: str) -> str | None:
        value = self._entity.get(name)
        if value is not None and not isinstance(value, str):
            raise self._error(name, "a string")
        return value

    def optional_time(self, name: str) -> datetime | None:
        value = self._entity.get(name)
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise self._error(name, "an Edm.DateTime")
        return _plain_utc(value)

    def count(self, name: str) -> int:
        value = self._entity.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self._error(name, "a whole number, zero or more")
        return int(value)

    def alert_ids(self, name: str) -> list[str]:
        value = self._json(name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._error(name, "a JSON list of strings")
        return value

    def verdicts(self, name: str) -> list[VerdictRecord]:
        value = self._json(name)
        if not isinstance(value, list):
            raise self._error(name, "a JSON list of verdicts")
        return [self._verdict(name, item) for item in value]

    def _verdict(self, name: str, item: object) -> VerdictRecord:
        fields = ("at", "verdict", "reason", "alert_id")
        if not isinstance(item, dict) or not all(
            isinstance(item.get(field), str) for field in fields
        ):
            raise self._error(name, "verdicts with at, verdict, reason and alert_id")
        try:
            at = datetime.fromisoformat(item["at"])
        except ValueError:
            raise self._error(name, "verdicts whose time is ISO 8601") from None
        if at.tzinfo is None:
            raise self._error(name, "verdicts whose time has a time zone")
        return VerdictRecord(
            at=at.astimezone(UTC),
            verdict=item["verdict"],
            reason=item["reason"],
            alert_id=item["alert_id"],
        )

    def _json(self, name: str) -> object:
        value = self._entity.get(name)
        if not isinstance(value, str):
            raise self._error(name, "a JSON string")
        try:
            return json.loads(value)
        except ValueError:
            raise self._error(name, "valid JSON") from None

    def _error(self, name: str, expected: str) -> LedgerEntityError:
        return LedgerEntityError(f"{self._where}: {name} must be {expected}")


def _plain_utc(value: datetime) -> datetime:
    """The same instant as a plain ``datetime`` in UTC.

    The SDK reads times as its own ``datetime`` subclass; a plain value keeps
    entries equal, copyable and printable like those of ``MemoryLedger``.
    """
    utc = value.astimezone(UTC)
    return datetime(
        utc.year,
        utc.month,
        utc.day,
        utc.hour,
        utc.minute,
        utc.second,
        utc.microsecond,
        tzinfo=UTC,
    )
