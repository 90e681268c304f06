"""A local Defender for Endpoint API that keeps the documented contract.

Start one in-process with ``start_simulator`` (tests, the demo, benchmarks) or from
the command line with ``defender-quarantine simulator``. What it models, and the
readings it takes where the documentation is silent, are in ``docs/simulator.md``.
"""

from __future__ import annotations

__all__ = [
    "PLAYBOOK_ROLES",
    "ActionStatus",
    "Alert",
    "Device",
    "DropMode",
    "Evidence",
    "FaultKind",
    "Faults",
    "FileRecord",
    "LoggedRequest",
    "ManualClock",
    "Observation",
    "RunningSimulator",
    "Tenant",
    "TenantError",
    "demo_tenant",
    "load_tenant",
    "make_token",
    "start_simulator",
]

from simulator.actions import ActionStatus
from simulator.auth import PLAYBOOK_ROLES, make_token
from simulator.clock import ManualClock
from simulator.demo import demo_tenant
from simulator.faults import DropMode, FaultKind, Faults
from simulator.server import RunningSimulator, start_simulator
from simulator.state import LoggedRequest
from simulator.tenant import (
    Alert,
    Device,
    Evidence,
    FileRecord,
    Observation,
    Tenant,
    TenantError,
    load_tenant,
)
