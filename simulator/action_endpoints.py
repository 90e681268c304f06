"""Machine actions: list with OData filters, get one, cancel one."""

from __future__ import annotations

__all__ = ["cancel_action", "get_action", "list_actions"]

from simulator.actions import ActionStatus, CancelRefused, MachineAction
from simulator.calls import (
    ApiResponse,
    Call,
    action_not_found,
    check_enum,
    equal_to,
    json_body,
    note_action,
    option,
    page,
    refuse_unknown_keys,
    required_text,
)
from simulator.entities import action_json
from simulator.errors import ApiFailure
from simulator.odata import MAX_TOP, FieldKind, matches, parse_filter

_ACTION_FIELDS = {
    "id": FieldKind.STRING,
    "status": FieldKind.STRING,
    "machineId": FieldKind.STRING,
    "type": FieldKind.STRING,
    "requestor": FieldKind.STRING,
    "creationDateTimeUtc": FieldKind.TIME,
}
_ACTION_TYPES = frozenset(
    {
        "RunAntiVirusScan",
        "Offboard",
        "LiveResponse",
        "CollectInvestigationPackage",
        "Isolate",
        "Unisolate",
        "StopAndQuarantineFile",
        "RestrictCodeExecution",
        "UnrestrictCodeExecution",
    }
)
_ACTION_STATUSES = frozenset(status.value for status in ActionStatus)


def list_actions(call: Call) -> ApiResponse:
    actions = list(reversed(call.state.actions.all(call.now)))  # newest first

    text = option(call, "$filter")
    if text is not None:
        comparisons = parse_filter(text, _ACTION_FIELDS)
        check_enum(comparisons, "status", _ACTION_STATUSES)
        check_enum(comparisons, "type", _ACTION_TYPES)
        actions = [a for a in actions if matches(comparisons, _filterable(a))]
        call.facts.machine_id = equal_to(comparisons, "machineId")

    values = [action_json(action) for action in actions]
    return ApiResponse(200, page(call, values, "MachineActions", default_page=MAX_TOP))


def _filterable(action: MachineAction) -> dict[str, object]:
    return {
        "id": action.id,
        "status": action.status.value,
        "machineId": action.machine_id,
        "type": "StopAndQuarantineFile",
        "requestor": action.requestor,
        "creationDateTimeUtc": action.created_at,
    }


def get_action(call: Call) -> ApiResponse:
    action = call.state.actions.get(call.params[0], call.now)
    if action is None:
        raise action_not_found(call.params[0])

    note_action(call, action.id, action.machine_id, action.sha1)
    return ApiResponse(200, action_json(action, call.request.base_url))


def cancel_action(call: Call) -> ApiResponse:
    body = json_body(call.request)
    comment = required_text(body, "Comment")
    refuse_unknown_keys(body, {"Comment"})

    action = call.state.actions.get(call.params[0], call.now)
    if action is None:
        raise action_not_found(call.params[0])
    note_action(call, action.id, action.machine_id, action.sha1)

    try:
        call.state.actions.cancel(
            action, requestor=call.caller.requestor, comment=comment, now=call.now
        )
    except CancelRefused:
        raise ApiFailure(
            400,
            "BadRequest",
            f"Machine action {action.id} is already {action.status.value} and "
            "cannot be cancelled.",
        ) from None
    return ApiResponse(200, action_json(action, call.request.base_url))
