"""Telemetry: who configures the exporter, and what each instrument counts.

Instruments are read from an in-memory meter, never from the process's global
providers; the exporter itself is tested end to end in tests/integration.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared import telemetry
from shared.backlog import MemoryBacklog
from shared.facts_cache import FactsCache
from shared.ledger import MemoryLedger
from shared.machine_actions import (
    MachineAction,
    MachineActionStatus,
    Submission,
    SubmissionOutcome,
)
from shared.pipeline import Message, Pipeline
from shared.settings import Settings
from shared.targets import DeviceFacts, FileFacts
from shared.telemetry import Instruments, TelemetryMode, choose_mode

CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DEVICE = "1" * 40
SHA1 = "a" * 40


@pytest.fixture(name="reader")
def _reader(monkeypatch: pytest.MonkeyPatch) -> InMemoryMetricReader:
    """The module's instruments, moved onto an in-memory meter for one test."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter(telemetry.METER_NAME)
    monkeypatch.setattr(telemetry, "_instruments", Instruments(meter))
    return reader


@pytest.fixture(autouse=True)
def _fresh_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # The mode is decided once per process; each test starts undecided.
    monkeypatch.setattr(telemetry, "_mode", None)


def _points(
    reader: InMemoryMetricReader, name: str
) -> list[tuple[dict[str, Any], Any]]:
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(
                        (dict(point.attributes or {}), point)
                        for point in metric.data.data_points
                    )
    return found


def _counts(reader: InMemoryMetricReader, name: str) -> dict[str, int]:
    return {
        json.dumps(attributes, sort_keys=True): point.value
        for attributes, point in _points(reader, name)
    }


@pytest.mark.parametrize(
    ("environ", "in_worker", "expected"),
    [
        ({}, False, TelemetryMode.OFF),
        ({}, True, TelemetryMode.OFF),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION}, False, "exporter"),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION}, True, "off"),
        (
            {
                "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
                "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
            },
            True,
            "worker",
        ),
        (
            {
                "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
                "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
            },
            False,
            "exporter",
        ),
    ],
)
def test_choose_mode_exports_from_one_place_only(
    environ: Mapping[str, str], in_worker: bool, expected: str
) -> None:
    settings = Settings.from_env(environ)

    mode = choose_mode(settings, in_functions_worker=in_worker)

    assert mode == expected


def test_command_line_configures_azure_monitor_once_without_url_instrumentations() -> (
    None
):
    calls: list[dict[str, Any]] = []
    settings = Settings.from_env({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION})

    first = telemetry.configure_for_command_line(
        settings, configure=lambda **kwargs: calls.append(kwargs)
    )
    second = telemetry.configure_for_command_line(
        settings, configure=lambda **kwargs: calls.append(kwargs)
    )

    assert first is second is TelemetryMode.EXPORTER
    assert len(calls) == 1
    options = calls[0]
    assert options["connection_string"] == CONNECTION
    assert options["disable_offline_storage"] is True
    assert options["logger_name"] == "shared"
    for name in ("requests", "urllib", "urllib3"):
        assert options["instrumentation_options"][name] == {"enabled": False}


def test_command_line_without_connection_string_configures_nothing() -> None:
    calls: list[dict[str, Any]] = []

    mode = telemetry.configure_for_command_line(
        Settings(), configure=lambda **kwargs: calls.append(kwargs)
    )

    assert mode is TelemetryMode.OFF
    assert calls == []


def test_worker_with_connection_string_but_worker_telemetry_off_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", CONNECTION)
    monkeypatch.delenv("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", raising=False)
    caplog.set_level(logging.WARNING, logger="shared.telemetry")

    mode = telemetry.start_in_functions_worker()

    assert mode is TelemetryMode.OFF
    records = [r for r in caplog.records if r.msg == "telemetry.worker_telemetry_off"]
    assert len(records) == 1
    assert CONNECTION not in caplog.text


def test_worker_with_invalid_settings_does_not_raise_while_indexing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUARANTINE_MODE", "sometimes")

    mode = telemetry.start_in_functions_worker()

    assert mode is TelemetryMode.OFF


def test_flush_without_configured_providers_is_harmless() -> None:
    telemetry.flush_telemetry(timeout_millis=100)


def test_target_outcomes_count_deferrals_and_submissions_separately(
    reader: InMemoryMetricReader,
) -> None:
    telemetry.record_target_outcome("defer", "api_throttled", None)
    telemetry.record_target_outcome("submit", "eligible", "created")
    telemetry.record_target_outcome("submit", "eligible", "failed")
    telemetry.record_target_outcome("skip", "dry_run", None)

    outcomes = _counts(reader, "quarantine.target_outcomes")
    assert outcomes == {
        '{"reason": "api_throttled", "verdict": "defer"}': 1,
        '{"reason": "eligible", "verdict": "submit"}': 2,
        '{"reason": "dry_run", "verdict": "skip"}': 1,
    }
    assert _counts(reader, "quarantine.deferrals") == {'{"reason": "api_throttled"}': 1}
    assert _counts(reader, "quarantine.submissions") == {
        '{"result": "created"}': 1,
        '{"result": "failed"}': 1,
    }


def test_only_429_answers_count_as_throttled(reader: InMemoryMetricReader) -> None:
    telemetry.record_api_response("GET", "machines/{id}", 200)
    telemetry.record_api_response("GET", "machines/{id}", None)
    telemetry.record_api_response("POST", "machines/{id}/StopAndQuarantineFile", 429)

    assert _counts(reader, "quarantine.api_throttled") == {
        '{"method": "POST", "route": "machines/{id}/StopAndQuarantineFile"}': 1
    }


def test_submission_delay_reads_a_naive_enqueue_time_as_utc_and_never_negative(
    reader: InMemoryMetricReader,
) -> None:
    naive = (NOW - timedelta(seconds=90)).replace(tzinfo=None)

    telemetry.record_submission_delay(naive, NOW)
    telemetry.record_submission_delay(NOW + timedelta(seconds=5), NOW)

    [(_, point)] = _points(reader, "quarantine.event_to_submission")
    assert point.count == 2
    assert point.sum == 90.0
    assert point.min == 0.0


class _SubmittingApi:
    """Defender as the pipeline sees it: every device and file qualifies."""

    def __init__(self, status: MachineActionStatus) -> None:
        self._status = status

    def device_facts(self, device_id: str) -> DeviceFacts | None:
        return DeviceFacts(
            device_id=device_id,
            os_platform="Windows11",
            os_build=22631,
            health_status="Active",
            onboarding_status="Onboarded",
            av_mode="0",
            source="api",
        )

    def file_facts(self, sha1: str) -> FileFacts | None:
        return FileFacts(sha1=sha1, source="api")

    def submit_quarantine(self, device_id: str, sha1: str, comment: str) -> Submission:
        action = MachineAction(
            id="00000000-0000-0000-0000-000000000001",
            action_type="StopAndQuarantineFile",
            status=self._status,
            raw_status=str(self._status),
            machine_id=device_id,
        )
        return Submission(SubmissionOutcome.ALREADY_IN_PROGRESS, action)

    def find_submission(
        self, device_id: str, sha1: str, since: datetime
    ) -> Submission | None:
        return None

    def alert_document(self, alert_id: str) -> Mapping[str, Any]:
        raise AssertionError("not used here")


def _message(enqueued_time: datetime | None) -> Message:
    alert = {
        "id": "da1_1",
        "severity": "High",
        "status": "New",
        "machineId": DEVICE,
        "evidence": [{"entityType": "File", "sha1": SHA1, "filePath": "C:\\Temp"}],
    }
    return Message(body=json.dumps(alert), source="event", enqueued_time=enqueued_time)


def _pipeline(status: MachineActionStatus) -> Pipeline:
    return Pipeline(
        settings=Settings.from_env({"QUARANTINE_MODE": "enforce"}),
        api=_SubmittingApi(status),
        ledger=MemoryLedger(),
        facts_cache=FactsCache(ttl_seconds=3600),
        backlog=MemoryBacklog(now=lambda: NOW),
        now=lambda: NOW,
    )


def test_pipeline_records_enqueue_to_submission_delay_and_final_status(
    reader: InMemoryMetricReader,
) -> None:
    pipeline = _pipeline(MachineActionStatus.SUCCEEDED)

    outcomes = pipeline.run(
        [_message(NOW - timedelta(seconds=42)), Message("{", source="broken")]
    )

    assert [o.verdict for o in outcomes] == ["submit", "rejected"]
    [(_, delay)] = _points(reader, "quarantine.event_to_submission")
    assert (delay.count, delay.sum) == (1, 42.0)
    assert _counts(reader, "quarantine.machine_action_outcomes") == {
        '{"status": "Succeeded"}': 1
    }
    assert sum(_counts(reader, "quarantine.rejected_events").values()) == 1
    assert _counts(reader, "quarantine.submissions") == {
        '{"result": "already_in_progress"}': 1
    }


def test_pipeline_without_enqueue_time_or_final_status_records_neither(
    reader: InMemoryMetricReader,
) -> None:
    pipeline = _pipeline(MachineActionStatus.PENDING)

    pipeline.run([_message(None)])

    assert _points(reader, "quarantine.event_to_submission") == []
    assert _points(reader, "quarantine.machine_action_outcomes") == []
    assert sum(_counts(reader, "quarantine.target_outcomes").values()) == 1


def test_workbook_is_a_notebook_whose_queries_are_the_documented_ones(
    repo: Path,
) -> None:
    workbook = json.loads((repo / "docs" / "workbook.json").read_text())
    documented = (repo / "docs" / "monitoring.md").read_text()

    queries = [
        item["content"]["query"] for item in workbook["items"] if item["type"] == 3
    ]

    assert workbook["version"] == "Notebook/1.0"
    assert len(queries) >= 6
    for query in queries:
        assert f"```kusto\n{query}\n```" in documented, query.splitlines()[0]


def test_every_metric_the_code_creates_is_documented(repo: Path) -> None:
    documented = (repo / "docs" / "monitoring.md").read_text()
    instruments = Instruments(MeterProvider().get_meter(telemetry.METER_NAME))

    names = [instrument.name for instrument in vars(instruments).values()]

    assert len(names) == 10
    for name in names:
        assert f"`{name}`" in documented, name
