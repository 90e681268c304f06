"""Tenant seeds: reading JSON, refusing bad seeds, and the demo tenant."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from simulator import Tenant, TenantError, demo, demo_tenant, load_tenant
from simulator.tenant import AV_MODES

_HEX40 = re.compile(r"^[0-9a-f]{40}$")


def _seed() -> dict[str, Any]:
    return {
        "name": "Fabrikam",
        "tenantId": "00000000-0000-4000-8000-000000000001",
        "devices": [
            {
                "id": "A" * 40,
                "computerDnsName": "pc-1",
                "osPlatform": "Windows11",
                "osBuild": 22631,
                "lastSeen": "2025-01-06T08:00:00Z",
            }
        ],
        "files": [{"sha1": "b" * 40, "signer": "Contoso", "isValidCertificate": True}],
        "observations": [{"machineId": "a" * 40, "sha1": "B" * 40}],
        "alerts": [
            {
                "id": "da1_2",
                "title": "t",
                "machineId": "a" * 40,
                "alertCreationTime": "2025-01-06T08:30:00Z",
                "evidence": [{"entityType": "File", "sha1": "b" * 40}],
            }
        ],
    }


def test_seed_is_read_with_defaults_and_lower_case_ids() -> None:
    tenant = Tenant.from_json(_seed())

    device = tenant.device("a" * 40)
    assert device is not None
    assert device.id == "a" * 40
    assert device.health_status == "Active"
    assert device.av_mode == "0"
    assert tenant.observation("A" * 40, "b" * 40) is not None
    assert tenant.alert("da1_2") is not None


def test_demo_tenant_survives_a_json_round_trip() -> None:
    seed = json.loads(json.dumps(demo_tenant().to_json()))

    assert Tenant.from_json(seed) == demo_tenant()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s.pop("tenantId"), "tenant.tenantId"),
        (lambda s: s.update(tenantId="contoso"), "GUID"),
        (lambda s: s.update(extra=1), "extra"),
        (lambda s: s["devices"][0].update(osBuild="22631"), "osBuild"),
        (lambda s: s["devices"][0].update(avMode="6"), "avMode"),
        (lambda s: s["devices"][0].update(id="a" * 39), "tenant.devices[0].id"),
        (lambda s: s["devices"][0].update(osplatform="x"), "osplatform"),
        (lambda s: s["devices"][0].update(lastSeen="yesterday"), "lastSeen"),
        (
            lambda s: s["files"][0].update(isValidCertificate="yes"),
            "isValidCertificate",
        ),
        (lambda s: s["files"][0].update(sha256="c" * 63), "sha256"),
        (lambda s: s["observations"][0].update(machineId="c" * 40), "unknown device"),
        (lambda s: s["observations"][0].update(sha1="c" * 40), "unknown file"),
        (lambda s: s["alerts"][0].update(machineId="c" * 40), "unknown device"),
        (lambda s: s["alerts"][0].pop("alertCreationTime"), "alertCreationTime"),
        (lambda s: s["devices"].append(dict(s["devices"][0])), "duplicate"),
        (lambda s: s.update(devices={}), "a list"),
    ],
)
def test_bad_seed_is_refused_naming_the_field(change: Any, named: str) -> None:
    seed = _seed()
    change(seed)

    with pytest.raises(TenantError, match=re.escape(named)):
        Tenant.from_json(seed)


def test_load_tenant_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(_seed()), encoding="utf-8")

    assert load_tenant(path) == Tenant.from_json(_seed())


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read"), ("{", "not JSON"), ("[]", "JSON object")],
)
def test_load_tenant_refuses_missing_or_malformed_files(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "tenant.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")

    with pytest.raises(TenantError, match=problem):
        load_tenant(path)


def test_files_are_found_by_sha1_or_sha256_in_any_case() -> None:
    tenant = demo_tenant()
    record = tenant.file(demo.FILE_THIRD_PARTY)
    assert record is not None and record.sha256 is not None

    assert tenant.file(record.sha256.upper()) == record
    assert tenant.file(demo.UNKNOWN_SHA1) is None


def test_devices_are_found_by_computer_name_in_any_case() -> None:
    device = demo_tenant().device_by_name("WIN11-23H2.CONTOSO.TEST")

    assert device is not None
    assert device.id == demo.DEVICE_WIN11


def test_demo_ids_are_stable_across_runs() -> None:
    # Other tests, the demo and saved sample data refer to these values.
    assert demo.DEVICE_WIN10 == "a736d85f499e1a0aef2a3de855fe2f1218ad77c2"
    assert demo.FILE_THIRD_PARTY == "7e52e66e948740e81ab2a2699902ce56f9023037"


def test_demo_ids_are_lower_case_40_hex_and_distinct() -> None:
    tenant = demo_tenant()
    ids = [d.id for d in tenant.devices] + [f.sha1 for f in tenant.files]

    assert all(_HEX40.match(value) for value in ids)
    assert len(set(ids)) == len(ids)
    assert _HEX40.match(demo.UNKNOWN_SHA1)
    assert tenant.file(demo.UNKNOWN_SHA1) is None


def test_demo_tenant_covers_every_platform_and_av_mode() -> None:
    devices = demo_tenant().devices

    assert {d.os_platform for d in devices} == {
        "Windows10",
        "Windows11",
        "WindowsServer2019",
        "macOS",
        "Linux",
    }
    builds = {d.os_build for d in devices if d.os_platform == "Windows10"}
    assert min(builds) < 15063 <= max(builds)
    assert {d.av_mode for d in devices} == set(AV_MODES)
    assert {d.health_status for d in devices} == {"Active", "Inactive"}


def test_demo_tenant_covers_every_kind_of_signature() -> None:
    tenant = demo_tenant()

    def file(sha1: str) -> Any:
        return tenant.file(sha1)

    assert file(demo.FILE_MICROSOFT_SIGNED).signer.startswith("Microsoft")
    assert file(demo.FILE_MICROSOFT_SIGNED).is_valid_certificate
    assert file(demo.FILE_THIRD_PARTY).signer not in tenant.trusted_publishers
    assert file(demo.FILE_TRUSTED_PUBLISHER).signer in tenant.trusted_publishers
    assert file(demo.FILE_UNSIGNED).signer is None
    assert not file(demo.FILE_INVALID_CERTIFICATE).is_valid_certificate


def test_demo_alert_evidence_names_files_seen_on_the_alerted_device() -> None:
    tenant = demo_tenant()

    for alert in tenant.alerts:
        named = [item.sha1 for item in alert.evidence if item.sha1]
        assert named, alert.id
        for sha1 in named:
            assert tenant.observation(alert.machine_id, sha1) is not None, alert.id
