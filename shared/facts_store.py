"""Device and file facts kept in Azure Table storage, shared by every instance.

``FactsCache`` remembers facts in one process; ``TableFactsStore`` is its second
level, which every instance of the function app reads, so a device looked up by
one instance is not looked up again by the next one while the facts are fresh.

Layout: PartitionKey ``device`` or ``file``, RowKey the lower-case device id or
SHA-1, ``Facts`` the JSON document of ``shared.codec`` (or JSON ``null`` when
Defender has no record, which is remembered too), ``ExpiresAt`` the time after
which the entity reads as not found. Writes replace unconditionally: for a
cache, the latest answer is as good as any.

It is a cache, so a stored document that cannot be read (a bad document, an
older or newer format) is logged as a warning and read as not found: the API is
asked again and the answer overwrites it. Failures of storage itself are the
SDK's ``azure.core.exceptions.AzureError`` and are raised; ``FactsCache``
decides to carry on without the store.

Limitation: expired entities are not deleted; each stays until the same device
or file is stored again. The table holds at most one entity per device and file
ever looked up, which the tenant's inventory bounds.
"""

from __future__ import annotations

__all__ = ["FactsStore", "TableFactsStore"]

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.codec import (
    decode_device_facts,
    decode_file_facts,
    encode_device_facts,
    encode_file_facts,
)
from shared.targets import DeviceFacts, FileFacts, is_sha1

logger = logging.getLogger(__name__)

_DEVICE = "device"
_FILE = "file"
_TABLE_NOT_FOUND = "TableNotFound"
_IDENTIFIER_FIELDS = {_DEVICE: "device_id", _FILE: "sha1"}  # as every log names them

T = TypeVar("T", DeviceFacts, FileFacts)


class FactsStore(Protocol):
    """A shared place for facts, with expiry.

    ``get_*`` answers (found, value): found False means ask Defender; found True
    with value None means Defender had no record when last asked.
    """

    def get_device(self, device_id: str) -> tuple[bool, DeviceFacts | None]: ...

    def put_device(
        self, device_id: str, facts: DeviceFacts | None, ttl_seconds: float
    ) -> None: ...

    def get_file(self, sha1: str) -> tuple[bool, FileFacts | None]: ...

    def put_file(
        self, sha1: str, facts: FileFacts | None, ttl_seconds: float
    ) -> None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TableFactsStore:
    """Facts in one Azure table, each with its expiry time.

    Identifiers must be 40 hexadecimal characters; anything else raises
    ``ValueError`` before it reaches a URL.
    """

    def __init__(
        self, table: TableClient, *, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self._table = table
        self._clock = clock

    @classmethod
    def create(
        cls,
        table_service: TableServiceClient,
        name: str,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> TableFactsStore:
        """A store in the table ``name``, created if it does not exist."""
        return cls(table_service.create_table_if_not_exists(name), clock=clock)

    def get_device(self, device_id: str) -> tuple[bool, DeviceFacts | None]:
        return self._get(
            _DEVICE, device_id, decode_device_facts, lambda facts: facts.device_id
        )

    def put_device(
        self, device_id: str, facts: DeviceFacts | None, ttl_seconds: float
    ) -> None:
        document = encode_device_facts(facts) if facts is not None else None
        self._put(_DEVICE, device_id, document, ttl_seconds)

    def get_file(self, sha1: str) -> tuple[bool, FileFacts | None]:
        return self._get(_FILE, sha1, decode_file_facts, lambda facts: facts.sha1)

    def put_file(self, sha1: str, facts: FileFacts | None, ttl_seconds: float) -> None:
        document = encode_file_facts(facts) if facts is not None else None
        self._put(_FILE, sha1, document, ttl_seconds)

    def _get(
        self,
        kind: str,
        identifier: str,
        decode: Callable[[object], T],
        identity: Callable[[T], str],
    ) -> tuple[bool, T | None]:
        key = _row_key(identifier)
        try:
            entity = self._table.get_entity(partition_key=kind, row_key=key)
        except ResourceNotFoundError as exc:
            if _is_missing_table(exc):
                raise
            return False, None

        expires_at = entity.get("ExpiresAt")
        if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
            return _unreadable(kind, key, "ExpiresAt is not a time")
        if self._clock() >= expires_at:
            return False, None

        text = entity.get("Facts")
        if not isinstance(text, str):
            return _unreadable(kind, key, "Facts is not a string")
        try:
            document = json.loads(text)
            facts = None if document is None else decode(document)
        except ValueError as exc:  # CodecError and JSONDecodeError are ValueErrors
            return _unreadable(kind, key, str(exc))

        if facts is not None and identity(facts) != key:
            return _unreadable(kind, key, f"Facts describe another {kind}")
        return True, facts

    def _put(
        self,
        kind: str,
        identifier: str,
        document: dict[str, Any] | None,
        ttl_seconds: float,
    ) -> None:
        key = _row_key(identifier)
        if ttl_seconds <= 0:
            return

        self._table.upsert_entity(
            {
                "PartitionKey": kind,
                "RowKey": key,
                "Facts": json.dumps(document, separators=(",", ":")),
                "ExpiresAt": self._clock() + timedelta(seconds=ttl_seconds),
            },
            mode=UpdateMode.REPLACE,
        )


def _unreadable(kind: str, key: str, reason: str) -> tuple[bool, None]:
    """Log a stored document that cannot be used; it reads as not found."""
    logger.warning(
        "facts_store.unreadable",
        extra={"kind": kind, _IDENTIFIER_FIELDS[kind]: key, "reason": reason},
    )
    return False, None


def _is_missing_table(exc: ResourceNotFoundError) -> bool:
    """Whether the table is missing, rather than the entity (both answer 404)."""
    # The SDK sets error_code to a str enum, which equals the service's code.
    return bool(getattr(exc, "error_code", None) == _TABLE_NOT_FOUND)


def _row_key(identifier: str) -> str:
    key = identifier.strip().lower()
    if not is_sha1(key):
        raise ValueError("a device id or SHA-1 must be 40 hexadecimal characters")
    return key
