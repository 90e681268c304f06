"""The exception tree of the playbook.

::

    DefenderQuarantineError
    ├── SettingsError            a setting is missing or malformed (start-up)
    └── ApiError                 anything that went wrong talking to Defender
        ├── ApiRequestError      not sent, or failed before any answer
        ├── ApiBudgetExhausted   not sent: no budget left for that API until a time
        ├── ApiResponseError     Defender answered an error: status, code, message
        │   ├── ApiThrottled     429: carries the time the API asked us to wait
        │   └── ApiAuthError     401/403: never retried; credentials need a person
        └── ApiOutcomeUnknown    a submission was sent but its answer was lost

Parsing never raises to its caller: a malformed event is a rejection value, and a
skip is a verdict, so neither appears here.
"""

from __future__ import annotations

__all__ = [
    "ApiAuthError",
    "ApiBudgetExhausted",
    "ApiError",
    "ApiOutcomeUnknown",
    "ApiRequestError",
    "ApiResponseError",
    "ApiThrottled",
    "DefenderQuarantineError",
    "SettingsError",
]

from datetime import datetime


class DefenderQuarantineError(Exception):
    """Base of every error this product raises on purpose."""


class SettingsError(DefenderQuarantineError):
    """One or more app settings are missing or malformed.

    ``problems`` names each setting and what is wrong with it, never its value.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid settings: " + "; ".join(self.problems))


class ApiError(DefenderQuarantineError):
    """A call to the Defender API did not give a usable answer."""


class ApiRequestError(ApiError):
    """The request was not sent, or the connection failed before an answer came.

    Safe to retry for reads. For a submission, see ``ApiOutcomeUnknown``.
    """


class ApiBudgetExhausted(ApiError):
    """The call was not sent: the API's budget allows no call before ``retry_at``.

    Raised before anything leaves the process, so trying again at ``retry_at`` or
    later is always safe. ``route`` is the API, as a route template such as
    ``machines/{id}/StopAndQuarantineFile``; ``retry_at`` is timezone-aware UTC.
    """

    def __init__(self, route: str, retry_at: datetime) -> None:
        self.route = route
        self.retry_at = retry_at
        super().__init__(
            f"no API budget left for {route} until {retry_at.isoformat()}; "
            "the call was not sent"
        )


class ApiOutcomeUnknown(ApiError):
    """A submission was sent, but no answer arrived (read timeout, dropped connection).

    Resending blindly could create a second machine action; look for an open action
    for the same machine and SHA-1 first.
    """


class ApiResponseError(ApiError):
    """Defender answered with an error status.

    Attributes carry Defender's own words: ``code`` branches, ``message`` is free
    text for people, ``correlation_id`` (``error.target``) is what Microsoft support
    asks for.
    """

    def __init__(
        self,
        *,
        status: int,
        code: str,
        message: str,
        correlation_id: str | None,
        method: str,
        route: str,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.correlation_id = correlation_id
        self.method = method
        self.route = route
        text = f"{method} {route} answered {status} {code or '(no code)'}: {message}"
        if correlation_id:
            text += f" (correlation id {correlation_id})"
        super().__init__(text)

    @property
    def is_retryable(self) -> bool:
        """Whether the same request may succeed later without anyone changing it."""
        return self.status >= 500 or self.status == 429


class ApiThrottled(ApiResponseError):
    """429 TooManyRequests; ``retry_at`` is when the API said we may call again."""

    def __init__(
        self,
        *,
        retry_at: datetime,
        code: str,
        message: str,
        correlation_id: str | None,
        method: str,
        route: str,
    ) -> None:
        self.retry_at = retry_at
        super().__init__(
            status=429,
            code=code,
            message=message,
            correlation_id=correlation_id,
            method=method,
            route=route,
        )


class ApiAuthError(ApiResponseError):
    """401 or 403: the token is missing, expired, or lacks a permission."""
