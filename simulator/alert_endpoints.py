"""Alerts and indicators: read an alert with its evidence, submit a block indicator."""

from __future__ import annotations

__all__ = ["get_alert", "submit_indicator"]

from typing import Any

from simulator.calls import (
    HEX32,
    HEX40,
    HEX64,
    ApiResponse,
    Call,
    invalid_hash,
    invalid_input,
    json_body,
    option,
    refuse_unknown_keys,
    required_text,
)
from simulator.clock import format_timestamp
from simulator.entities import alert_json
from simulator.errors import ApiFailure


def get_alert(call: Call) -> ApiResponse:
    expand = option(call, "$expand")
    if expand is not None and expand.strip().lower() != "evidence":
        raise ApiFailure(
            400,
            "ODataError",
            f"Invalid OData URI query: '{expand}' cannot be expanded (only evidence).",
        )

    tenant = call.state.tenant
    alert = tenant.alert(call.params[0])
    if alert is None:
        raise ApiFailure(
            404, "ResourceNotFound", f"Alert {call.params[0]} was not found"
        )

    call.facts.machine_id = alert.machine_id
    body = alert_json(
        alert, tenant, call.request.base_url, with_evidence=expand is not None
    )
    return ApiResponse(200, body)


_INDICATOR_TYPES = {
    "FileSha1": HEX40,
    "FileSha256": HEX64,
    "FileMd5": HEX32,
    "CertificateThumbprint": HEX40,
    "IpAddress": None,
    "DomainName": None,
    "Url": None,
}
_INDICATOR_ACTIONS = frozenset(
    {"Warn", "Block", "Audit", "Alert", "AlertAndBlock", "BlockAndRemediate", "Allowed"}
)
_INDICATOR_SEVERITIES = frozenset({"Informational", "Low", "Medium", "High"})
_INDICATOR_REQUIRED = (
    "indicatorValue",
    "indicatorType",
    "action",
    "title",
    "description",
)
_INDICATOR_OPTIONAL = {
    "application": str,
    "expirationTime": str,
    "severity": str,
    "recommendedActions": str,
    "rbacGroupNames": list,
    "educateUrl": str,
    "generateAlert": bool,
}


def submit_indicator(call: Call) -> ApiResponse:
    body = json_body(call.request)
    value, kind, action, title, description = (
        required_text(body, key) for key in _INDICATOR_REQUIRED
    )
    refuse_unknown_keys(body, {*_INDICATOR_REQUIRED, *_INDICATOR_OPTIONAL})
    for key, wanted in _INDICATOR_OPTIONAL.items():
        if key in body and body[key] is not None and not isinstance(body[key], wanted):
            raise invalid_input(f"{key} {body[key]!r}")

    if kind not in _INDICATOR_TYPES:
        raise invalid_input(f"indicatorType {kind}")
    if action not in _INDICATOR_ACTIONS:
        raise invalid_input(f"action {action}")
    severity = body.get("severity")
    if severity is not None and severity not in _INDICATOR_SEVERITIES:
        raise invalid_input(f"severity {severity}")
    if action == "Audit" and body.get("generateAlert") is not True:
        raise invalid_input("action Audit needs generateAlert set to true")

    shape = _INDICATOR_TYPES[kind]
    if shape is not None:
        if not shape.match(value):
            raise invalid_hash(value)
        value = value.lower()
        if kind == "FileSha1":
            call.facts.sha1 = value

    indicator = store_indicator(
        call,
        body,
        value=value,
        kind=kind,
        action=action,
        title=title,
        description=description,
    )
    return ApiResponse(200, indicator)


def store_indicator(
    call: Call,
    body: dict[str, Any],
    *,
    value: str,
    kind: str,
    action: str,
    title: str,
    description: str,
) -> dict[str, Any]:
    # Submitting the same value and type again updates the indicator in place.
    indicators = call.state.indicators
    stamp = format_timestamp(call.now)
    previous = indicators.get((kind, value))
    indicator_id = previous["id"] if previous else str(len(indicators) + 1)
    created = previous["creationTimeDateTimeUtc"] if previous else stamp

    indicator = {
        "@odata.context": f"{call.request.base_url}/api/$metadata#Indicators/$entity",
        "id": indicator_id,
        "indicatorValue": value,
        "indicatorType": kind,
        "action": action,
        "application": body.get("application"),
        "source": call.caller.requestor,
        "sourceType": "AadApp",
        "title": title,
        "description": description,
        "creationTimeDateTimeUtc": created,
        "createdBy": call.caller.app_id,
        "createdBySource": call.caller.requestor,
        "lastUpdateTime": stamp,
        "lastUpdatedBy": call.caller.app_id,
        "expirationTime": body.get("expirationTime"),
        "severity": body.get("severity") or "Informational",
        "recommendedActions": body.get("recommendedActions"),
        "rbacGroupNames": body.get("rbacGroupNames") or [],
        "rbacGroupIds": [],
        "generateAlert": bool(body.get("generateAlert", False)),
        "educateUrl": body.get("educateUrl"),
        "externalId": None,
    }
    indicators[(kind, value)] = indicator
    return indicator
