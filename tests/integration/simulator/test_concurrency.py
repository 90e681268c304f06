"""Many clients at once: one lock, no lost or duplicated machine actions."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import requests

from simulator import (
    PLAYBOOK_ROLES,
    Device,
    FileRecord,
    ManualClock,
    Observation,
    RunningSimulator,
    Tenant,
    make_token,
    start_simulator,
)
from simulator.demo import DEVICE_WIN10, FILE_UNSIGNED
from tests.integration.simulator.client import Api, error_code

pytestmark = pytest.mark.integration

_THREADS = 8
_CALLS_PER_THREAD = 25


def _wide_tenant() -> Tenant:
    """Ten Windows 11 devices that have each seen the same twenty files."""
    devices = tuple(
        Device(
            id=f"{index:040x}", computer_dns_name=f"pc-{index}", os_platform="Windows11"
        )
        for index in range(1, 11)
    )
    files = tuple(FileRecord(sha1=f"{index:040x}") for index in range(101, 121))
    observations = tuple(
        Observation(device.id, record.sha1) for device in devices for record in files
    )
    return Tenant(
        name="wide",
        tenant_id="00000000-0000-4000-8000-000000000001",
        devices=devices,
        files=files,
        observations=observations,
    )


@pytest.fixture(name="wide")
def _wide() -> Iterator[RunningSimulator]:
    with start_simulator(tenant=_wide_tenant(), clock=ManualClock()) as simulator:
        yield simulator


def _run_together(
    work: Callable[[int], list[requests.Response]],
) -> list[requests.Response]:
    """Run ``work(thread_index)`` on every thread, released at the same moment."""
    barrier = threading.Barrier(_THREADS)
    results: list[list[requests.Response]] = [[] for _ in range(_THREADS)]

    def run(index: int) -> None:
        barrier.wait()
        results[index] = work(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [response for batch in results for response in batch]


def _targets(simulator: RunningSimulator) -> list[tuple[str, str]]:
    tenant = simulator.tenant
    return [(d.id, f.sha1) for d in tenant.devices for f in tenant.files]


def _submit_slice(
    simulator: RunningSimulator, token: Callable[[int], str]
) -> Callable[[int], list[requests.Response]]:
    targets = _targets(simulator)

    def work(index: int) -> list[requests.Response]:
        api = Api(simulator, token(index))
        mine = targets[index * _CALLS_PER_THREAD : (index + 1) * _CALLS_PER_THREAD]
        responses = [api.quarantine(machine, sha1) for machine, sha1 in mine]
        api.close()
        return responses

    return work


def test_distinct_targets_from_8_applications_all_create_actions(
    wide: RunningSimulator,
) -> None:
    def token(index: int) -> str:
        return make_token(
            PLAYBOOK_ROLES, app_id=f"00000000-0000-4000-8000-{index:012d}"
        )

    responses = _run_together(_submit_slice(wide, token))

    assert Counter(r.status_code for r in responses) == {201: 200}
    listed = Api(wide, make_token(PLAYBOOK_ROLES)).get("machineactions").json()["value"]
    assert len(listed) == 200
    assert len({r.json()["id"] for r in responses}) == 200


def test_distinct_targets_from_one_application_create_exactly_its_limit(
    wide: RunningSimulator,
) -> None:
    shared = make_token(PLAYBOOK_ROLES)

    responses = _run_together(_submit_slice(wide, lambda index: shared))

    assert Counter(r.status_code for r in responses) == {201: 100, 429: 100}
    listed = Api(wide, shared).get("machineactions").json()["value"]
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert {action["id"] for action in listed} == created


def test_same_target_from_8_threads_creates_exactly_one_action(
    simulator: RunningSimulator, full_token: str
) -> None:
    def work(index: int) -> list[requests.Response]:
        api = Api(simulator, full_token)
        responses = [api.quarantine(DEVICE_WIN10, FILE_UNSIGNED) for _ in range(3)]
        api.close()
        return responses

    responses = _run_together(work)

    assert Counter(r.status_code for r in responses) == {201: 1, 400: 23}
    assert {error_code(r) for r in responses if r.status_code == 400} == {
        "ActiveRequestAlreadyExists"
    }
    assert len(simulator.request_log()) == 24
