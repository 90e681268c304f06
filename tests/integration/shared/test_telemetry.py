"""Telemetry end to end: the command line, the real exporter and a local endpoint.

``configure_azure_monitor`` installs global providers once per process, so the run
happens in a child process (``python -m shared.cli replay``) that the test starts.
The child exports to ``tests/integration/ingestion.py`` on loopback, the only
Application Insights it knows, and the test asserts what arrived there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from simulator import RunningSimulator
from simulator.demo import DEVICE_LINUX, DEVICE_WIN10, FILE_THIRD_PARTY, FILE_UNSIGNED
from tests.conftest import REPO
from tests.integration.ingestion import IngestionServer

pytestmark = pytest.mark.integration

CLIENT_SECRET = "client-secret-that-must-never-leave"


@dataclass(frozen=True)
class TelemetryRun:
    """What the child process printed, and what the ingestion endpoint received."""

    returncode: int
    stderr: str
    envelopes: list[dict[str, Any]]
    raw_text: str
    token: str
    connection_string: str

    def of_type(self, name: str) -> list[dict[str, Any]]:
        return [
            envelope["data"]["baseData"]
            for envelope in self.envelopes
            if envelope["name"] == f"Microsoft.ApplicationInsights.{name}"
        ]

    def messages(self, message: str) -> list[dict[str, str]]:
        return [
            data["properties"]
            for data in self.of_type("Message")
            if data["message"] == message
        ]

    def metric_total(self, name: str, **dimensions: str) -> float:
        total = 0.0
        for data in self.of_type("Metric"):
            properties = data.get("properties", {})
            if any(properties.get(key) != value for key, value in dimensions.items()):
                continue
            total += sum(m["value"] for m in data["metrics"] if m["name"] == name)
        return total


def _alert(alert_id: str, device_id: str, sha1: str) -> str:
    """A Defender API alert (the ``mde`` format) naming one file on one device."""
    return json.dumps(
        {
            "id": alert_id,
            "title": "Malicious file",
            "severity": "High",
            "status": "New",
            "detectionSource": "WindowsDefenderAv",
            "machineId": device_id,
            "evidence": [
                {
                    "entityType": "File",
                    "sha1": sha1,
                    "fileName": "payload.exe",
                    "filePath": "C:\\Users\\Public",
                }
            ],
        }
    )


@pytest.fixture(name="telemetry_run")
def _telemetry_run(
    simulator: RunningSimulator, full_token: str, tmp_path: Path
) -> Iterator[TelemetryRun]:
    bodies = {
        "throttled.json": _alert("da1_1", DEVICE_WIN10, FILE_UNSIGNED),
        "eligible.json": _alert("da2_1", DEVICE_WIN10, FILE_THIRD_PARTY),
        "linux.json": _alert("da3_1", DEVICE_LINUX, FILE_UNSIGNED),
        "broken.json": "this is not an alert",
    }
    paths = {}
    for name, body in bodies.items():
        (tmp_path / name).write_text(body)
        paths[name] = str(tmp_path / name)

    with IngestionServer() as ingestion:
        environ = {
            "PATH": os.environ.get("PATH", ""),
            "DEFENDER_API_URL": simulator.base_url,
            "DEFENDER_TOKEN": full_token,
            "DEFENDER_CLIENT_SECRET": CLIENT_SECRET,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
            # Nothing may leave loopback: no statsbeat, no control plane, no
            # cloud metadata probe; and every trace is kept.
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
            "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
            "OTEL_TRACES_SAMPLER": "always_on",
        }
        # Two runs. In the first, the first call is answered 429 with a wait too
        # long to hold the run for, so its target is deferred; that 429 also holds
        # the whole API for the rest of that process, so the other targets run
        # in a second process, which the hold does not reach.
        simulator.set_faults(throttle_next=1, throttle_retry_after=30)
        throttled = _replay(environ, [paths.pop("throttled.json")])
        others = _replay(environ, list(paths.values()))
        yield TelemetryRun(
            returncode=throttled.returncode or others.returncode,
            stderr=throttled.stderr + others.stderr,
            envelopes=ingestion.envelopes(),
            raw_text=ingestion.raw_text(),
            token=full_token,
            connection_string=ingestion.connection_string,
        )


def _replay(
    environ: dict[str, str], paths: list[str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "replay", "--enforce", *paths],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_target_outcome_arrives_as_a_trace_with_flat_custom_dimensions(
    telemetry_run: TelemetryRun,
) -> None:
    deferred = telemetry_run.messages("target.deferred")
    submitted = telemetry_run.messages("target.submitted")
    skipped = telemetry_run.messages("target.skipped")
    rejected = telemetry_run.messages("event.rejected")

    assert telemetry_run.returncode == 0, telemetry_run.stderr
    assert [(d["alert_id"], d["reason"]) for d in deferred] == [
        ("da1_1", "api_throttled")
    ]
    assert deferred[0]["device_id"] == DEVICE_WIN10
    assert deferred[0]["sha1"] == FILE_UNSIGNED
    assert deferred[0]["verdict"] == "defer"
    assert "retry_at" in deferred[0]

    assert len(submitted) == 1
    assert submitted[0]["alert_id"] == "da2_1"
    assert submitted[0]["sha1"] == FILE_THIRD_PARTY
    assert submitted[0]["verdict"] == "submit"
    assert submitted[0]["reason"] == "eligible"
    assert len(submitted[0]["action_id"]) == 36

    assert [(s["device_id"], s["reason"]) for s in skipped] == [
        (DEVICE_LINUX, "os_platform_not_supported")
    ]
    assert [r["reason"] for r in rejected] == ["not_json"]

    every_value = [
        value
        for data in telemetry_run.of_type("Message")
        for value in data["properties"].values()
    ]
    assert all(isinstance(value, str) for value in every_value)
    assert not any(value.startswith("{") for value in every_value), "nested dict"


def test_counters_arrive_by_verdict_reason_and_result(
    telemetry_run: TelemetryRun,
) -> None:
    total = telemetry_run.metric_total

    assert total("quarantine.target_outcomes") == 3
    assert total("quarantine.target_outcomes", verdict="defer") == 1
    assert total("quarantine.target_outcomes", verdict="submit", reason="eligible") == 1
    assert (
        total(
            "quarantine.target_outcomes",
            verdict="skip",
            reason="os_platform_not_supported",
        )
        == 1
    )
    assert total("quarantine.deferrals", reason="api_throttled") == 1
    assert total("quarantine.submissions") == 1
    assert total("quarantine.rejected_events", reason="not_json") == 1
    assert total("quarantine.api_throttled", method="GET", route="machines/{id}") == 1


def test_defender_calls_arrive_as_dependencies_named_by_route_template(
    telemetry_run: TelemetryRun,
) -> None:
    http = [d for d in telemetry_run.of_type("RemoteDependency") if d["type"] == "HTTP"]
    names = {d["name"] for d in http}
    codes = sorted((d["name"], d["resultCode"]) for d in http)

    assert "POST /api/machines/{id}/StopAndQuarantineFile" in names
    assert "GET /api/machines/{id}" in names
    assert "GET /api/files/{id}" in names
    assert ("GET /api/machines/{id}", "429") in codes
    assert ("POST /api/machines/{id}/StopAndQuarantineFile", "201") in codes

    identifiers = (DEVICE_WIN10, DEVICE_LINUX, FILE_THIRD_PARTY, FILE_UNSIGNED)
    for dependency in http:
        shown = dependency["name"] + " " + dependency.get("data", "")
        assert not any(identifier in shown for identifier in identifiers), shown


def test_one_span_per_run_and_its_targets_share_its_operation(
    telemetry_run: TelemetryRun,
) -> None:
    in_process = [
        envelope
        for envelope in telemetry_run.envelopes
        if envelope["name"].endswith("RemoteDependency")
        and envelope["data"]["baseData"]["type"] == "InProc"
    ]
    names = sorted(envelope["data"]["baseData"]["name"] for envelope in in_process)
    operations = {envelope["tags"]["ai.operation.id"] for envelope in in_process}
    targets = [
        envelope["data"]["baseData"]["properties"]
        for envelope in in_process
        if envelope["data"]["baseData"]["name"] == "pipeline.target"
    ]

    runs = {
        envelope["tags"]["ai.operation.id"]
        for envelope in in_process
        if envelope["data"]["baseData"]["name"] == "pipeline.run"
    }

    assert names == ["pipeline.run"] * 2 + ["pipeline.target"] * 3
    assert len(runs) == 2
    assert operations == runs, "every target span is inside its run's operation"
    assert sorted(t["verdict"] for t in targets) == ["defer", "skip", "submit"]


def test_no_token_secret_or_connection_string_is_sent(
    telemetry_run: TelemetryRun,
) -> None:
    sent = telemetry_run.raw_text

    assert sent, "nothing arrived at the ingestion endpoint"
    assert telemetry_run.token not in sent
    assert CLIENT_SECRET not in sent
    assert telemetry_run.connection_string not in sent
    assert "IngestionEndpoint" not in sent
    assert "Bearer" not in sent
    assert "authorization" not in sent.lower()
