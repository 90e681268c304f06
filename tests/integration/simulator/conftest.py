"""Fixtures for the simulator's integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulator import RunningSimulator
from tests.integration.simulator.client import Api


@pytest.fixture(name="api")
def _api(simulator: RunningSimulator, full_token: str) -> Iterator[Api]:
    client = Api(simulator, full_token)
    try:
        yield client
    finally:
        client.close()
