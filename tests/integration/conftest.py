"""Fixtures for integration tests: a live simulator on loopback and tokens for it.

``simulator`` is a fresh simulator per test, on a free port, serving the demo
tenant on a manual clock: move time with ``simulator.advance(seconds)``; nothing
waits. ``full_token`` holds every permission the playbook needs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
