"""The Defender for Endpoint API under ``/api``: routing, rules and answers.

``handle`` takes one decoded HTTP request and returns the answer; it knows nothing
of sockets, so the HTTP server stays thin. Every call passes the same gates in the
same order: route, token (401), rate limit (429), permissions (403), query options
(400), then the endpoint's own rules. A call counts against its application's
limit once its token is read, whatever its outcome; a 401 or a 429 does not count.
"""

from __future__ import annotations

__all__ = ["ApiRequest", "ApiResponse", "handle"]

import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from simulator.action_endpoints import cancel_action, get_action, list_actions
from simulator.alert_endpoints import get_alert, submit_indicator
from simulator.auth import Requirement, check_permissions, identify_caller
from simulator.calls import ApiRequest, ApiResponse, Call, Facts
from simulator.errors import ApiFailure, UnsupportedQueryOption
from simulator.limits import (
    DEFAULT_WINDOWS,
    DEVICE_AV_INFO_WINDOWS,
    Window,
    retry_after_seconds,
)
from simulator.machine_endpoints import (
    device_av_info,
    get_file,
    get_machine,
    stop_and_quarantine,
)
from simulator.state import SimulatorState

_Handler = Callable[[Call], ApiResponse]

_READ_MACHINES: Requirement = ("Machine.Read.All", "Machine.ReadWrite.All")
_MACHINE_ACTIONS: Requirement = (
    "Machine.CollectForensics",
    "Machine.Isolate",
    "Machine.RestrictExecution",
    "Machine.Scan",
    "Machine.Offboard",
    "Machine.StopAndQuarantine",
    "Machine.LiveResponse",
)


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    segments: tuple[str | None, ...]  # None captures one path segment
    bucket: str
    requirements: tuple[Requirement, ...]
    handler: _Handler
    options: frozenset[str] = frozenset()
    windows: tuple[Window, ...] = DEFAULT_WINDOWS


def handle(state: SimulatorState, request: ApiRequest) -> ApiResponse:
    """Answer one API call; never raises for anything the client sent."""
    facts = Facts()
    try:
        route, params = _route(request)
        caller = identify_caller(
            request.authorization,
            accept_any_token=state.accept_any_token,
            wall_time=time.time(),
        )
        facts.app_id = caller.app_id

        with state.lock:
            call = Call(
                state=state,
                request=request,
                caller=caller,
                params=params,
                options=_options(request.query),
                now=state.now(),
                facts=facts,
            )
            _admit(call, route)
            response = route.handler(call)
    except ApiFailure as failure:
        response = ApiResponse(failure.status, failure.body(), failure.headers)

    return ApiResponse(
        status=response.status,
        body=response.body,
        headers=response.headers,
        machine_id=facts.machine_id,
        sha1=facts.sha1,
        action_id=facts.action_id,
        app_id=facts.app_id,
    )


def _admit(call: Call, route: _Route) -> None:
    state = call.state
    wait = state.limiter.try_acquire(
        call.caller.app_id, route.bucket, route.windows, call.now
    )
    if wait is not None:
        seconds = retry_after_seconds(wait, state.time_scale)
        raise ApiFailure(
            429,
            "TooManyRequests",
            f"Rate limit is exceeded. Try again in {seconds} seconds.",
            headers=(("Retry-After", str(seconds)),),
        )

    check_permissions(call.caller, route.requirements)

    for option in call.options:
        if option.lower() not in route.options:
            raise UnsupportedQueryOption(option)


def _route(request: ApiRequest) -> tuple[_Route, tuple[str, ...]]:
    segments = [urllib.parse.unquote(part) for part in request.path.split("/") if part]
    if segments[:1] == ["api"]:
        segments = segments[1:]
    if segments[:1] == ["v1.0"]:
        segments = segments[1:]

    for route in _ROUTES:
        if route.method != request.method or len(route.segments) != len(segments):
            continue
        params = _captures(route.segments, segments)
        if params is not None:
            return route, params

    raise ApiFailure(
        404, "NotFound", f"No API matches {request.method} {request.path}."
    )


def _captures(
    pattern: tuple[str | None, ...], segments: list[str]
) -> tuple[str, ...] | None:
    params: list[str] = []
    for expected, actual in zip(pattern, segments, strict=True):
        if expected is None:
            params.append(actual)
        elif expected.lower() != actual.lower():
            return None
    return tuple(params)


def _options(query: Mapping[str, str]) -> dict[str, str]:
    # System query options are matched in any letter case, like the real service;
    # the original spelling is kept for the error message.
    return {key: value for key, value in query.items() if key.startswith("$")}


_PAGING = frozenset({"$filter", "$top", "$skip"})

_ROUTES = (
    _Route(
        "POST",
        ("machines", None, "StopAndQuarantineFile"),
        "StopAndQuarantineFile",
        (("Machine.StopAndQuarantine",), _READ_MACHINES),
        stop_and_quarantine,
    ),
    _Route("GET", ("machines", None), "GetMachine", (_READ_MACHINES,), get_machine),
    _Route("GET", ("files", None), "GetFile", (("File.Read.All",),), get_file),
    _Route(
        "GET",
        ("deviceavinfo",),
        "DeviceAvInfo",
        (("Machine.Read.All",),),
        device_av_info,
        options=_PAGING,
        windows=DEVICE_AV_INFO_WINDOWS,
    ),
    _Route(
        "GET",
        ("machineactions",),
        "ListMachineActions",
        (_READ_MACHINES,),
        list_actions,
        options=_PAGING,
    ),
    _Route(
        "GET",
        ("machineactions", None),
        "GetMachineAction",
        (_READ_MACHINES,),
        get_action,
    ),
    _Route(
        "POST",
        ("machineactions", None, "cancel"),
        "CancelMachineAction",
        (_MACHINE_ACTIONS,),
        cancel_action,
    ),
    _Route(
        "GET",
        ("alerts", None),
        "GetAlert",
        (("Alert.Read.All", "Alert.ReadWrite.All"),),
        get_alert,
        options=frozenset({"$expand"}),
    ),
    _Route(
        "POST",
        ("indicators",),
        "SubmitIndicator",
        (("Ti.ReadWrite", "Ti.ReadWrite.All"),),
        submit_indicator,
    ),
)
