"""Bodies that are not alerts become rejections, and never stop the good parts."""

from __future__ import annotations

import json

import pytest

from shared.alert_formats import extract, extract_document
from shared.alert_formats._json import MAX_BODY_BYTES, MAX_DEPTH
from tests.conftest import DATA

MDE_SAMPLE = DATA / "mde" / "single_alert.json"


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"this is not json", "not_json"),
        (b'{"records": [{"category": "AdvancedHunting-AlertInfo"', "truncated"),
        (b"", "truncated"),
        (b'{"value": []}\xff', "not_utf8"),
        (b"\xff\xfe{\x00}\x00", "not_utf8"),
        (_nested(MAX_DEPTH + 1).encode(), "too_deep"),
        (_nested(200_000).encode(), "too_deep"),
        (b" " * (MAX_BODY_BYTES + 1), "too_large"),
        (b"42", "unknown_shape"),
        (b'"an alert"', "unknown_shape"),
        (b"null", "unknown_shape"),
        (b'{"records": {"category": "x"}}', "unknown_shape"),
        (b'{"value": "none"}', "unknown_shape"),
        (b'{"hello": "world"}', "unknown_shape"),
    ],
    ids=[
        "not-json",
        "truncated",
        "empty",
        "bad-utf8-tail",
        "utf16",
        "just-too-deep",
        "deeper-than-the-decoder",
        "too-large",
        "number",
        "string",
        "null",
        "records-not-array",
        "value-not-array",
        "unknown-object",
    ],
)
def test_unreadable_body_is_one_rejection_with_its_reason(
    body: bytes, reason: str
) -> None:
    extraction = extract(body, source="message-7")

    assert [r.reason for r in extraction.rejections] == [reason]
    assert extraction.rejections[0].source == "message-7"
    assert extraction.targets == ()


def test_not_json_rejection_points_at_the_line_and_column() -> None:
    extraction = extract(b'{"value": [\n  {"id": nope}\n]}', source="m")

    assert extraction.rejections[0].position == "line 2 column 10"


def test_empty_containers_yield_nothing_and_reject_nothing() -> None:
    for body in (b"[]", b'{"records": []}', b'{"value": []}', b'{"rows": []}'):
        extraction = extract(body, source="m")

        assert extraction.targets == ()
        assert extraction.rejections == ()


def test_text_body_and_byte_order_mark_are_read_like_bytes() -> None:
    body = MDE_SAMPLE.read_bytes()

    from_bytes = extract(body, source="m")
    from_text = extract(body.decode(), source="m")
    from_bom = extract(b"\xef\xbb\xbf" + body, source="m")

    assert len(from_bytes.targets) == 2
    assert from_text.targets == from_bytes.targets
    assert from_bom.targets == from_bytes.targets


def test_deep_item_is_rejected_and_its_neighbours_are_read() -> None:
    alert = json.loads(MDE_SAMPLE.read_bytes())
    deep: object = "bottom"
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    body = json.dumps({"value": [{"id": "da1_1", "extra": deep}, alert]})

    extraction = extract(body, source="m")

    assert [(r.reason, r.position) for r in extraction.rejections] == [
        ("too_deep", "value[0]")
    ]
    assert {target.alert_id for target in extraction.targets} == {alert["id"]}


def test_unknown_item_is_rejected_and_the_rest_of_the_list_is_read() -> None:
    alert = json.loads(MDE_SAMPLE.read_bytes())
    document = [{"kind": "not an alert"}, alert, 17]

    extraction = extract_document(document, source="m")

    assert [(r.reason, r.position) for r in extraction.rejections] == [
        ("unknown_shape", "[0]"),
        ("invalid_record", "[2]"),
    ]
    assert len(extraction.targets) == 2


def test_alert_id_that_is_not_an_id_is_rejected() -> None:
    alert = json.loads(MDE_SAMPLE.read_bytes())
    alert["id"] = "da1 ; drop table"

    extraction = extract_document(alert, source="m")

    assert [(r.reason, r.position) for r in extraction.rejections] == [
        ("invalid_alert_id", "id")
    ]
    assert extraction.targets == ()
    assert extraction.alerts == ()


def test_extract_document_reads_what_extract_reads() -> None:
    body = MDE_SAMPLE.read_bytes()

    assert extract_document(json.loads(body), source="m") == extract(body, source="m")
