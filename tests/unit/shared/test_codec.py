"""Targets and facts survive a trip through JSON, and a bad document says why."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.codec import (
    CodecError,
    decode_device_facts,
    decode_file_facts,
    decode_target,
    encode_target,
)
from shared.targets import (
    Alert,
    AlertFormat,
    DeviceFacts,
    EvidenceKind,
    FileFacts,
    Target,
)

DEVICE = "1" * 40
SHA1 = "a" * 40


def _target() -> Target:
    return Target(
        alert=Alert(
            id="da638400000000000001_1",
            format=AlertFormat.STREAMING,
            title="Malicious file",
            severity="high",
            status="new",
            detection_source="antivirus",
            created=datetime(2026, 12, 3, 10, 0, tzinfo=UTC),
            alias_ids=("sentinel-1",),
        ),
        device_id=DEVICE,
        sha1=SHA1,
        evidence=EvidenceKind.PROCESS,
        evidence_role="Impacted",
        file_name="payload.exe",
        folder_path="C:\\Users\\Public",
        device=DeviceFacts(
            device_id=DEVICE,
            os_platform="Windows11",
            os_build=22631,
            machine_tags=("finance", "vip"),
            av_mode="1",
        ),
        file=FileFacts(sha1=SHA1, signer="Contoso", is_valid_certificate=False),
    )


def test_a_target_reads_back_equal_after_json() -> None:
    target = _target()

    document = json.loads(json.dumps(encode_target(target)))

    assert decode_target(document) == target


def test_a_target_without_facts_reads_back_equal() -> None:
    bare = Target(
        alert=Alert(id="a1", format=AlertFormat.MDE),
        device_id=DEVICE,
        sha1=SHA1,
        evidence=EvidenceKind.FILE,
    )

    assert decode_target(encode_target(bare)) == bare


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"version": 2}, "version"),
        ({"device_id": "not-hex"}, "target.device_id"),
        ({"sha1": None}, "target.sha1"),
        ({"evidence": "registry"}, "evidence"),
        ({"alert": "da1"}, "alert is not a JSON object"),
        ({"file_name": 7}, "target.file_name"),
    ],
)
def test_a_bad_target_document_names_what_is_wrong(
    change: dict[str, Any], named: str
) -> None:
    document = {**encode_target(_target()), **change}

    with pytest.raises(CodecError, match=named):
        decode_target(document)


def test_bad_facts_documents_name_the_field() -> None:
    with pytest.raises(CodecError, match=r"device\.os_build"):
        decode_device_facts({"version": 1, "device_id": DEVICE, "os_build": "x"})
    with pytest.raises(CodecError, match=r"file\.is_valid_certificate"):
        decode_file_facts(
            {"version": 1, "sha1": SHA1, "source": "api", "is_valid_certificate": 1}
        )
    with pytest.raises(CodecError, match="not a JSON object"):
        decode_file_facts([])
