"""Whatever arrives, extraction returns, and every target it yields is well formed."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.alert_formats import extract, extract_document
from shared.targets import Extraction
from tests.conftest import DATA

HEX40 = re.compile(r"^[0-9a-f]{40}$")
REASONS = {
    "not_json",
    "not_utf8",
    "truncated",
    "too_large",
    "too_deep",
    "unknown_shape",
    "invalid_record",
    "missing_alert_id",
    "invalid_alert_id",
    "invalid_device_id",
    "invalid_sha1",
    "no_device",
}
SAMPLES = sorted(
    path
    for folder in ("streaming", "graph", "mde", "sentinel")
    for path in (DATA / folder).glob("*.json")
)
FAST = settings(max_examples=200, deadline=None)

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=50)
    | st.sampled_from(["", "da1_1", "File", "Process", "host", "SHA1", "A" * 40])
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=40,
)


def _assert_well_formed(extraction: Extraction) -> None:
    alert_ids = {alert.id for alert in extraction.alerts}
    for target in extraction.targets:
        assert HEX40.match(target.device_id), target.device_id
        assert HEX40.match(target.sha1), target.sha1
        assert target.alert_id in alert_ids
    for rejection in extraction.rejections:
        assert rejection.reason in REASONS, rejection.reason


@FAST
@given(st.binary(max_size=2_000))
def test_random_bytes_never_raise(body: bytes) -> None:
    extraction = extract(body, source="fuzz")

    _assert_well_formed(extraction)


@FAST
@given(json_values)
def test_random_json_never_raises(document: object) -> None:
    extraction = extract_document(document, source="fuzz")

    _assert_well_formed(extraction)
    assert extract(json.dumps(document), source="fuzz") == extraction


def _locations(document: object) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a document, outermost first."""
    found: list[tuple[Any, Any]] = []
    stack = [document]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            found.extend((current, key) for key in current)
            stack.extend(current.values())
        elif isinstance(current, list):
            found.extend((current, index) for index in range(len(current)))
            stack.extend(current)
    return found


def _with_embedded_decoded(document: object) -> object:
    """The document with JSON-in-string fields decoded, so mutations reach them."""
    for container, key in _locations(document):
        value = container[key]
        if key in ("AdditionalFields", "Entities") and isinstance(value, str):
            try:
                container[key] = json.loads(value)
            except ValueError:
                continue
    return document


@FAST
@given(
    sample=st.sampled_from(SAMPLES),
    picks=st.lists(st.tuples(st.integers(min_value=0), json_values), max_size=4),
    reencode=st.booleans(),
)
def test_mutated_samples_never_raise(
    sample: Path, picks: list[tuple[int, object]], reencode: bool
) -> None:
    document = _with_embedded_decoded(json.loads(sample.read_bytes()))
    for index, replacement in picks:
        locations = _locations(document)
        if not locations:
            break
        container, key = locations[index % len(locations)]
        container[key] = copy.deepcopy(replacement)

    body = json.dumps(document) if reencode else document
    extraction = (
        extract(body, source="fuzz")
        if isinstance(body, str)
        else extract_document(body, source="fuzz")
    )

    _assert_well_formed(extraction)


@FAST
@given(
    sample=st.sampled_from(SAMPLES),
    cut=st.integers(min_value=0),
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=3
    ),
)
def test_cut_and_corrupted_sample_bytes_never_raise(
    sample: Path, cut: int, flips: list[tuple[int, int]]
) -> None:
    body = bytearray(sample.read_bytes())
    del body[cut % (len(body) + 1) :]
    for index, byte in flips:
        if body:
            body[index % len(body)] = byte

    extraction = extract(bytes(body), source="fuzz")

    _assert_well_formed(extraction)
