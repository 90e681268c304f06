"""Fixtures for the playbook on durable state: Azurite, the simulator, and a burst.

``burst_tenant`` is a simulated tenant in which every file was seen on every
device, so that any (device, file) pair of it is a target Defender accepts:
5 Windows 11 devices and 50 unsigned files make 250 eligible targets.
``burst_alerts`` names such pairs in Defender API alerts (one alert per device).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from shared.budget import MemoryBudget, TableBudget, Window, windows_for
from shared.credentials import StaticTokenProvider
from shared.defender_client import DefenderClient
from shared.facts_cache import FactsCache
from shared.pipeline import Message, Pipeline
from shared.playbook import DefenderQuarantineApi, State, build_state
from shared.settings import Settings
from simulator import (
    Device,
    FileRecord,
    Observation,
    RunningSimulator,
    Tenant,
    start_simulator,
)

DEVICES = tuple(f"{0xD0 + index:02x}" + "0" * 37 + f"{index}" for index in range(5))
FILES = tuple(f"{index:04x}" + "f" * 36 for index in range(50))


def burst_tenant() -> Tenant:
    devices = tuple(
        Device(
            id=device_id,
            computer_dns_name=f"burst-{index}.contoso.test",
            os_platform="Windows11",
            os_build=22631,
            version="23H2",
        )
        for index, device_id in enumerate(DEVICES)
    )
    files = tuple(
        FileRecord(sha1=sha1, file_name=f"payload{index}.exe")
        for index, sha1 in enumerate(FILES)
    )
    seen = tuple(
        Observation(machine_id=device_id, sha1=sha1, file_path="C:\\Users\\Public")
        for device_id in DEVICES
        for sha1 in FILES
    )
    return Tenant(
        name="burst",
        tenant_id="11111111-2222-3333-4444-555555555555",
        devices=devices,
        files=files,
        observations=seen,
    )


def burst_alerts(
    pairs: Sequence[tuple[str, str]], *, prefix: str = "da6384"
) -> list[Message]:
    """One Defender API alert per device, naming its files as evidence."""
    by_device: dict[str, list[str]] = {}
    for device_id, sha1 in pairs:
        by_device.setdefault(device_id, []).append(sha1)

    messages = []
    for index, (device_id, files) in enumerate(sorted(by_device.items())):
        alert = {
            "id": f"{prefix}_{index}",
            "title": "Malicious files",
            "severity": "High",
            "status": "New",
            "detectionSource": "WindowsDefenderAv",
            "machineId": device_id,
            "evidence": [
                {"entityType": "File", "sha1": sha1, "filePath": "C:\\Users\\Public"}
                for sha1 in files
            ],
        }
        messages.append(Message(body=json.dumps(alert), source=alert["id"]))
    return messages


def all_pairs() -> list[tuple[str, str]]:
    return [(device_id, sha1) for device_id in DEVICES for sha1 in FILES]


def scaled_windows(scale: float) -> object:
    """Defender's windows, ``scale`` times faster, as a simulator at ``scale``
    counts them."""

    def windows(route: str) -> tuple[Window, ...]:
        return tuple(
            Window(window.seconds / scale, window.calls)
            for window in windows_for(route)
        )

    return windows


def durable_state(
    connection: str, prefix: str, *, budget: TableBudget | MemoryBudget | None = None
) -> State:
    """The playbook's state on Azurite, in tables and queues of ``prefix``, as the
    app builds it; ``budget`` replaces the one counting Defender's own windows."""
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": connection,
            "STATE_TABLE_PREFIX": prefix,
            "BACKLOG_QUEUE_NAME": f"{prefix}-backlog",
        }
    )
    state = build_state(settings, require_storage=True)
    return dataclasses.replace(state, budget=budget) if budget else state


def pipeline_on(
    state: State,
    simulator: RunningSimulator,
    token: str,
    *,
    now: object = None,
    **settings: str,
) -> Pipeline:
    environ = {"QUARANTINE_MODE": "enforce", "MIN_ALERT_SEVERITY": "low", **settings}
    client = DefenderClient(
        api_url=simulator.base_url,
        tokens=StaticTokenProvider(token),
        budget=state.budget,
    )
    resolved = Settings.from_env(environ)
    return Pipeline(
        settings=resolved,
        api=DefenderQuarantineApi(client),
        ledger=state.ledger,
        facts_cache=FactsCache.from_settings(resolved, store=state.facts_store),
        backlog=state.backlog,
        now=now or (lambda: datetime.now(UTC)),  # type: ignore[arg-type]
    )


@pytest.fixture(name="burst_simulator")
def _burst_simulator() -> Iterator[RunningSimulator]:
    """The burst tenant on the wall clock (see tests/integration/functions)."""
    running = start_simulator(tenant=burst_tenant())
    try:
        yield running
    finally:
        running.stop()


def quarantine_posts(simulator: RunningSimulator) -> list[tuple[str, str]]:
    """The (device, SHA-1) of every StopAndQuarantineFile the simulator answered."""
    return [
        (logged.machine_id or "", logged.sha1 or "")
        for logged in simulator.request_log()
        if logged.method == "POST" and logged.path.endswith("/StopAndQuarantineFile")
    ]


def later(seconds: float) -> object:
    """A clock ``seconds`` ahead of the wall clock."""
    return lambda: datetime.now(UTC) + timedelta(seconds=seconds)
