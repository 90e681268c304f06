"""One API call as the endpoints see it, and the rules they share.

Body parameters are case-sensitive and unknown ones are refused (the strictest
reading, docs/simulator.md); errors use Defender's codes and message templates
(defender-api.md section 1.6).
"""

from __future__ import annotations

__all__ = [
    "HEX32",
    "HEX40",
    "HEX64",
    "ApiRequest",
    "ApiResponse",
    "Call",
    "Facts",
    "action_not_found",
    "check_enum",
    "equal_to",
    "invalid_hash",
    "invalid_input",
    "json_body",
    "machine_not_found",
    "note_action",
    "option",
    "page",
    "refuse_unknown_keys",
    "required_text",
]

import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.auth import Caller
from simulator.errors import ApiFailure
from simulator.odata import MAX_TOP, Comparison, parse_count
from simulator.state import SimulatorState

HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One HTTP request under ``/api``, decoded."""

    method: str
    path: str
    query: Mapping[str, str]
    body: bytes = b""
    authorization: str | None = None
    content_type: str | None = None
    base_url: str = "http://127.0.0.1"


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """The answer, and the facts of the call that the request log keeps."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()
    machine_id: str | None = None
    sha1: str | None = None
    action_id: str | None = None
    app_id: str | None = None


@dataclass(slots=True)
class Facts:
    """What a call was about, filled in as the handler learns it."""

    machine_id: str | None = None
    sha1: str | None = None
    action_id: str | None = None
    app_id: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """A call that passed the gates, as an endpoint handler receives it."""

    state: SimulatorState
    request: ApiRequest
    caller: Caller
    params: tuple[str, ...]
    options: dict[str, str]
    now: float
    facts: Facts = field(default_factory=Facts)


def option(call: Call, name: str) -> str | None:
    """The value of a ``$`` query option, its name matched in any letter case."""
    for key, value in call.options.items():
        if key.lower() == name:
            return value
    return None


def json_body(request: ApiRequest) -> dict[str, Any]:
    """The body as a JSON object; 400 InvalidRequestBody when it is not one."""
    media_type = (request.content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiFailure(
            400,
            "InvalidRequestBody",
            "Invalid request body: Content-Type must be application/json.",
        )

    try:
        body = json.loads(request.body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiFailure(400, "InvalidRequestBody", "Invalid request body.") from None
    if not isinstance(body, dict):
        raise ApiFailure(400, "InvalidRequestBody", "Invalid request body.")
    return body


def required_text(body: dict[str, Any], key: str) -> str:
    # Body parameters are case-sensitive: "sha1" does not stand in for "Sha1".
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ApiFailure(
            400, "MissingRequiredParameter", f"Parameter {key} is missing."
        )
    if not isinstance(value, str):
        raise ApiFailure(400, "InvalidRequestBody", "Invalid request body.")
    return value


def refuse_unknown_keys(body: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise ApiFailure(
            400,
            "InvalidRequestBody",
            f"Invalid request body: unknown parameters {', '.join(unknown)}.",
        )


def check_enum(
    comparisons: list[Comparison], name: str, allowed: frozenset[str]
) -> None:
    for comparison in comparisons:
        if comparison.field == name and comparison.value not in allowed:
            raise ApiFailure(
                400,
                "ODataError",
                f"Invalid OData URI query: '{comparison.value}' is not a valid {name}.",
            )


def equal_to(comparisons: list[Comparison], name: str) -> str | None:
    for comparison in comparisons:
        if comparison.field == name and comparison.op == "eq":
            return str(comparison.value)
    return None


def page(
    call: Call, values: list[dict[str, Any]], entity_set: str, *, default_page: int
) -> dict[str, Any]:
    top_text = option(call, "$top")
    skip_text = option(call, "$skip")
    top = parse_count("$top", top_text, maximum=MAX_TOP) if top_text else None
    skip = parse_count("$skip", skip_text) if skip_text else 0
    size = default_page if top is None else top

    base_url = call.request.base_url
    page: dict[str, Any] = {
        "@odata.context": f"{base_url}/api/$metadata#{entity_set}",
        "value": values[skip : skip + size],
    }
    if top is None and skip + size < len(values):
        query = {
            key: value for key, value in call.request.query.items() if key != "$skip"
        }
        query["$skip"] = str(skip + size)
        link = f"{base_url}{call.request.path}?{urllib.parse.urlencode(query)}"
        page["@odata.nextLink"] = link
    return page


def note_action(call: Call, action_id: str, machine_id: str, sha1: str) -> None:
    call.facts.action_id = action_id
    call.facts.machine_id = machine_id
    call.facts.sha1 = sha1


def machine_not_found(machine_id: str) -> ApiFailure:
    return ApiFailure(404, "ResourceNotFound", f"Machine {machine_id} was not found")


def action_not_found(action_id: str) -> ApiFailure:
    return ApiFailure(
        404, "ResourceNotFound", f"MachineAction {action_id} was not found"
    )


def invalid_hash(value: str) -> ApiFailure:
    return ApiFailure(400, "InvalidHashValue", f"Hash value {value} is invalid.")


def invalid_input(what: str) -> ApiFailure:
    return ApiFailure(400, "InvalidInput", f"Invalid input {what}.")
