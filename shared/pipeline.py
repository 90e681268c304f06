"""The pipeline: message bodies in, one outcome per target out.

Every trigger and the command line call ``Pipeline.run``; nothing here knows which
one did. Each target lives through the steps of ``shared/design.md``:

1. extract   the message body yields alerts and targets, or rejections
2. screen    cheap checks without any API call, then the ledger (duplicates)
3. qualify   device and file facts: from the alert, else the cache, else the API
4. guard     kill switch, per-file device cap, dry-run
5. submit    claim the target in the ledger, call StopAndQuarantineFile with a
             comment that names the alert, record the machine action

A failure that concerns one target (a 404 for a file never seen on that device, a
throttled call) becomes that target's outcome; it never stops the other targets.
A target that cannot be finished now (no API budget, a 429, a passing fault,
another instance submitting it) is put on the backlog before ``run`` returns, with
the time to try again; the backlog's trigger brings it back through
``run_deferred``. Only a fault of the state itself (storage unreachable) raises:
the trigger's retry policy then holds the input until storage answers.

Every judgement is noted in the ledger, so a target's history (verdicts, alerts,
machine action) is one entity, whichever instance judged it.
"""

from __future__ import annotations

__all__ = [
    "Message",
    "Outcome",
    "Pipeline",
    "QuarantineApi",
]

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeGuard

from opentelemetry import trace

from shared import policy, telemetry
from shared.alert_formats import extract, extract_document
from shared.backlog import Backlog, DeferredTarget, PoisonRecord, is_fault_deferral
from shared.comment import quarantine_comment
from shared.errors import (
    ApiAuthError,
    ApiError,
    ApiOutcomeUnknown,
    ApiResponseError,
)
from shared.facts_cache import FactsCache
from shared.ledger import (
    Claim,
    Ledger,
    LedgerConflictError,
    LedgerEntityError,
)
from shared.machine_actions import (
    MachineAction,
    MachineActionStatus,
    Submission,
    SubmissionOutcome,
)
from shared.outcome import (
    DEFAULT_DEFER,
    Outcome,
    OutcomeBuilder,
    describe_refusal,
    log_outcome,
    outcome_fields,
    rejected_outcome,
)
from shared.settings import QuarantineMode, Settings
from shared.targets import DeviceFacts, Extraction, FileFacts, Target

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# Other instances were writing the same entry; they are done within seconds.
_CONFLICT_DEFER = timedelta(seconds=15)


@dataclass(frozen=True, slots=True)
class Message:
    """One message body and where it came from."""

    body: bytes | str
    source: str
    enqueued_time: datetime | None = None


class QuarantineApi(Protocol):
    """The Defender calls the pipeline makes; ``shared.defender_api`` provides them."""

    def device_facts(self, device_id: str) -> DeviceFacts | None:
        """Facts about a device, or None when Defender does not know it."""
        ...

    def file_facts(self, sha1: str) -> FileFacts | None:
        """Signature facts about a file, or None when Defender does not know it."""
        ...

    def submit_quarantine(self, device_id: str, sha1: str, comment: str) -> Submission:
        """Call StopAndQuarantineFile for one target; "already in progress" is a
        result, not an error."""
        ...

    def find_submission(
        self, device_id: str, sha1: str, since: datetime
    ) -> Submission | None:
        """The StopAndQuarantineFile action for this target created since
        ``since``, if Defender has one (a submission whose answer was lost)."""
        ...

    def alert_document(self, alert_id: str) -> Mapping[str, Any]:
        """The alert with its evidence, as the API returns it."""
        ...


class Pipeline:
    """Judges and submits the targets of alert messages.

    Args:
        settings: the app settings; ``run`` may override the mode for one call.
        api: Defender, or None when no API is configured (facts not carried by
            the alert are then unknown, and nothing can be submitted).
        ledger: where targets, claims and machine actions are recorded.
        facts_cache: device and file facts fetched from the API, with expiry.
        backlog: where targets that cannot be finished now wait.
        now: the clock, injectable for tests.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        api: QuarantineApi | None,
        ledger: Ledger,
        facts_cache: FactsCache,
        backlog: Backlog,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._api = api
        self._ledger = ledger
        self._facts = facts_cache
        self._backlog = backlog
        self._now = now

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def backlog(self) -> Backlog:
        return self._backlog

    def run(
        self, messages: Iterable[Message], *, dry_run: bool | None = None
    ) -> list[Outcome]:
        """Extract, judge and (unless dry-run) submit every target of the messages."""
        extractions = [
            (
                message.source,
                extract(message.body, source=message.source),
                message.enqueued_time,
            )
            for message in messages
        ]
        return self._run_all(extractions, dry_run=dry_run)

    def run_alert(self, alert_id: str, *, dry_run: bool | None = None) -> list[Outcome]:
        """Fetch one alert with its evidence from Defender and run it."""
        if self._api is None:
            raise ApiError("no Defender API is configured to fetch the alert from")

        source = f"alert:{alert_id}"
        document = self._api.alert_document(alert_id)
        extraction = extract_document(document, source=source)
        return self.run_extractions([(source, extraction)], dry_run=dry_run)

    def run_extractions(
        self,
        extractions: Iterable[tuple[str, Extraction]],
        *,
        dry_run: bool | None = None,
    ) -> list[Outcome]:
        """Judge and submit the targets of already-extracted messages.

        Each extraction comes with the name of the message it was read from.
        """
        return self._run_all(
            [(source, extraction, None) for source, extraction in extractions],
            dry_run=dry_run,
        )

    def run_deferred(self, item: DeferredTarget) -> Outcome:
        """Judge a target from the backlog again, with today's settings and facts.

        Nothing is carried over from its first judgement but its attempts: the
        kill switch, exclusions and the device cap apply as they stand now.
        """
        settings = self._settings
        with tracer.start_as_current_span(
            "pipeline.deferred", attributes={"attempts": item.attempts}
        ):
            return self._traced_target(
                item.target, item.source, settings, _Run(), prior=item
            )

    def _run_all(
        self,
        extractions: list[tuple[str, Extraction, datetime | None]],
        *,
        dry_run: bool | None,
    ) -> list[Outcome]:
        settings = self._settings_for(dry_run)
        run = _Run()
        outcomes: list[Outcome] = []

        with tracer.start_as_current_span(
            "pipeline.run", attributes={"messages": len(extractions)}
        ) as span:
            for source, extraction, enqueued_time in extractions:
                outcomes.extend(
                    rejected_outcome(rejection) for rejection in extraction.rejections
                )
                for target in extraction.targets:
                    outcome = self._traced_target(target, source, settings, run)
                    self._record_delay(outcome, enqueued_time)
                    outcomes.append(outcome)
            span.set_attribute("outcomes", len(outcomes))

        return outcomes

    def _traced_target(
        self,
        target: Target,
        source: str,
        settings: Settings,
        run: _Run,
        *,
        prior: DeferredTarget | None = None,
    ) -> Outcome:
        """Process one target inside its own span; note, keep, log and count it."""
        identity = {
            "alert_id": target.alert_id,
            "device_id": target.device_id,
            "sha1": target.sha1,
        }
        with tracer.start_as_current_span(
            "pipeline.target", attributes=identity
        ) as span:
            try:
                outcome = self._process_target(target, source, settings, run)
            except LedgerEntityError as exc:
                # One unreadable entry must not hold every other target back; it
                # waits on the backlog, and in the poison queue if it stays so.
                outcome = OutcomeBuilder(target, source).make(
                    verdict="defer",
                    reason="ledger_unreadable",
                    error=str(exc),
                    retry_at=self._now() + DEFAULT_DEFER,
                )
            if outcome.verdict == "defer":
                outcome = self._keep_deferred(target, outcome, prior)
            if outcome.reason != "ledger_unreadable":
                self._note_verdict(target, outcome)
            span.set_attributes(outcome_fields(outcome))
            log_outcome(outcome)

        telemetry.record_target_outcome(
            outcome.verdict, outcome.reason, outcome.submission
        )
        return outcome

    def _keep_deferred(
        self, target: Target, outcome: Outcome, prior: DeferredTarget | None
    ) -> Outcome:
        """Put a deferred target on the backlog, or set it aside when it has
        failed too often. A backlog that cannot take it raises: see the module."""
        now = self._now()
        attempts = prior.attempts if prior else 0
        if is_fault_deferral(outcome.reason):
            attempts += 1
        item = DeferredTarget(
            target=target,
            reason=outcome.reason,
            retry_at=outcome.retry_at or now + DEFAULT_DEFER,
            attempts=attempts,
            first_deferred_at=prior.first_deferred_at if prior else now,
            source=outcome.source,
        )

        if attempts > self._settings.backlog_max_attempts:
            self._backlog.poison(
                PoisonRecord(
                    reason=f"attempts_exhausted: {attempts} tries, last "
                    f"{outcome.reason}: {outcome.error or outcome.detail}",
                    body=item.to_message(),
                    poisoned_at=now,
                )
            )
            return dataclasses.replace(outcome, backlog="poisoned")

        self._backlog.defer(item)
        return dataclasses.replace(outcome, backlog="queued")

    def _note_verdict(self, target: Target, outcome: Outcome) -> None:
        self._ledger.record_verdict(
            device_id=target.device_id,
            sha1=target.sha1,
            alert_id=target.alert_id,
            verdict=outcome.verdict,
            reason=outcome.submission or outcome.reason,
            at=self._now(),
        )

    def _record_delay(self, outcome: Outcome, enqueued_time: datetime | None) -> None:
        answered = outcome.submission is not None and outcome.submission != "failed"
        if answered and enqueued_time is not None:
            telemetry.record_submission_delay(enqueued_time, self._now())

    def _settings_for(self, dry_run: bool | None) -> Settings:
        if dry_run is None:
            return self._settings
        mode = QuarantineMode.DRY_RUN if dry_run else QuarantineMode.ENFORCE
        return dataclasses.replace(self._settings, quarantine_mode=mode)

    def _process_target(
        self, target: Target, source: str, settings: Settings, run: _Run
    ) -> Outcome:
        outcome = OutcomeBuilder(target, source)

        screened = policy.screen_target(target, settings)
        if screened is not None:
            return outcome.judged(screened)

        duplicate = self._duplicate_of(target, run, outcome)
        if duplicate is not None:
            return duplicate

        try:
            device = self._device_facts(target, settings)
            file = self._file_facts(target)
        except ApiError as exc:
            return outcome.deferred(exc, self._now())

        outcome.add_facts(policy.describe_target(target, device, file))
        qualified = policy.qualify_target(target, device, file, settings)
        if qualified is not None:
            return outcome.judged(qualified)

        now = self._now()
        devices = self._ledger.devices_submitted(
            target.sha1, since=now - timedelta(hours=1)
        ) + run.would_submit_count(target.sha1)
        guarded = policy.guard_target(
            target, settings, devices_for_file_this_hour=devices
        )
        if guarded.reason is policy.Reason.DRY_RUN:
            run.would_submit(target)
        if guarded.kind is not policy.VerdictKind.SUBMIT:
            return outcome.judged(guarded)

        return self._submit(target, guarded, outcome, settings)

    def _duplicate_of(
        self, target: Target, run: _Run, outcome: OutcomeBuilder
    ) -> Outcome | None:
        entry = self._ledger.find(target.device_id, target.sha1)
        if entry is not None and entry.blocks_resubmission:
            return outcome.duplicate(entry.action_id, entry.action_status)
        if run.already_judged(target):
            return outcome.make(
                verdict="skip",
                reason=str(policy.Reason.DUPLICATE),
                detail="the same device and file were judged earlier in this run",
            )
        return None

    def _device_facts(self, target: Target, settings: Settings) -> DeviceFacts | None:
        """The alert's device facts, completed from the cache or the API if thin."""
        known = target.device
        if self._api is None or not policy.needs_device_facts(known, settings=settings):
            return known

        fetched = self._facts.device(target.device_id, self._api.device_facts)
        return _merge_device(known, fetched)

    def _file_facts(self, target: Target) -> FileFacts | None:
        """The alert's file facts, or Defender's record when those are not enough."""
        known = target.file
        if self._api is None or not policy.needs_file_facts(known):
            return known

        fetched = self._facts.file(target.sha1, self._api.file_facts)
        return fetched if fetched is not None else known

    def _submit(
        self,
        target: Target,
        verdict: policy.Verdict,
        outcome: OutcomeBuilder,
        settings: Settings,
    ) -> Outcome:
        now = self._now()
        if self._api is None:
            return outcome.make(
                verdict="defer",
                reason="api_not_configured",
                detail="enforcement is on but no Defender API is configured",
                retry_at=now + DEFAULT_DEFER,
            )

        try:
            claim = self._ledger.claim(
                device_id=target.device_id,
                sha1=target.sha1,
                alert_id=target.alert_id,
                at=now,
                max_submissions=settings.max_submissions_per_target,
            )
        except LedgerConflictError as exc:
            return outcome.make(
                verdict="defer",
                reason="ledger_conflict",
                error=str(exc),
                retry_at=now + _CONFLICT_DEFER,
            )
        if not claim.granted:
            return outcome.refused_claim(claim)

        return self._submit_claimed(target, claim, verdict, outcome, self._api)

    def _submit_claimed(
        self,
        target: Target,
        claim: Claim,
        verdict: policy.Verdict,
        outcome: OutcomeBuilder,
        api: QuarantineApi,
    ) -> Outcome:
        """Submit under a granted claim; every path ends the claim or records."""
        try:
            submission = self._recovered_submission(target, claim, api)
            if submission is None:
                submission = api.submit_quarantine(
                    target.device_id, target.sha1, quarantine_comment(target.alert_id)
                )
        except ApiError as exc:
            now = self._now()
            if _is_permanent(exc):
                self._ledger.record_refusal(claim, error=describe_refusal(exc), at=now)
                return outcome.failed(exc, verdict)
            self._ledger.release(
                claim, maybe_sent=isinstance(exc, ApiOutcomeUnknown), at=now
            )
            return outcome.deferred(exc, now)

        action = submission.action
        if action is not None and action.is_final:
            telemetry.record_machine_action_outcome(str(action.status))
        action_id = action.id if action else None
        action_status = _status_name(action) if action else None
        self._ledger.record_submission(
            claim, action_id=action_id, action_status=action_status, at=self._now()
        )
        return outcome.make(
            verdict="submit",
            reason=str(verdict.reason),
            submission=str(submission.outcome),
            action_id=action_id,
            action_status=action_status,
            facts=verdict.facts,
        )

    def _recovered_submission(
        self, target: Target, claim: Claim, api: QuarantineApi
    ) -> Submission | None:
        """The action an earlier holder of this target created, if it got that far.

        A claim left by an instance that died mid-submission says since when to
        look; the action found is recorded instead of submitting again.
        """
        if claim.recover_since is None:
            return None

        found = api.find_submission(target.device_id, target.sha1, claim.recover_since)
        if found is not None:
            logger.info(
                "target.submission_recovered",
                extra={
                    "alert_id": target.alert_id,
                    "device_id": target.device_id,
                    "sha1": target.sha1,
                    "action_id": found.action.id if found.action else None,
                },
            )
            return Submission(SubmissionOutcome.RECOVERED_AFTER_UNKNOWN, found.action)
        return None


class _Run:
    """What one call of the pipeline has seen, so a batch judges each target once."""

    def __init__(self) -> None:
        self._judged: set[tuple[str, str]] = set()
        self._would_submit: dict[str, set[str]] = {}

    def already_judged(self, target: Target) -> bool:
        if target.key in self._judged:
            return True
        self._judged.add(target.key)
        return False

    def would_submit(self, target: Target) -> None:
        self._would_submit.setdefault(target.sha1, set()).add(target.device_id)

    def would_submit_count(self, sha1: str) -> int:
        return len(self._would_submit.get(sha1, ()))


def _is_permanent(exc: ApiError) -> TypeGuard[ApiResponseError]:
    """A refusal that resubmitting cannot change (400, 404); auth is not one:
    a person can fix credentials, and the target must wait for them, not be lost."""
    return (
        isinstance(exc, ApiResponseError)
        and not exc.is_retryable
        and not isinstance(exc, ApiAuthError)
    )


def _status_name(action: MachineAction) -> str:
    """The canonical name of a known status ("Cancelled" for "Canceled"), which
    the ledger and the tracker compare; an unknown one as Defender spelled it."""
    if action.status is MachineActionStatus.UNKNOWN:
        return action.raw_status
    return str(action.status)


def _merge_device(
    known: DeviceFacts | None, fetched: DeviceFacts | None
) -> DeviceFacts | None:
    """The API's current facts, with the alert's filling what the API left empty."""
    if fetched is None or known is None:
        return fetched or known

    values = {
        field_.name: getattr(fetched, field_.name)
        if getattr(fetched, field_.name) not in (None, ())
        else getattr(known, field_.name)
        for field_ in dataclasses.fields(DeviceFacts)
    }
    return DeviceFacts(**values)
