"""Fixtures for the functions against the simulator: app settings and event bodies."""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventhub import EventHubTriggerConverter

from shared import playbook
from simulator import RunningSimulator, start_simulator

AppSettings = Callable[..., None]


@pytest.fixture(name="simulator")
def _wall_clock_simulator() -> Iterator[RunningSimulator]:
    """A simulator on the wall clock, as Defender's clock agrees with ours.

    The client treats an action created well before its request as one that was
    already open, so a simulator on a manual clock years behind would turn every
    submission into "already in progress".
    """
    running = start_simulator()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(name="app_settings")
def _app_settings(
    monkeypatch: pytest.MonkeyPatch,
    simulator: RunningSimulator,
    full_token: str,
    storage_connection: str,
    storage_prefix: str,
) -> Iterator[AppSettings]:
    """Set app settings that point the playbook at the simulator and at this
    test's own tables and queues on Azurite, then rebuild it."""

    def configure(**overrides: str) -> None:
        values = {
            "QUARANTINE_MODE": "enforce",
            "DEFENDER_API_URL": simulator.base_url,
            "DEFENDER_TOKEN": full_token,
            "MIN_ALERT_SEVERITY": "medium",
            "AzureWebJobsStorage": storage_connection,
            "STATE_TABLE_PREFIX": storage_prefix,
            "BACKLOG_QUEUE_NAME": f"{storage_prefix}-backlog",
            **overrides,
        }
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        playbook.reset()

    configure()
    yield configure
    playbook.reset()


def streaming_message(
    *targets: tuple[str, str],
    alert_id: str = "da638400000000000001_1",
    severity: str = "High",
) -> bytes:
    """One Event Hubs message: an alert naming each (device, SHA-1) as file evidence."""
    at = "2026-12-03T10:00:00Z"
    info = {
        "category": "AdvancedHunting-AlertInfo",
        "time": at,
        "properties": {
            "AlertId": alert_id,
            "Title": "Malicious file detected",
            "Severity": severity,
            "Category": "Malware",
            "DetectionSource": "Antivirus",
            "ServiceSource": "Microsoft Defender for Endpoint",
            "Timestamp": at,
        },
    }
    evidence = [
        {
            "category": "AdvancedHunting-AlertEvidence",
            "time": at,
            "properties": {
                "AlertId": alert_id,
                "EntityType": "File",
                "EvidenceRole": "Impacted",
                "DeviceId": device_id,
                "SHA1": sha1,
                "FileName": "payload.exe",
                "FolderPath": "C:\\Users\\Public",
                "Timestamp": at,
            },
        }
        for device_id, sha1 in targets
    ]
    return json.dumps({"records": [info, *evidence]}).encode()


def event_batch(*bodies: bytes, partition: str = "0") -> list[func.EventHubEvent]:
    """A batch decoded the way the Python worker decodes one (cardinality many)."""
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    system_properties: list[dict[str, Any]] = [
        {
            "SequenceNumber": 100 + index,
            "Offset": str(4096 * index),
            "EnqueuedTimeUtc": (start + timedelta(seconds=index)).isoformat(),
            "PartitionKey": None,
        }
        for index in range(len(bodies))
    ]
    metadata = {
        "SystemPropertiesArray": meta.Datum(json.dumps(system_properties), "json"),
        "PartitionContext": meta.Datum(
            json.dumps(
                {
                    "PartitionId": partition,
                    "EventHubName": "defender-alerts",
                    "ConsumerGroup": "defender-quarantine",
                }
            ),
            "json",
        ),
    }
    value = types.SimpleNamespace(bytes=list(bodies))
    events: list[func.EventHubEvent] = EventHubTriggerConverter.decode(
        meta.Datum(value=value, type="collection_bytes"), trigger_metadata=metadata
    )
    return events
