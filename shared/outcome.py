"""Outcomes: what happened to each target, built, logged and counted one way.

An ``Outcome`` is the pipeline's answer for one target (or one piece of input
that named none): a verdict (``submit``, ``skip``, ``defer`` or ``rejected``), a
machine-readable reason, and the details a person or a query needs. The replay
endpoint and the command line print it as JSON; every outcome is also one log
record with the same fields each time (``target.submitted``, ``target.skipped``,
``target.deferred``, ``target.submission_failed``, ``event.rejected``).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_DEFER",
    "Outcome",
    "OutcomeBuilder",
    "defer_reason",
    "describe_refusal",
    "log_outcome",
    "outcome_fields",
    "rejected_outcome",
]

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared import policy, telemetry
from shared.errors import (
    ApiAuthError,
    ApiBudgetExhausted,
    ApiError,
    ApiOutcomeUnknown,
    ApiResponseError,
    ApiThrottled,
)
from shared.ledger import Claim, ClaimRefusal
from shared.targets import Rejection, Target

logger = logging.getLogger("shared.pipeline")

# How long to wait before trying again after a fault that did not say when.
DEFAULT_DEFER = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one target, or to one piece of input that was rejected.

    ``verdict`` is the policy's ``submit``, ``skip`` or ``defer``, or ``rejected``
    for input that named no readable target. ``reason`` is machine-readable.
    """

    verdict: str
    reason: str
    source: str
    alert_id: str | None = None
    device_id: str | None = None
    sha1: str | None = None
    evidence: str | None = None
    format: str | None = None
    position: str = ""
    detail: str = ""
    submission: str | None = None
    action_id: str | None = None
    action_status: str | None = None
    error: str | None = None
    retry_at: datetime | None = None
    backlog: str | None = None
    facts: Mapping[str, str | int | bool | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view, as the replay endpoint and command line print it."""
        document = {
            field_.name: getattr(self, field_.name)
            for field_ in dataclasses.fields(self)
        }
        document["retry_at"] = self.retry_at.isoformat() if self.retry_at else None
        document["facts"] = dict(self.facts)
        return document


class OutcomeBuilder:
    """Builds the outcomes of one target, filling in who and where once."""

    def __init__(self, target: Target, source: str) -> None:
        self._target = target
        self._source = source
        self._facts: dict[str, str | int | bool | None] = {}

    def add_facts(self, facts: Mapping[str, str | int | bool | None]) -> None:
        """Facts every later outcome of this target carries (the rule's win)."""
        self._facts.update(facts)

    def make(self, *, verdict: str, reason: str, **details: Any) -> Outcome:
        details["facts"] = {**self._facts, **details.get("facts", {})}
        return Outcome(
            verdict=verdict,
            reason=reason,
            source=self._source,
            alert_id=self._target.alert_id,
            device_id=self._target.device_id,
            sha1=self._target.sha1,
            evidence=str(self._target.evidence),
            format=str(self._target.alert.format),
            **details,
        )

    def judged(self, verdict: policy.Verdict) -> Outcome:
        return self.make(
            verdict=str(verdict.kind),
            reason=str(verdict.reason),
            detail=verdict.detail,
            facts=verdict.facts,
        )

    def duplicate(self, action_id: str | None, action_status: str | None) -> Outcome:
        return self.make(
            verdict="skip",
            reason=str(policy.Reason.DUPLICATE),
            detail="an action for this device and file is open or succeeded",
            action_id=action_id,
            action_status=action_status,
        )

    def refused_claim(self, claim: Claim) -> Outcome:
        entry = claim.entry
        if claim.refusal is ClaimRefusal.CLAIMED_ELSEWHERE:
            return self.make(
                verdict="defer",
                reason=str(claim.refusal),
                detail="another instance is submitting this device and file",
                retry_at=claim.retry_at,
            )
        if claim.refusal is ClaimRefusal.DUPLICATE:
            return self.duplicate(
                entry.action_id if entry else None,
                entry.action_status if entry else None,
            )
        return self.make(
            verdict="skip",
            reason=str(claim.refusal),
            detail=f"submitted {entry.submissions if entry else '?'} times already; "
            f"last status {entry.action_status if entry else '?'}",
            action_id=entry.action_id if entry else None,
            action_status=entry.action_status if entry else None,
        )

    def deferred(self, exc: ApiError, now: datetime) -> Outcome:
        retry_at = (
            exc.retry_at
            if isinstance(exc, ApiThrottled | ApiBudgetExhausted)
            else now + DEFAULT_DEFER
        )
        return self.make(
            verdict="defer",
            reason=defer_reason(exc),
            error=str(exc),
            retry_at=retry_at,
        )

    def failed(self, exc: ApiResponseError, verdict: policy.Verdict) -> Outcome:
        return self.make(
            verdict="submit",
            reason=str(verdict.reason),
            submission="failed",
            error=describe_refusal(exc),
            facts=verdict.facts,
        )


def rejected_outcome(rejection: Rejection) -> Outcome:
    telemetry.record_rejected_event(rejection.reason)
    logger.warning(
        "event.rejected",
        extra={
            "source": rejection.source,
            "position": rejection.position,
            "reason": rejection.reason,
        },
    )
    return Outcome(
        verdict="rejected",
        reason=rejection.reason,
        source=rejection.source,
        position=rejection.position,
        detail=rejection.detail,
    )


def outcome_fields(outcome: Outcome) -> dict[str, str]:
    """The fields every record of a target carries; unknown ones are left out."""
    fields = {
        "alert_id": outcome.alert_id,
        "device_id": outcome.device_id,
        "sha1": outcome.sha1,
        "verdict": outcome.verdict,
        "reason": outcome.reason,
        "action_id": outcome.action_id,
        "status": outcome.action_status,
        "submission": outcome.submission,
        "retry_at": outcome.retry_at.isoformat() if outcome.retry_at else None,
        "backlog": outcome.backlog,
    }
    return {key: value for key, value in fields.items() if value is not None}


def log_outcome(outcome: Outcome) -> None:
    """One record per target, with the same field names every time."""
    fields = outcome_fields(outcome)

    if outcome.verdict == "defer":
        level = (
            logging.ERROR if outcome.reason == "api_auth_failed" else logging.WARNING
        )
        logger.log(level, "target.deferred", extra=fields)
    elif outcome.submission == "failed":
        logger.warning("target.submission_failed", extra=fields)
    elif outcome.verdict == "submit":
        logger.info("target.submitted", extra=fields)
    else:
        logger.info("target.skipped", extra=fields)


def describe_refusal(exc: ApiResponseError) -> str:
    return f"{exc.code or exc.status}: {exc.message}"


def defer_reason(exc: ApiError) -> str:
    if isinstance(exc, ApiBudgetExhausted):
        return "api_budget_exhausted"
    if isinstance(exc, ApiThrottled):
        return "api_throttled"
    if isinstance(exc, ApiAuthError):
        return "api_auth_failed"
    if isinstance(exc, ApiOutcomeUnknown):
        return "api_outcome_unknown"
    return "api_unavailable"
