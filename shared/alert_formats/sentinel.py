"""Microsoft Sentinel ``SecurityAlert`` rows raised by Defender for Endpoint.

``Entities`` is a JSON array in a string, written with ``$id``/``$ref`` references
(``shared/defender-api.md`` section 8). Every entity appears in the array, nested
ones included, so the array alone does not say which file is the evidence and
which is only the image of a parent process. The reading is therefore:

- a host with an ``MdatpDeviceId`` is a device of the alert, with its
  ``OSFamily``, ``OSVersion``, ``HealthStatus``, ``OnboardingStatus`` and
  ``AvStatus`` as facts (``OSFamily`` is coarser than Defender's ``osPlatform``:
  "Windows", not "Windows10");
- a process that is some process's ``ParentProcess`` is a parent, and names no
  target; any other process names its ``ImageFile`` as process evidence;
- a file that is a process's ``ImageFile`` is read only through that process (so a
  parent's image is never a target); any other file is file evidence;
- the device of a file or process is its ``Host`` when that host has an
  ``MdatpDeviceId``, else every device of the alert.

The alert id is Defender's own ("da..."), so the ledger and the machine-action
comment name the alert Defender knows: ``VendorOriginalId`` when it already has that
form, else the last segment of ``AlertLink`` when that has it. ``SystemAlertId``
(Sentinel's GUID) is the id only when neither does, and ``VendorOriginalId`` as it
is when there is no ``SystemAlertId`` either; the ids not chosen are kept in
``alias_ids``. "da" + ``VendorOriginalId`` also matches the one sample seen, but that
relation is not documented, so no id is built from it.

Limitations:
    A process that is both a parent and itself the evidence of the alert is read as
    a parent and names no target; Sentinel's flattened entities cannot tell the two
    apart, and skipping is the safe side.
"""

from __future__ import annotations

__all__ = ["is_row", "read_row"]

from collections.abc import Mapping
from urllib.parse import urlsplit

from shared.alert_formats._common import (
    AlertDraft,
    EvidenceDraft,
    Reading,
    device_facts,
    new_alert,
)
from shared.alert_formats._entities import EntityGraph, entity_type, file_hashes
from shared.alert_formats._values import at, items, text
from shared.targets import AlertFormat, EvidenceKind

_DEFENDER_PREFIX = "da"


def is_row(item: Mapping[str, object]) -> bool:
    """Whether ``item`` looks like a SecurityAlert row."""
    if "SystemAlertId" in item or "VendorOriginalId" in item:
        return True
    return "Entities" in item and ("AlertName" in item or "ProviderName" in item)


def read_row(
    item: Mapping[str, object], position: str, reading: Reading
) -> AlertDraft | None:
    """One SecurityAlert row and the entities it names; None without an alert id."""
    ids = _alert_ids(item)
    if not ids:
        # Let the reader word the rejection the same way as for other formats.
        reading.alert_id(item.get("SystemAlertId"), at(position, "SystemAlertId"))
        return None
    alert_id = reading.alert_id(ids[0][1], at(position, ids[0][0]))
    if alert_id is None:
        return None

    draft = AlertDraft(
        new_alert(
            alert_id,
            AlertFormat.SENTINEL,
            title=item.get("AlertName") or item.get("DisplayName"),
            severity=item.get("AlertSeverity"),
            status=item.get("Status"),
            service_source=item.get("ProductName"),
            created=item.get("TimeGenerated") or item.get("StartTime"),
            alias_ids=tuple(
                dict.fromkeys(value for _, value in ids[1:] if value != ids[0][1])
            ),
        )
    )

    entities_position = at(position, "Entities")
    entities = reading.embedded_json(item.get("Entities"), entities_position)
    _read_entities(draft, entities, entities_position, reading)
    return draft


def _alert_ids(item: Mapping[str, object]) -> list[tuple[str, str]]:
    """(column, id) pairs: the alert's id first, then its other ids."""
    vendor = text(item.get("VendorOriginalId"))
    linked = _link_id(item.get("AlertLink"))
    system = text(item.get("SystemAlertId"))

    defender = [
        (column, value)
        for column, value in (("VendorOriginalId", vendor), ("AlertLink", linked))
        if value and value.lower().startswith(_DEFENDER_PREFIX)
    ]
    others = [("SystemAlertId", system), ("VendorOriginalId", vendor)]
    return [*defender[:1], *((column, value) for column, value in others if value)]


def _link_id(value: object) -> str | None:
    """The last path segment of an alert link, where the portal puts the id."""
    link = text(value)
    if link is None:
        return None
    try:
        path = urlsplit(link).path
    except ValueError:
        return None
    return text(path.rstrip("/").rsplit("/", 1)[-1])


def _read_entities(
    draft: AlertDraft, entities: object, position: str, reading: Reading
) -> None:
    graph = EntityGraph(entities)
    parents, images = _process_roles(graph)
    hosts: dict[int, str | None] = {}

    def host_device(host: Mapping[str, object], host_position: str) -> str | None:
        # An entity listed again by reference is the same object: read it once.
        if id(host) not in hosts:
            hosts[id(host)] = _read_host(draft, host, host_position, reading)
        return hosts[id(host)]

    listed = []
    seen: set[int] = set()
    for index, value in enumerate(items(entities)):
        entity = graph.resolve(value)
        if entity is not None and id(entity) not in seen:
            seen.add(id(entity))
            listed.append((at(position, f"[{index}]"), entity))

    # Hosts first, so that a file without a host falls back on every device.
    for entity_position, entity in listed:
        if entity_type(entity) == "host":
            host_device(entity, entity_position)

    for entity_position, entity in listed:
        kind = entity_type(entity)
        if kind == "process" and id(entity) not in parents:
            image = graph.resolve(entity.get("ImageFile"))
            evidence_kind = EvidenceKind.PROCESS
        elif kind == "file" and id(entity) not in images:
            image, evidence_kind = entity, EvidenceKind.FILE
        else:
            continue
        if image is None:
            continue

        sha1, sha256 = file_hashes(graph, image, reading, entity_position)
        if sha1 is None:
            continue
        host = graph.resolve(entity.get("Host")) or graph.resolve(image.get("Host"))
        own_device = host_device(host, entity_position) if host is not None else None

        draft.evidence.append(
            EvidenceDraft(
                position=entity_position,
                kind=evidence_kind,
                sha1=sha1,
                device_ids=(own_device,) if own_device is not None else (),
                file_name=text(image.get("Name")),
                folder_path=text(image.get("Directory")),
                sha256=sha256,
            )
        )


def _process_roles(graph: EntityGraph) -> tuple[set[int], set[int]]:
    """Object ids of parent processes, and of files that are a process's image."""
    processes = [entity for entity in graph.objects if entity_type(entity) == "process"]
    parents: set[int] = set()
    for process in processes:
        parent = graph.resolve(process.get("ParentProcess"))
        if parent is not None:
            parents.add(id(parent))

    images: set[int] = set()
    for process in processes:
        image = graph.resolve(process.get("ImageFile"))
        if image is not None:
            images.add(id(image))
    return parents, images


def _read_host(
    draft: AlertDraft, host: Mapping[str, object], position: str, reading: Reading
) -> str | None:
    device_id = reading.device_id(
        host.get("MdatpDeviceId"), at(position, "MdatpDeviceId")
    )
    if device_id is None:
        return None

    draft.add_device(
        device_id,
        device_facts(
            device_id,
            os_platform=host.get("OSFamily"),
            os_version=host.get("OSVersion"),
            health_status=host.get("HealthStatus"),
            onboarding_status=host.get("OnboardingStatus"),
            av_status=host.get("AvStatus"),
            device_name=host.get("FQDN") or host.get("HostName"),
        ),
    )
    return device_id
