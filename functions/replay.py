"""HTTP trigger: replay one alert on demand.

``POST /api/replay`` with function-key auth. The body is an alert in any supported
format, or ``{"alertId": "..."}`` to fetch it from Defender. ``?dryRun=true|false``
overrides the app's mode for this call. Answers 200 with one outcome per target,
400 for input that names no readable alert, 413 above the size limit, 404 when the
alert id is unknown to Defender, 502/503 when Defender could not be asked.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func

from shared.defender_client import InvalidIdentifierError, validate_alert_id
from shared.errors import ApiError, ApiResponseError
from shared.pipeline import Message, Outcome
from shared.playbook import get_pipeline, get_settings

logger = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves it untyped


@bp.function_name("replay")
@bp.route(route="replay", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def replay(req: func.HttpRequest) -> func.HttpResponse:
    """Replay one alert through the pipeline and answer with its outcomes."""
    return handle_replay(req)


def handle_replay(req: func.HttpRequest) -> func.HttpResponse:
    """Validate the request, run the alert, encode the outcomes."""
    settings = get_settings()

    body = req.get_body()
    if len(body) > settings.replay_max_body_bytes:
        return _error(
            413, f"body is larger than {settings.replay_max_body_bytes} bytes"
        )

    dry_run_param = req.params.get("dryRun")
    if dry_run_param not in (None, "true", "false"):
        return _error(400, "dryRun must be 'true' or 'false'")
    dry_run = None if dry_run_param is None else dry_run_param == "true"

    alert_id = _requested_alert_id(body)
    if alert_id is not None:
        try:
            validate_alert_id(alert_id, "alertId")
        except InvalidIdentifierError as exc:
            return _error(400, str(exc))

    try:
        outcomes = _run(body, alert_id, dry_run)
    except ApiResponseError as exc:
        if exc.status == 404:
            return _error(404, f"Defender knows no alert {alert_id}")
        return _error(502, f"Defender answered {exc.status} {exc.code}")
    except ApiError as exc:
        logger.warning("replay.api_unavailable", extra={"alert_id": alert_id})
        return _error(503, f"Defender could not be asked: {type(exc).__name__}")

    if outcomes and all(outcome.verdict == "rejected" for outcome in outcomes):
        reasons = sorted({outcome.reason for outcome in outcomes})
        return _error(
            400, "no readable alert in the body: " + ", ".join(reasons), outcomes
        )
    if not outcomes:
        return _error(400, "the body names no target (no file or process evidence)")

    return _json(200, {"outcomes": [outcome.to_json() for outcome in outcomes]})


def _requested_alert_id(body: bytes) -> str | None:
    """The alertId of a ``{"alertId": ...}`` body, or None for an alert body."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(document, dict) and set(document) == {"alertId"}:
        alert_id = document["alertId"]
        # A non-string id is refused by the caller's pattern check, not coerced.
        return alert_id if isinstance(alert_id, str) else ""
    return None


def _run(body: bytes, alert_id: str | None, dry_run: bool | None) -> list[Outcome]:
    pipeline = get_pipeline()
    if alert_id is not None:
        return pipeline.run_alert(alert_id, dry_run=dry_run)
    return pipeline.run([Message(body=body, source="replay")], dry_run=dry_run)


def _error(
    status: int, message: str, outcomes: list[Outcome] | None = None
) -> func.HttpResponse:
    document: dict[str, Any] = {"error": message}
    if outcomes:
        document["outcomes"] = [outcome.to_json() for outcome in outcomes]
    return _json(status, document)


def _json(status: int, document: dict[str, Any]) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(document), status_code=status, mimetype="application/json"
    )
