"""The control endpoint under ``/_control``: steer a simulator from outside.

Not part of the Defender API and not authenticated (the simulator serves loopback
by default). Answers are JSON; a refused command answers 400 with
``{"error": {"code": "BadRequest", "message": ...}}``.

========  ==========================================  ===============================
method    path                                        what it does
========  ==========================================  ===============================
GET       /_control/requests                          the request log
POST      /_control/requests/clear                    empty the request log
GET       /_control/faults                            the fault settings
POST      /_control/faults                            replace them (JSON, see Faults)
POST      /_control/reset                             forget every change since start
POST      /_control/advance                           ``{"seconds": N}``, manual clock
POST      /_control/devices/{id}/health               ``{"healthStatus": "Active"}``
GET       /_control/tenant                            the tenant seed, as it is now
========  ==========================================  ===============================
"""

from __future__ import annotations

__all__ = ["control"]

import json
import urllib.parse
from typing import Any

from simulator.clock import ManualClock, format_timestamp
from simulator.faults import Faults, FaultsError
from simulator.state import SimulatorState
from simulator.tenant import TenantError

Answer = tuple[int, dict[str, Any]]


def control(
    state: SimulatorState, method: str, url: urllib.parse.SplitResult, body: bytes
) -> Answer:
    """Run one control command and return its status and JSON answer."""
    parts = [urllib.parse.unquote(part) for part in url.path.split("/") if part][1:]
    command = (method, *parts)

    try:
        data = json.loads(body) if body.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _refused("the body is not JSON")

    try:
        return _run(state, command, data)
    except (FaultsError, TenantError, ValueError) as exc:
        return _refused(str(exc))


def _run(state: SimulatorState, command: tuple[str, ...], data: Any) -> Answer:
    match command:
        case ("GET", "requests"):
            return 200, {"requests": [entry.to_json() for entry in state.request_log()]}
        case ("POST", "requests", "clear"):
            state.clear_log()
            return 200, {"requests": []}
        case ("GET", "faults"):
            return 200, _faults_json(state)
        case ("POST", "faults"):
            state.set_faults(Faults.from_json(data))
            return 200, _faults_json(state)
        case ("POST", "reset"):
            state.reset()
            return 200, {"reset": True}
        case ("POST", "advance"):
            return _advance(state, data)
        case ("POST", "devices", machine_id, "health"):
            health = data.get("healthStatus") if isinstance(data, dict) else None
            if not isinstance(health, str) or not health:
                return _refused("healthStatus must be a non-empty string")
            state.set_device_health(machine_id, health)
            return 200, {"id": machine_id.lower(), "healthStatus": health}
        case ("GET", "tenant"):
            return 200, state.tenant.to_json()
    return 404, {"error": {"code": "NotFound", "message": "No such control command."}}


def _advance(state: SimulatorState, data: Any) -> Answer:
    if not isinstance(state.clock, ManualClock):
        return 409, {
            "error": {
                "code": "Conflict",
                "message": "This simulator runs on the wall clock; it cannot advance.",
            }
        }

    seconds = data.get("seconds") if isinstance(data, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return _refused("seconds must be a number")
    now = state.clock.advance(seconds)
    return 200, {"now": format_timestamp(now)}


def _faults_json(state: SimulatorState) -> dict[str, Any]:
    with state.lock:
        return state.faults.faults.to_json()


def _refused(message: str) -> Answer:
    return 400, {"error": {"code": "BadRequest", "message": message}}
