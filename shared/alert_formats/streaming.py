"""Defender XDR streaming API records, as Event Hubs delivers them.

A message is ``{"records": [...]}``; each record has a ``category`` (the Advanced
Hunting table, prefixed ``AdvancedHunting-``) and the row in ``properties``
(``shared/defender-api.md`` section 7). Two tables matter:

- ``AlertEvidence``: one row per entity of an alert (File, Process, Machine, User,
  Ip...), sharing the ``AlertId``. File and Process rows name files; the device may
  be on the row (``DeviceId``), only inside ``AdditionalFields`` (a process's
  ``Host`` or its ``ImageFile.Host``, often as a ``$ref``), or only on another row
  of the same alert, typically a Machine row.
- ``AlertInfo``: one row per alert; its title, severity, category and sources
  take precedence over the copies on evidence rows of the same message.

Rows of one alert are correlated within one message only. Records of any other
table (``DeviceEvents``...) are legitimately on the same stream when a tenant
streams them to this hub; they are skipped without a rejection and counted in a
DEBUG record.

JSON held in string columns: ``AdditionalFields`` is decoded only on File, Process
and Machine rows, where it can name a device or a hash; a malformed one there is
rejected as that field (``records[3].properties.AdditionalFields``) while the
row's own columns are still read. ``Categories`` only supplies the alert's category
when ``AlertInfo`` does not, so a malformed one is ignored. ``AttackTechniques`` is
not read: nothing downstream uses it.

Limitations:
    Evidence whose device arrives only in a later message of the stream (a Machine
    row sent apart from the File row) has no device here and is rejected as
    ``no_device``; nothing carries rows over from one message to the next.
"""

from __future__ import annotations

__all__ = ["is_record", "read_records"]

import logging
from collections.abc import Mapping, Sequence

from shared.alert_formats._common import (
    AlertDraft,
    EvidenceDraft,
    Reading,
    device_facts,
    new_alert,
)
from shared.alert_formats._entities import EntityGraph, file_hashes
from shared.alert_formats._json import JsonRejected, decode_text
from shared.alert_formats._values import at, is_absent, mapping, text
from shared.targets import Alert, AlertFormat, EvidenceKind

logger = logging.getLogger(__name__)

_EVIDENCE = "advancedhunting-alertevidence"
_INFO = "advancedhunting-alertinfo"


def is_record(item: Mapping[str, object]) -> bool:
    """Whether ``item`` looks like a streaming record (of any table)."""
    return isinstance(item.get("category"), str) and "properties" in item


def read_records(
    records: Sequence[tuple[str, Mapping[str, object]]], reading: Reading
) -> list[AlertDraft]:
    """The alerts of one message's records, each with its positions."""
    drafts: dict[str, AlertDraft] = {}
    infos: dict[str, Mapping[str, object]] = {}
    first_rows: dict[str, Mapping[str, object]] = {}
    skipped = 0

    for position, record in records:
        category = (text(record.get("category")) or "").lower()
        if category not in (_EVIDENCE, _INFO):
            skipped += 1
            continue

        row = mapping(record.get("properties"))
        if row is None:
            reading.reject("invalid_record", position, "a record without properties")
            continue

        alert_id = reading.alert_id(
            row.get("AlertId"), at(position, "properties.AlertId")
        )
        if alert_id is None:
            continue

        draft = drafts.setdefault(
            alert_id, AlertDraft(Alert(id=alert_id, format=AlertFormat.STREAMING))
        )
        if category == _INFO:
            infos.setdefault(alert_id, row)
        else:
            first_rows.setdefault(alert_id, row)
            _read_evidence_row(draft, row, position, reading)

    if skipped:
        logger.debug(
            "alert_formats.records_skipped",
            extra={"source": reading.source, "skipped": skipped},
        )

    for alert_id, draft in drafts.items():
        draft.alert = _alert(
            alert_id, infos.get(alert_id, {}), first_rows.get(alert_id, {})
        )
    return list(drafts.values())


def _alert(
    alert_id: str, info: Mapping[str, object], row: Mapping[str, object]
) -> Alert:
    def stated(column: str) -> object:
        return info.get(column) if not is_absent(info.get(column)) else row.get(column)

    return new_alert(
        alert_id,
        AlertFormat.STREAMING,
        title=stated("Title"),
        severity=stated("Severity"),
        detection_source=stated("DetectionSource"),
        service_source=stated("ServiceSource"),
        category=text(info.get("Category")) or _first_category(row.get("Categories")),
        created=stated("Timestamp"),
    )


def _first_category(value: object) -> str | None:
    if isinstance(value, str):
        try:
            value = decode_text(value)
        except JsonRejected:
            return None
    if isinstance(value, list) and value:
        return text(value[0])
    return None


def _read_evidence_row(
    draft: AlertDraft, row: Mapping[str, object], position: str, reading: Reading
) -> None:
    entity = (text(row.get("EntityType")) or "").lower()
    columns = at(position, "properties")
    device_id = reading.device_id(row.get("DeviceId"), at(columns, "DeviceId"))
    if device_id is not None:
        draft.add_device(device_id)

    if entity not in ("file", "process", "machine"):
        return

    fields_position = at(columns, "AdditionalFields")
    details = mapping(
        reading.embedded_json(row.get("AdditionalFields"), fields_position)
    )
    graph = EntityGraph(details)

    if entity == "machine":
        # A Machine row's AdditionalFields is the host entity itself.
        if details is not None:
            _read_host(draft, details, reading, fields_position, device_id=device_id)
        return

    image = details if entity == "file" else graph.resolve(_get(details, "ImageFile"))
    host_id = _evidence_host(
        draft, details, image, graph=graph, reading=reading, position=fields_position
    )
    sha1, sha256 = _row_hashes(
        row, image, graph=graph, reading=reading, position=position
    )
    if sha1 is None:
        return

    own_device = device_id or host_id
    draft.evidence.append(
        EvidenceDraft(
            position=position,
            kind=EvidenceKind.FILE if entity == "file" else EvidenceKind.PROCESS,
            sha1=sha1,
            device_ids=(own_device,) if own_device is not None else (),
            role=text(row.get("EvidenceRole")),
            file_name=text(row.get("FileName")) or text(_get(image, "Name")),
            folder_path=text(row.get("FolderPath")) or text(_get(image, "Directory")),
            sha256=sha256,
            file_publisher=text(_get(image, "Publisher")),
        )
    )


def _row_hashes(
    row: Mapping[str, object],
    image: Mapping[str, object] | None,
    *,
    graph: EntityGraph,
    reading: Reading,
    position: str,
) -> tuple[str | None, str | None]:
    # The SHA1 column is the row's own statement; the hashes inside
    # AdditionalFields are read only when the column is empty.
    sha256 = text(row.get("SHA256"))
    if not is_absent(row.get("SHA1")):
        sha1 = reading.sha1(row.get("SHA1"), at(position, "properties.SHA1"))
        return sha1, sha256
    if image is None:
        return None, sha256

    fields_position = at(position, "properties.AdditionalFields")
    sha1, listed_sha256 = file_hashes(graph, image, reading, fields_position)
    return sha1, sha256 or listed_sha256


def _evidence_host(
    draft: AlertDraft,
    details: Mapping[str, object] | None,
    image: Mapping[str, object] | None,
    *,
    graph: EntityGraph,
    reading: Reading,
    position: str,
) -> str | None:
    # A process states its host on itself or on its image file. The host of its
    # parent process is never read: the parent is not the evidence.
    for owner in (details, image):
        host = graph.resolve(_get(owner, "Host"))
        if host is not None:
            return _read_host(draft, host, reading, position)
    return None


def _read_host(
    draft: AlertDraft,
    host: Mapping[str, object],
    reading: Reading,
    position: str,
    *,
    device_id: str | None = None,
) -> str | None:
    host_id = device_id or reading.device_id(
        host.get("MachineId"), at(position, "MachineId")
    )
    if host_id is None:
        return None

    draft.add_device(
        host_id,
        device_facts(
            host_id,
            os_platform=host.get("OSFamily"),
            os_version=host.get("OSVersion"),
            health_status=host.get("HealthStatus"),
            onboarding_status=host.get("OnboardingStatus"),
            av_status=host.get("AvStatus"),
            device_name=host.get("HostName"),
        ),
    )
    return host_id


def _get(entity: Mapping[str, object] | None, key: str) -> object:
    return entity.get(key) if entity is not None else None
