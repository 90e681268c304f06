"""Alert formats: one entry point that reads any supported message into targets.

``extract`` decodes a message body once and hands it to ``extract_document``, which
finds the format of each alert in it and reads it with that format's module:

========================  ======================================================
``streaming``             Defender XDR streaming API records via Event Hubs
``graph``                 Microsoft Graph security ``alerts_v2`` alerts
``mde``                   Defender for Endpoint API alerts with ``evidence``
``sentinel``              Microsoft Sentinel ``SecurityAlert`` rows
========================  ======================================================

Shapes read, with the positions rejections report:

- ``{"records": [...]}``: streaming records (``records[3]``);
- ``{"value": [...]}``: a Graph or Defender API list, or Sentinel rows
  (``value[0].evidence[2]``);
- ``{"rows": [...]}``: Sentinel rows as objects, as exported from a query
  (``rows[1].Entities[5]``);
- ``[...]``: any of those items in a bare array (``[2]``);
- one object: a single alert, row or record (``evidence[2]``, ``Entities[5]``).

Items of one message are detected one by one, so a list may mix formats. Nothing
here raises: every problem is a ``Rejection`` with a stable ``reason`` (``not_json``,
``not_utf8``, ``truncated``, ``too_large``, ``too_deep``, ``unknown_shape``,
``invalid_record``, ``missing_alert_id``, ``invalid_alert_id``,
``invalid_device_id``, ``invalid_sha1``, ``no_device``), and the rest of the
message is still read. Rejections are returned, not logged: the caller logs each
one once, with its own context.

Limitations:
    The Log Analytics query API's table shape (``{"tables": [{"columns", "rows"}]}``,
    rows as arrays) is not read; export Sentinel rows as objects instead.
"""

from __future__ import annotations

__all__ = ["extract", "extract_document"]

import logging
from collections.abc import Mapping

from shared.alert_formats import graph, mde, sentinel, streaming
from shared.alert_formats._common import AlertDraft, Reading, build_targets
from shared.alert_formats._json import (
    MAX_DEPTH,
    JsonRejected,
    decode_body,
    exceeds_depth,
)
from shared.alert_formats._values import mapping
from shared.targets import AlertFormat, Extraction, Rejection

logger = logging.getLogger(__name__)

_CONTAINERS = ("records", "value", "rows")

_Items = list[tuple[str, object]]


def extract(body: bytes | str, *, source: str) -> Extraction:
    """The alerts, targets and rejections of one message body."""
    try:
        document = decode_body(body)
    except JsonRejected as exc:
        rejection = Rejection(
            source=source, reason=exc.reason, position=exc.position, detail=exc.detail
        )
        return Extraction(rejections=(rejection,))

    return extract_document(document, source=source)


def extract_document(document: object, *, source: str) -> Extraction:
    """The alerts, targets and rejections of an already-decoded JSON document."""
    reading = Reading(source)

    listed = _listed_items(document, reading)
    drafts, formats = _read_items(listed, reading)
    alerts, targets = build_targets(drafts, reading)

    logger.debug(
        "alert_formats.extracted",
        extra={
            "source": source,
            "alerts": len(alerts),
            "targets": len(targets),
            "rejections": len(reading.rejections),
        },
    )
    return Extraction(
        alerts=alerts,
        targets=targets,
        rejections=tuple(reading.rejections),
        formats=formats,
    )


def _listed_items(document: object, reading: Reading) -> _Items:
    """The items of the document's container, each with its position."""
    if isinstance(document, list):
        return [(f"[{index}]", item) for index, item in enumerate(document)]

    top = mapping(document)
    if top is None:
        reading.reject("unknown_shape", "", "the body is not a JSON object or array")
        return []

    for key in _CONTAINERS:
        if key in top and not _is_item(top):
            contained = top[key]
            if not isinstance(contained, list):
                reading.reject("unknown_shape", key, f"{key} is not an array")
                return []
            return [(f"{key}[{index}]", item) for index, item in enumerate(contained)]

    return [("", top)]


def _is_item(top: Mapping[str, object]) -> bool:
    # A container key inside an alert is a field, not a list of alerts.
    return bool(
        streaming.is_record(top)
        or sentinel.is_row(top)
        or graph.is_alert(top)
        or mde.is_alert(top)
    )


def _read_items(
    listed: _Items, reading: Reading
) -> tuple[list[AlertDraft], tuple[AlertFormat, ...]]:
    records: list[tuple[str, Mapping[str, object]]] = []
    drafts: list[AlertDraft | None] = []
    formats: dict[AlertFormat, None] = {}

    for position, value in listed:
        # An item inside a container already sits one level down.
        limit = MAX_DEPTH - 1 if position else MAX_DEPTH
        if exceeds_depth(value, limit):
            reading.reject("too_deep", position, f"nested deeper than {MAX_DEPTH}")
            continue
        item = mapping(value)
        if item is None:
            reading.reject("invalid_record", position, "an item that is no object")
            continue

        if streaming.is_record(item):
            records.append((position, item))
            formats[AlertFormat.STREAMING] = None
        elif sentinel.is_row(item):
            drafts.append(sentinel.read_row(item, position, reading))
            formats[AlertFormat.SENTINEL] = None
        elif graph.is_alert(item):
            drafts.append(graph.read_alert(item, position, reading))
            formats[AlertFormat.GRAPH] = None
        elif mde.is_alert(item):
            drafts.append(mde.read_alert(item, position, reading))
            formats[AlertFormat.MDE] = None
        else:
            reading.reject("unknown_shape", position, "not an alert of a known format")

    # Streaming rows of one alert are spread over the message: read them together.
    read = [draft for draft in drafts if draft is not None]
    if records:
        read = streaming.read_records(records, reading) + read
    return read, tuple(formats)
