"""Devices and files: StopAndQuarantineFile, machine, AV mode and file lookups."""

from __future__ import annotations

__all__ = ["device_av_info", "get_file", "get_machine", "stop_and_quarantine"]

from simulator.actions import failed_prerequisite
from simulator.calls import (
    HEX40,
    HEX64,
    ApiResponse,
    Call,
    equal_to,
    invalid_hash,
    json_body,
    machine_not_found,
    option,
    page,
    refuse_unknown_keys,
    required_text,
)
from simulator.entities import action_json, av_info_json, file_json, machine_json
from simulator.errors import ApiFailure
from simulator.odata import FieldKind, matches, parse_filter

# deviceavinfo pages 20 rows unless asked otherwise (defender-api.md section 5).
_AV_INFO_PAGE = 20


def stop_and_quarantine(call: Call) -> ApiResponse:
    state, tenant = call.state, call.state.tenant
    machine_id = call.params[0]
    call.facts.machine_id = machine_id.lower()

    body = json_body(call.request)
    comment = required_text(body, "Comment")
    sha1 = required_text(body, "Sha1")
    refuse_unknown_keys(body, {"Comment", "Sha1"})
    call.facts.sha1 = sha1.lower()
    if not HEX40.match(sha1):
        raise invalid_hash(sha1)
    sha1 = sha1.lower()

    device = tenant.device(machine_id) if HEX40.match(machine_id) else None
    if device is None:
        raise machine_not_found(machine_id)
    if not device.is_windows:
        raise ApiFailure(
            400,
            "OsPlatformNotSupported",
            f"OS Platform {device.os_platform} isn't supported for this action.",
        )

    observed = tenant.observation(device.id, sha1)
    known = tenant.file(sha1)
    if observed is None or known is None:
        raise ApiFailure(
            404,
            "ResourceNotFound",
            f"Sha1 {sha1} was not found in machine {device.id}",
        )

    if state.actions.open_action(device.id, sha1, call.now) is not None:
        raise ApiFailure(
            400, "ActiveRequestAlreadyExists", "Action is already in progress"
        )

    action = state.actions.create(
        device=device,
        sha1=sha1,
        requestor=call.caller.requestor,
        comment=comment,
        outcome_hresult=failed_prerequisite(device, known, tenant.trusted_publishers),
        now=call.now,
    )
    call.facts.action_id = action.id
    return ApiResponse(201, action_json(action, call.request.base_url))


def get_machine(call: Call) -> ApiResponse:
    tenant = call.state.tenant
    wanted = call.params[0]
    call.facts.machine_id = wanted.lower()

    # The API takes a device id or a computer name.
    device = tenant.device(wanted) or tenant.device_by_name(wanted)
    if device is None:
        raise machine_not_found(wanted)

    call.facts.machine_id = device.id
    return ApiResponse(200, machine_json(device, call.request.base_url))


_AV_INFO_FIELDS = {
    name: FieldKind.STRING
    for name in (
        "machineId",
        "computerDnsName",
        "osKind",
        "osPlatform",
        "osVersion",
        "avMode",
        "avSignatureVersion",
        "avEngineVersion",
        "avPlatformVersion",
        "quickScanResult",
        "quickScanError",
        "fullScanResult",
        "fullScanError",
        "avIsSignatureUpToDate",
        "avIsEngineUpToDate",
        "avIsPlatformUpToDate",
    )
} | {"rbacGroupId": FieldKind.NUMBER}


def device_av_info(call: Call) -> ApiResponse:
    rows = [av_info_json(device) for device in call.state.tenant.devices]
    text = option(call, "$filter")
    if text is not None:
        comparisons = parse_filter(text, _AV_INFO_FIELDS)
        rows = [row for row in rows if matches(comparisons, row)]
        call.facts.machine_id = equal_to(comparisons, "machineId")

    return ApiResponse(
        200, page(call, rows, "DeviceAvInfo", default_page=_AV_INFO_PAGE)
    )


def get_file(call: Call) -> ApiResponse:
    wanted = call.params[0]
    if not (HEX40.match(wanted) or HEX64.match(wanted)):
        raise invalid_hash(wanted)
    if HEX40.match(wanted):
        call.facts.sha1 = wanted.lower()

    record = call.state.tenant.file(wanted)
    if record is None:
        raise ApiFailure(404, "ResourceNotFound", f"File {wanted} was not found")

    call.facts.sha1 = record.sha1
    return ApiResponse(200, file_json(record, call.request.base_url))
