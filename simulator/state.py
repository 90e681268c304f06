"""Everything that changes while the simulator runs, behind one lock.

The HTTP threads share one ``SimulatorState``. Each API call holds ``lock`` from the
moment it is counted against the limits until its answer is decided, so no check
(is there an open action for this target?) can be raced by another call's act.
"""

from __future__ import annotations

__all__ = ["LoggedRequest", "SimulatorState"]

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any

from simulator.actions import ActionBook
from simulator.clock import Clock, format_timestamp
from simulator.faults import FaultInjector, FaultKind, Faults
from simulator.limits import RateLimiter
from simulator.tenant import Tenant, TenantError


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One call the simulator received, and what became of it.

    ``status`` is None when the connection was dropped before an answer was decided;
    a call dropped after it took effect keeps the status its lost answer had.
    ``timestamp`` is on the simulator's clock (seconds since the epoch).
    """

    method: str
    path: str
    query: dict[str, str]
    status: int | None
    timestamp: float
    machine_id: str | None = None
    sha1: str | None = None
    action_id: str | None = None
    app_id: str | None = None
    fault: FaultKind = FaultKind.NONE

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "timestamp": format_timestamp(self.timestamp),
            "machine_id": self.machine_id,
            "sha1": self.sha1,
            "action_id": self.action_id,
            "app_id": self.app_id,
            "fault": self.fault.value,
        }


@dataclass(slots=True)
class SimulatorState:
    """The tenant as it is now, the machine actions, limits, faults and the log."""

    seed: Tenant
    clock: Clock
    time_scale: float = 1.0
    accept_any_token: bool = False
    faults: FaultInjector = field(default_factory=FaultInjector)
    lock: threading.Lock = field(default_factory=threading.Lock)
    tenant: Tenant = field(init=False)
    actions: ActionBook = field(default_factory=ActionBook)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    indicators: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    log: list[LoggedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tenant = self.seed

    def now(self) -> float:
        return self.clock()

    def record(self, entry: LoggedRequest) -> None:
        with self.lock:
            self.log.append(entry)

    def request_log(self) -> list[LoggedRequest]:
        with self.lock:
            return list(self.log)

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    def draw_fault(self) -> tuple[FaultKind, Faults]:
        with self.lock:
            return self.faults.draw(), self.faults.faults

    def set_faults(self, faults: Faults) -> None:
        with self.lock:
            self.faults.configure(faults)

    def set_device_health(self, machine_id: str, health_status: str) -> None:
        """Change a device's health; an Active device receives its waiting actions."""
        with self.lock:
            device = self.tenant.device(machine_id)
            if device is None:
                raise TenantError(f"no device {machine_id} in the tenant")

            now = self.now()
            changed = dataclasses.replace(device, health_status=health_status)
            devices = tuple(
                changed if item.id == device.id else item
                for item in self.tenant.devices
            )
            self.tenant = dataclasses.replace(self.tenant, devices=devices)

            if changed.is_active:
                self.actions.device_reachable(changed.id, now)

    def reset(self) -> None:
        """Back to the seeded tenant: no actions, indicators, counts, faults or log."""
        with self.lock:
            self.tenant = self.seed
            self.actions.reset()
            self.limiter.reset()
            self.indicators.clear()
            self.log.clear()
            self.faults.configure(Faults())
