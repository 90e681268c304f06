"""Fixtures for integration tests: a live simulator on loopback and tokens for it.

``simulator`` is a fresh simulator per test, on a free port, serving the demo
tenant on a manual clock: move time with ``simulator.advance(seconds)``; nothing
waits. ``full_token`` holds every permission the playbook needs.

``azurite`` is one Azurite process for the whole session (it takes a second or two
to start); ``storage_connection`` gives each test the connection string to it and
a fresh name prefix, so tests never see each other's tables and queues.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from local_storage import RunningAzurite, start_azurite
from simulator import (
    PLAYBOOK_ROLES,
    ManualClock,
    RunningSimulator,
    make_token,
    start_simulator,
)


@pytest.fixture(name="simulator")
def _simulator() -> Iterator[RunningSimulator]:
    running = start_simulator(clock=ManualClock())
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(name="full_token")
def _full_token() -> str:
    return make_token(PLAYBOOK_ROLES)


@pytest.fixture(name="azurite", scope="session")
def _azurite() -> Iterator[RunningAzurite]:
    running = start_azurite()
    try:
        yield running
    finally:
        running.stop()


_names = itertools.count(1)


@pytest.fixture(name="storage_prefix")
def _storage_prefix() -> str:
    """A table and queue name prefix that no other test of the session uses."""
    return f"t{next(_names)}x"


@pytest.fixture(name="storage_connection")
def _storage_connection(azurite: RunningAzurite) -> str:
    return azurite.connection_string
