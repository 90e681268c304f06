"""The Defender for Endpoint API client: one session, bounded retries, typed answers.

Failures are raised by what is safe to do next (``shared.errors``):

- not sent (connection refused, connect timeout): retried, then ``ApiRequestError``;
- sent, answer lost (read timeout, dropped connection): a read is retried; a
  StopAndQuarantineFile is not resent blindly. The client first lists the
  machine's recent StopAndQuarantineFile actions and returns the one for the same
  SHA-1 if there is one; only when there is none does it send again. If it cannot
  tell, it raises ``ApiOutcomeUnknown``;
- 5xx: retried with exponential backoff and full jitter, then ``ApiResponseError``;
- 429: waits for ``Retry-After`` (or backs off) when the wait is short; a longer
  wait raises ``ApiThrottled`` at once with the time to come back, so the caller
  can defer the target instead of holding an Event Hub partition. With a shared
  budget (below) a 429 is never waited out: the API is held in the budget for
  every instance and ``ApiThrottled`` is raised at once;
- 401: the token is renewed once and the request sent once more; a second 401,
  or a 403, raises ``ApiAuthError``;
- other 4xx: ``ApiResponseError`` with Defender's code, message and correlation id.

With a ``shared.budget.Budget``, every request (each retry included) first spends
one call on its API, keyed by route template. When the API has no budget left,
``ApiBudgetExhausted`` is raised and nothing is sent; a fault of the budget's
storage is an ``ApiRequestError``, since nothing was sent either.

Identifiers are validated before they are placed in a URL, and OData filter values
are quoted, so that no input can reach another endpoint.

The module is longer than most in ``shared/`` on purpose: it holds the whole HTTP
contract with Defender, and every request goes through ``DefenderClient._send``.

Limitations: list calls read the first page only (``$top`` up to 10,000) and ignore
``@odata.nextLink``; the pipeline asks for recent actions of one machine, which fit.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_WAIT_SECONDS",
    "DefenderClient",
    "ErrorBody",
    "InvalidIdentifierError",
    "backoff_seconds",
    "parse_error_body",
    "parse_retry_after",
    "validate_action_id",
    "validate_alert_id",
    "validate_device_id",
    "validate_sha1",
]

import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import requests
from azure.core.exceptions import AzureError
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError

from shared import PRODUCT, __version__, telemetry
from shared.budget import DEVICE_AV_INFO_ROUTE, Budget
from shared.clouds import resolve_cloud
from shared.credentials import (
    PermissionReport,
    TokenProvider,
    build_token_provider,
    check_permissions,
)
from shared.defender_models import (
    AlertDocument,
    AvInfo,
    FileProfile,
    Machine,
    UnexpectedShapeError,
    parse_alert_document,
    parse_av_info,
    parse_file_profile,
    parse_machine,
)
from shared.errors import (
    ApiAuthError,
    ApiError,
    ApiOutcomeUnknown,
    ApiRequestError,
    ApiResponseError,
    ApiThrottled,
    DefenderQuarantineError,
)
from shared.machine_actions import (
    MachineAction,
    MachineActionStatus,
    MachineActionType,
    Submission,
    SubmissionOutcome,
    build_machine_action_filter,
    odata_quote,
    parse_machine_action,
)
from shared.settings import Settings
from shared.targets import is_sha1

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

_T = TypeVar("_T")

DEFAULT_MAX_WAIT_SECONDS = 10.0
_BACKOFF_BASE_SECONDS = 0.5
_BACKOFF_CAP_SECONDS = 8.0

# A StopAndQuarantineFile action waits at most 3 days for its device
# (respond-file-alerts, shared/defender-api.md 1.4), so an older one is not open.
_OPEN_ACTION_LOOKBACK = timedelta(days=3)
# Our clock and Defender's may disagree; an action stamped this much before our
# attempt still counts as the answer to it.
_CLOCK_SKEW = timedelta(minutes=2)
_LOOKUP_TOP = 200
_MAX_TOP = 10_000

_MAX_ERROR_MESSAGE = 500
_MAX_ERROR_BODY_PARSED = 1_048_576
# 502 and 504 come from a gateway whose upstream may already have acted.
_GATEWAY_STATUSES = frozenset({502, 504})


class InvalidIdentifierError(DefenderQuarantineError, ValueError):
    """An identifier is not of the form Defender uses; nothing was sent."""

    def __init__(self, argument: str, expected: str) -> None:
        self.argument = argument
        super().__init__(f"{argument} must be {expected}")


_GUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_ALERT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def validate_device_id(value: object, argument: str = "machine_id") -> str:
    """The lower-case device id, or InvalidIdentifierError naming ``argument``."""
    if not is_sha1(value):
        raise InvalidIdentifierError(argument, "40 hexadecimal characters")
    return str(value).lower()


def validate_sha1(value: object, argument: str = "sha1") -> str:
    """The lower-case SHA-1, or InvalidIdentifierError naming ``argument``."""
    return validate_device_id(value, argument)


def validate_action_id(value: object, argument: str = "action_id") -> str:
    """The lower-case machine action GUID, or InvalidIdentifierError."""
    if not isinstance(value, str) or not _GUID.fullmatch(value):
        raise InvalidIdentifierError(argument, "a GUID (8-4-4-4-12 hexadecimal)")
    return value.lower()


def validate_alert_id(value: object, argument: str = "alert_id") -> str:
    """The alert id unchanged, or InvalidIdentifierError."""
    if not isinstance(value, str) or not _ALERT_ID.fullmatch(value):
        raise InvalidIdentifierError(
            argument, "1 to 128 letters, digits, underscores or hyphens"
        )
    return value


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """What an error answer says, read defensively: any field may be empty."""

    code: str
    message: str
    correlation_id: str | None


_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def parse_error_body(content: bytes, content_type: str | None = None) -> ErrorBody:
    """Defender's ``{"error": {code, message, target}}``, or a description of
    whatever else came back (nothing, HTML from a proxy, another JSON shape).
    """
    if not content.strip():
        return ErrorBody("", "the answer had no body", None)
    if len(content) > _MAX_ERROR_BODY_PARSED:
        return ErrorBody(
            "", f"the answer body of {len(content)} bytes was not read", None
        )

    try:
        document = json.loads(content)
    except ValueError:
        return ErrorBody("", _describe_non_json(content, content_type), None)

    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        # Gateways in front of the API answer {"message": "..."} or other shapes.
        message = document.get("message") if isinstance(document, dict) else None
        text = message if isinstance(message, str) else "an error without details"
        return ErrorBody("", _truncate(text), None)

    code, message, target = (error.get(key) for key in ("code", "message", "target"))
    return ErrorBody(
        code=code if isinstance(code, str) else "",
        message=_truncate(message) if isinstance(message, str) else "",
        correlation_id=target if isinstance(target, str) and target else None,
    )


def _describe_non_json(content: bytes, content_type: str | None) -> str:
    text = content.decode("utf-8", errors="replace")
    kind = content_type.split(";")[0].strip() if content_type else "no content type"
    title = _HTML_TITLE.search(text)
    summary = title.group(1) if title else text
    summary = " ".join(summary.split())
    return _truncate(f"a non-JSON answer ({kind}, {len(content)} bytes): {summary}")


def _truncate(text: str) -> str:
    if len(text) <= _MAX_ERROR_MESSAGE:
        return text
    return text[: _MAX_ERROR_MESSAGE - 1] + "…"


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date).

    None when the header is absent or unreadable; never negative.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()

    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None

    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - now).total_seconds(), 0.0)


def backoff_seconds(retry: int, jitter: float) -> float:
    """The wait before retry number ``retry`` (0 first): full jitter, capped.

    ``jitter`` is a number in [0, 1]; the wait is that share of
    ``min(cap, base * 2**retry)``.
    """
    ceiling = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2.0**retry)
    return ceiling * min(max(jitter, 0.0), 1.0)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Retries:
    """Retries left for one logical call; shared across resends of a submission."""

    __slots__ = ("attempts", "retries_used", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.retries_used = 0
        self.attempts = 0

    @property
    def exhausted(self) -> bool:
        return self.retries_used >= self.total


class _NotSent(Exception):
    """The request never left: safe to send again."""


class _MaybeSent(Exception):
    """The request may have reached Defender, and its answer was lost."""


_MACHINE = "machines/{id}"
_SUBMIT = "machines/{id}/StopAndQuarantineFile"
_FILE = "files/{id}"
_AV_INFO = DEVICE_AV_INFO_ROUTE
_ACTIONS = "machineactions"
_ACTION = "machineactions/{id}"
_CANCEL = "machineactions/{id}/cancel"
_ALERT = "alerts/{id}"


class DefenderClient:
    """Calls the Defender for Endpoint API on behalf of the playbook.

    ``clock``, ``sleep`` and ``jitter`` are injectable so that tests can assert
    every wait without waiting. ``budget``, when given, is spent before every
    request and held on every 429 (see the module docstring).
    """

    def __init__(
        self,
        *,
        api_url: str,
        tokens: TokenProvider,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_retries: int = 4,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        expected_audience: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        session: requests.Session | None = None,
        budget: Budget | None = None,
    ) -> None:
        self._api_root = api_url.rstrip("/") + "/api"
        self._tokens = tokens
        self._timeout = (connect_timeout, read_timeout)
        self._max_retries = max_retries
        self._max_wait = max_wait_seconds
        self._expected_audience = expected_audience
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._session = session or _new_session()
        self._budget = budget

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], None] = time.sleep,
        budget: Budget | None = None,
    ) -> DefenderClient:
        """A client for the configured cloud and credential.

        Raises:
            SettingsError: the credential settings are incomplete or unsafe.
        """
        cloud = resolve_cloud(settings.defender_cloud, settings.defender_api_url)
        tokens = build_token_provider(settings, cloud)

        return cls(
            api_url=cloud.api_url,
            tokens=tokens,
            connect_timeout=settings.connect_timeout_seconds,
            read_timeout=settings.read_timeout_seconds,
            max_retries=settings.max_retries,
            max_wait_seconds=max_wait_seconds,
            expected_audience=cloud.scope.removesuffix("/.default"),
            clock=clock,
            sleep=sleep,
            budget=budget,
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def check_permissions(self) -> PermissionReport:
        """Read the current token's roles and name any permission to grant.

        Never raises: a token that cannot be obtained gives a report saying so.
        """
        try:
            token = self._tokens.get_token()
        except AzureError as exc:
            note = "no token could be obtained: " + _truncate(str(exc))
            logger.warning(
                "defender.permissions_unknown",
                extra={"credential_kind": str(self._tokens.kind), "notes": [note]},
            )
            return PermissionReport(decoded=False, notes=(note,))
        return check_permissions(token, expected_audience=self._expected_audience)

    def submit_stop_and_quarantine(
        self, machine_id: str, sha1: str, comment: str
    ) -> Submission:
        """Ask Defender to stop and quarantine ``sha1`` on ``machine_id``.

        An action already open for the same file is a result
        (``already_in_progress``), not a failure.

        Raises:
            ApiOutcomeUnknown: the request was sent, no answer came back, and the
                list of machine actions could not say whether it took effect (the
                list itself failed, or had no budget left).
            ApiBudgetExhausted: no budget for the request; nothing was sent, or
                what was sent before was found not to have taken effect.
        """
        machine_id = validate_device_id(machine_id)
        sha1 = validate_sha1(sha1)
        if not comment.strip():
            raise ValueError("comment must not be empty")
        url = self._url(_SUBMIT, machine_id)
        body = {"Comment": comment, "Sha1": sha1}
        retries = _Retries(self._max_retries)

        while True:
            attempt_started = self._clock()
            try:
                # A resend spends budget like the first request. If none is left,
                # ApiBudgetExhausted escapes: the lost answer was already looked
                # for and found to have no action, so deferring is safe.
                answer = self._call(
                    "POST", _SUBMIT, url, body=body, idempotent=False, retries=retries
                )
            except ApiOutcomeUnknown as unknown:
                found = self._recover_submission(machine_id, sha1, attempt_started)
                if found is not None:
                    return found
                if retries.exhausted:
                    raise unknown
                retries.retries_used += 1
                self._log_retry(_SUBMIT, "outcome_unknown_not_found", 0.0, retries)
                continue
            except ApiResponseError as error:
                if error.code != "ActiveRequestAlreadyExists":
                    raise
                return Submission(
                    SubmissionOutcome.ALREADY_IN_PROGRESS,
                    self._find_open_action(machine_id, sha1),
                )
            break

        action = self._parse(parse_machine_action, answer, "POST", _SUBMIT)
        # Defender sometimes answers a duplicate with the action already pending
        # (microsoft-365-docs#5903): an action older than this attempt is not new.
        if (
            action.created is not None
            and action.created < attempt_started - _CLOCK_SKEW
        ):
            return Submission(SubmissionOutcome.ALREADY_IN_PROGRESS, action)
        return Submission(SubmissionOutcome.CREATED, action)

    def get_machine(self, machine_id: str) -> Machine:
        """The machine entity of ``machine_id``."""
        url = self._url(_MACHINE, validate_device_id(machine_id))
        answer = self._call("GET", _MACHINE, url)
        return self._parse(parse_machine, answer, "GET", _MACHINE)

    def get_file(self, sha1: str) -> FileProfile:
        """The file entity of ``sha1``."""
        url = self._url(_FILE, validate_sha1(sha1))
        answer = self._call("GET", _FILE, url)
        return self._parse(parse_file_profile, answer, "GET", _FILE)

    def get_av_info(self, machine_id: str) -> AvInfo | None:
        """The freshest antivirus report row of ``machine_id``, or None."""
        machine_id = validate_device_id(machine_id)
        query = {"$filter": "machineId eq " + odata_quote(machine_id)}
        answer = self._call("GET", _AV_INFO, self._url(_AV_INFO, query=query))

        rows = [
            row
            for row in self._parse(_rows(parse_av_info), answer, "GET", _AV_INFO)
            if row.machine_id == machine_id
        ]
        if not rows:
            return None
        return max(
            rows, key=lambda row: row.data_refreshed or datetime.min.replace(tzinfo=UTC)
        )

    def get_machine_action(self, action_id: str) -> MachineAction:
        """The machine action ``action_id``, with its current status."""
        url = self._url(_ACTION, validate_action_id(action_id))
        answer = self._call("GET", _ACTION, url)
        return self._parse(parse_machine_action, answer, "GET", _ACTION)

    def list_machine_actions(
        self,
        *,
        machine_id: str | None = None,
        action_type: MachineActionType | None = None,
        statuses: Sequence[MachineActionStatus] = (),
        requestor: str | None = None,
        created_since: datetime | None = None,
        top: int = 100,
    ) -> tuple[MachineAction, ...]:
        """Machine actions matching every given condition (first page only)."""
        if not 1 <= top <= _MAX_TOP:
            raise ValueError(f"top must be between 1 and {_MAX_TOP}")
        expression = build_machine_action_filter(
            machine_id=validate_device_id(machine_id)
            if machine_id is not None
            else None,
            action_type=action_type,
            statuses=statuses,
            requestor=requestor,
            created_since=created_since,
        )
        query = {"$filter": expression} if expression else {}
        query["$top"] = str(top)

        answer = self._call("GET", _ACTIONS, self._url(_ACTIONS, query=query))
        return self._parse(_rows(parse_machine_action), answer, "GET", _ACTIONS)

    def cancel_machine_action(self, action_id: str, comment: str) -> MachineAction:
        """Cancel an action that has not reached a final status; returns it."""
        url = self._url(_CANCEL, validate_action_id(action_id))
        if not comment.strip():
            raise ValueError("comment must not be empty")
        # Cancelling twice is harmless, so a lost answer may be resent.
        answer = self._call("POST", _CANCEL, url, body={"Comment": comment})
        return self._parse(parse_machine_action, answer, "POST", _CANCEL)

    def get_alert(self, alert_id: str) -> AlertDocument:
        """The alert ``alert_id`` with its evidence, as Defender returned it."""
        # The single-alert GET shows evidence in its example; asking for it
        # explicitly costs nothing (shared/defender-api.md, 6.1).
        query = {"$expand": "evidence"}
        url = self._url(_ALERT, validate_alert_id(alert_id), query=query)
        answer = self._call("GET", _ALERT, url)
        return self._parse(parse_alert_document, answer, "GET", _ALERT)

    def quarantine_actions(
        self, machine_id: str, sha1: str, *, created_since: datetime
    ) -> tuple[MachineAction, ...]:
        """The StopAndQuarantineFile actions for ``sha1`` on ``machine_id`` created
        since ``created_since``, newest first (one page of the list)."""
        actions = self.list_machine_actions(
            machine_id=machine_id,
            action_type=MachineActionType.STOP_AND_QUARANTINE_FILE,
            created_since=created_since,
            top=_LOOKUP_TOP,
        )
        mine = [action for action in actions if action.concerns_file(sha1)]
        return tuple(sorted(mine, key=_creation, reverse=True))

    def _recover_submission(
        self, machine_id: str, sha1: str, attempt_started: datetime
    ) -> Submission | None:
        since = attempt_started - _CLOCK_SKEW
        try:
            actions = self.quarantine_actions(
                machine_id, sha1, created_since=attempt_started - _OPEN_ACTION_LOOKBACK
            )
        except ApiError as error:
            # ApiBudgetExhausted lands here too: the list was not sent, but the
            # submission before it may have been, so its caller must not read
            # "nothing was sent" into it. The budget error stays as the cause.
            raise ApiOutcomeUnknown(
                "StopAndQuarantineFile was sent without an answer, and the list of "
                "machine actions could not be read to tell whether it took effect; "
                "check again before resending"
            ) from error

        recent = [a for a in actions if _created_since(a, since)]
        if recent:
            action = recent[0]
            logger.info(
                "defender.submission_recovered",
                extra={"device_id": machine_id, "sha1": sha1, "action_id": action.id},
            )
            return Submission(SubmissionOutcome.RECOVERED_AFTER_UNKNOWN, action)

        still_open = [a for a in actions if a.is_open]
        if still_open:
            return Submission(SubmissionOutcome.ALREADY_IN_PROGRESS, still_open[0])
        return None

    def _find_open_action(self, machine_id: str, sha1: str) -> MachineAction | None:
        try:
            actions = self.quarantine_actions(
                machine_id, sha1, created_since=self._clock() - _OPEN_ACTION_LOOKBACK
            )
        except ApiError as error:
            # The submission's outcome is known (an action is open); only its id
            # is missing, and the tracker can still find it later.
            logger.warning(
                "defender.open_action_lookup_failed",
                extra={"device_id": machine_id, "sha1": sha1, "error": str(error)},
            )
            return None

        still_open = [a for a in actions if a.is_open]
        return still_open[0] if still_open else None

    def _url(
        self,
        route: str,
        identifier: str | None = None,
        *,
        query: Mapping[str, str] | None = None,
    ) -> str:
        path = route
        if identifier is not None:
            # Identifiers are validated already; quoting is a second lock.
            path = route.replace("{id}", quote(identifier, safe=""))
        url = f"{self._api_root}/{path}"

        if query:
            url += "?" + "&".join(
                f"{key}={quote(value, safe='')}" for key, value in query.items()
            )
        return url

    def _call(
        self,
        method: str,
        route: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        idempotent: bool = True,
        retries: _Retries | None = None,
    ) -> Any:
        """Send with retries; return the decoded JSON answer.

        A request that is not ``idempotent`` is never resent here once it may have
        been sent: a lost answer raises ``ApiOutcomeUnknown`` for the caller to
        resolve. ``retries`` lets several calls share one count of retries.

        Every attempt spends budget first; ``ApiBudgetExhausted`` from the budget
        leaves at once, with nothing sent.
        """
        retries = retries or _Retries(self._max_retries)
        refreshed = False
        renew_token = False

        while True:
            token = self._token(force_refresh=renew_token)
            renew_token = False
            self._spend_budget(route)
            try:
                response = self._send(
                    method, route, url, body=body, token=token, retries=retries
                )
            except _NotSent as exc:
                reason, wait = "connection_failed", self._backoff(retries)
                if retries.exhausted:
                    raise ApiRequestError(
                        f"{method} {route} could not reach Defender: {exc}"
                    ) from exc.__cause__
            except _MaybeSent as exc:
                if not idempotent:
                    raise ApiOutcomeUnknown(
                        f"{method} {route} was sent but its answer was lost: {exc}"
                    ) from exc.__cause__
                reason, wait = "answer_lost", self._backoff(retries)
                if retries.exhausted:
                    raise ApiRequestError(
                        f"{method} {route} got no answer from Defender: {exc}"
                    ) from exc.__cause__
            else:
                status = response.status_code
                if status < 300:
                    return self._decode(response, method, route)
                if status == 401 and not refreshed:
                    refreshed = renew_token = True
                    self._log_retry(route, "unauthorized", 0.0, retries)
                    continue
                reason, wait = self._judge_failure(
                    response, method, route, retries, idempotent
                )

            retries.retries_used += 1
            self._log_retry(route, reason, wait, retries)
            self._sleep(wait)

    def _judge_failure(
        self,
        response: requests.Response,
        method: str,
        route: str,
        retries: _Retries,
        idempotent: bool,
    ) -> tuple[str, float]:
        """The reason and wait for a retry, or the error to raise instead."""
        status = response.status_code
        error = parse_error_body(response.content, response.headers.get("Content-Type"))

        if status == 429:
            asked = parse_retry_after(
                response.headers.get("Retry-After"), self._clock()
            )
            wait = asked if asked is not None else self._backoff(retries)
            # With a shared budget the wait is never spent here: an Event Hub
            # handler must not sleep, and every instance must stop calling.
            if self._budget is not None or wait > self._max_wait or retries.exhausted:
                # Without Retry-After, come back after the longest wait this
                # retry could have drawn, not a lucky short one.
                if asked is None:
                    wait = backoff_seconds(retries.retries_used, 1.0)
                retry_at = self._clock() + timedelta(seconds=wait)
                self._hold_budget(route, retry_at)
                raise ApiThrottled(
                    retry_at=retry_at,
                    code=error.code or "TooManyRequests",
                    message=error.message,
                    correlation_id=error.correlation_id,
                    method=method,
                    route=route,
                )
            return "throttled", wait

        if status >= 500 and not idempotent and status in _GATEWAY_STATUSES:
            raise ApiOutcomeUnknown(
                f"{method} {route} answered {status} from a gateway; Defender may "
                "have acted on it"
            )
        if status >= 500 and not retries.exhausted:
            return f"status_{status}", self._backoff(retries)

        kind = ApiAuthError if status in (401, 403) else ApiResponseError
        raise kind(
            status=status,
            code=error.code,
            message=error.message,
            correlation_id=error.correlation_id,
            method=method,
            route=route,
        )

    def _send(
        self,
        method: str,
        route: str,
        url: str,
        *,
        body: Mapping[str, Any] | None,
        token: str,
        retries: _Retries,
    ) -> requests.Response:
        """One HTTP exchange; every request to Defender passes through here.

        Each exchange is one dependency span named by its route template. The
        span's URL is the template too: ids stay out of dependency names (one
        row per route in Application Insights, not one per device), and the
        bearer token, sent as a header, is never an attribute.
        """
        retries.attempts += 1
        started = time.perf_counter()
        status: int | None = None
        failure: str | None = None
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "url.full": f"{self._api_root}/{route}",
            "url.template": route,
            "defender.attempt": retries.attempts,
        }

        with tracer.start_as_current_span(
            f"{method} {route}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                response = self._session.request(
                    method,
                    url,
                    headers={"Authorization": f"Bearer {token}"},
                    json=body,
                    timeout=self._timeout,
                    # A redirect would carry the bearer token to wherever it points.
                    allow_redirects=False,
                )
                status = response.status_code
                span.set_attribute("http.response.status_code", status)
                if status >= 400:
                    span.set_status(Status(StatusCode.ERROR))
                return response
            except requests.RequestException as exc:
                failure = type(exc).__name__
                span.set_attribute("error.type", failure)
                raise _classify_transport_error(exc) from exc
            finally:
                telemetry.record_api_response(method, route, status)
                logger.debug(
                    "defender.request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "failure": failure,
                        "attempt": retries.attempts,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )

    def _spend_budget(self, route: str) -> None:
        """Count the request about to be sent against its API's budget.

        Raises:
            ApiBudgetExhausted: no budget now; nothing was sent.
            ApiRequestError: the budget's storage failed; nothing was sent.
        """
        if self._budget is None:
            return
        try:
            self._budget.spend(route)
        except AzureError as exc:
            # The storage error's text may quote its request; its type is enough
            # here, and it stays attached as the cause.
            raise ApiRequestError(
                f"the API budget for {route} could not be read or written "
                f"({type(exc).__name__}); nothing was sent"
            ) from exc

    def _hold_budget(self, route: str, until: datetime) -> None:
        """Stop every instance calling ``route`` before ``until``, if shared."""
        if self._budget is None:
            return
        try:
            self._budget.hold(route, until)
        except AzureError as exc:
            # The 429 is still raised and the caller defers; another instance
            # that calls this API meets its own 429 and holds it then.
            logger.warning(
                "defender.budget_hold_failed",
                extra={
                    "route": route,
                    "retry_at": until.isoformat(),
                    "error": type(exc).__name__,
                },
            )

    def _token(self, *, force_refresh: bool) -> str:
        try:
            return self._tokens.get_token(force_refresh=force_refresh)
        except AzureError as exc:
            raise ApiRequestError(
                f"no Defender token could be obtained ({self._tokens.kind}): "
                + _truncate(str(exc))
            ) from exc

    def _backoff(self, retries: _Retries) -> float:
        return backoff_seconds(retries.retries_used, self._jitter())

    def _decode(self, response: requests.Response, method: str, route: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._unexpected(
                response.status_code, method, route, "not JSON"
            ) from None

    def _parse(
        self, parser: Callable[[Any], _T], answer: Any, method: str, route: str
    ) -> _T:
        try:
            return parser(answer)
        except UnexpectedShapeError as exc:
            raise self._unexpected(200, method, route, str(exc)) from exc

    @staticmethod
    def _unexpected(
        status: int, method: str, route: str, detail: str
    ) -> ApiResponseError:
        return ApiResponseError(
            status=status,
            code="UnexpectedResponse",
            message=f"the answer could not be read: {detail}",
            correlation_id=None,
            method=method,
            route=route,
        )

    @staticmethod
    def _log_retry(route: str, reason: str, wait: float, retries: _Retries) -> None:
        logger.info(
            "defender.retry",
            extra={
                "route": route,
                "reason": reason,
                "wait_seconds": round(wait, 3),
                "retry": retries.retries_used,
            },
        )


def _new_session() -> requests.Session:
    session = requests.Session()
    # The client owns retries: urllib3 must not resend anything behind its back,
    # least of all a StopAndQuarantineFile.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = f"{PRODUCT}/{__version__}"
    session.headers["Accept"] = "application/json"
    return session


def _classify_transport_error(exc: requests.RequestException) -> Exception:
    # Connect timeouts, refused connections, failed name lookups and TLS
    # handshakes happen before a byte of the request is sent.
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return _NotSent(type(exc).__name__)
    if isinstance(exc, requests.ConnectionError):
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, MaxRetryError) and isinstance(
            cause.reason, NewConnectionError
        ):
            return _NotSent("connection refused or host not found")
    return _MaybeSent(type(exc).__name__)


def _rows(parser: Callable[[Any], _T]) -> Callable[[Any], tuple[_T, ...]]:
    def parse_rows(answer: Any) -> tuple[_T, ...]:
        rows = answer.get("value") if isinstance(answer, Mapping) else None
        if not isinstance(rows, list):
            raise UnexpectedShapeError("the list has no value array")
        return tuple(parser(row) for row in rows)

    return parse_rows


def _created_since(action: MachineAction, since: datetime) -> bool:
    return action.created is not None and action.created >= since


def _creation(action: MachineAction) -> datetime:
    """Sort key: when the action was created; an unknown time sorts oldest."""
    return action.created or datetime.min.replace(tzinfo=UTC)
