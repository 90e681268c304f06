"""Telemetry: Application Insights through OpenTelemetry, configured exactly once.

Who configures the exporter depends on the entry point:

- in Azure, the Functions Python worker does it. With
  ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`` the worker calls
  ``configure_azure_monitor`` itself before the first invocation; calling it again
  here would install a second set of providers and export everything twice. The
  app only takes its tracer and meter from the global providers
  (``start_in_functions_worker``);
- the command line configures it itself when ``APPLICATIONINSIGHTS_CONNECTION_STRING``
  is set (``configure_for_command_line``), and flushes before it exits
  (``flush_telemetry``);
- with no connection string nothing is configured, and the tracer and meter below
  are the API's no-op proxies: a span or a counter then costs a function call.

The structured log records (``target.submitted`` and the rest) need nothing from
here: the OpenTelemetry logging handler exports each as a trace whose custom
dimensions are the record's ``extra`` fields.

Backlog depth and oldest age are gauges set when the depth is read (the command
line's ``backlog``, and each run of the action tracker): between readings the
last value stands.
"""

from __future__ import annotations

__all__ = [
    "METER_NAME",
    "Instruments",
    "TelemetryMode",
    "choose_mode",
    "configure_for_command_line",
    "flush_telemetry",
    "record_api_response",
    "record_backlog_depth",
    "record_backlog_event",
    "record_machine_action_outcome",
    "record_rejected_event",
    "record_submission_delay",
    "record_target_outcome",
    "start_in_functions_worker",
]

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider
from opentelemetry.metrics import Meter

from shared import __version__
from shared.errors import SettingsError
from shared.settings import Settings, load_settings

logger = logging.getLogger(__name__)

METER_NAME = "defender_quarantine"

# The loggers whose records the command line exports: every module of the package.
_EXPORTED_LOGGER = "shared"

# The Defender client traces each call itself, under its route template. The
# library instrumentations would add a second dependency per call, named after
# the full URL, device id included.
_INSTRUMENTATIONS_OFF = ("requests", "urllib", "urllib3")

_FLUSH_TIMEOUT_MILLIS = 10_000


class TelemetryMode(StrEnum):
    """Who exports this process's telemetry, if anyone."""

    OFF = "off"
    WORKER = "worker"
    EXPORTER = "exporter"


def choose_mode(settings: Settings, *, in_functions_worker: bool) -> TelemetryMode:
    """Who should export: the worker, this process, or nobody."""
    if not settings.applicationinsights_connection_string:
        return TelemetryMode.OFF
    if not in_functions_worker:
        return TelemetryMode.EXPORTER
    if settings.worker_telemetry:
        return TelemetryMode.WORKER
    return TelemetryMode.OFF


_lock = threading.Lock()
_mode: TelemetryMode | None = None


def configure_for_command_line(
    settings: Settings,
    *,
    configure: Callable[..., None] | None = None,
) -> TelemetryMode:
    """Configure Azure Monitor for this process when a connection string is set.

    A second call returns the first call's mode and configures nothing: the
    providers are global to the process.

    Args:
        settings: the app settings.
        configure: ``configure_azure_monitor``, replaceable in tests.
    """
    global _mode  # noqa: PLW0603 - one set of providers per process
    with _lock:
        if _mode is not None:
            return _mode

        mode = choose_mode(settings, in_functions_worker=False)
        if mode is TelemetryMode.EXPORTER:
            _configure_exporter(settings, configure)
        _mode = mode

    logger.info("telemetry.configured", extra={"telemetry_mode": str(mode)})
    return mode


def start_in_functions_worker() -> TelemetryMode:
    """Say who exports in a Functions worker; never configure the exporter here.

    Never raises: invalid settings are left for the triggers to report, since an
    error while the app is indexed would hide every function from the host.
    """
    global _mode  # noqa: PLW0603 - see configure_for_command_line
    try:
        settings = load_settings()
    except SettingsError:
        return TelemetryMode.OFF

    mode = choose_mode(settings, in_functions_worker=True)
    with _lock:
        _mode = mode

    if settings.applicationinsights_connection_string and mode is TelemetryMode.OFF:
        # The host alone then sends the log lines, without their custom
        # dimensions, and no metric or span leaves the worker.
        logger.warning(
            "telemetry.worker_telemetry_off",
            extra={"setting": "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"},
        )
    return mode


def flush_telemetry(timeout_millis: int = _FLUSH_TIMEOUT_MILLIS) -> None:
    """Export what the tracer, meter and logger providers still hold.

    The API's default providers have nothing to flush, so this is safe to call
    whether or not telemetry was configured.
    """
    providers: tuple[object, ...] = (
        trace.get_tracer_provider(),
        metrics.get_meter_provider(),
        get_logger_provider(),
    )
    for provider in providers:
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            force_flush(timeout_millis)


def _configure_exporter(
    settings: Settings, configure: Callable[..., None] | None
) -> None:
    if configure is None:
        # Imported here: it loads the exporter, the SDK and every instrumentation,
        # which a process that exports nothing does not need.
        from azure.monitor.opentelemetry import (  # noqa: PLC0415
            configure_azure_monitor,
        )

        configure = configure_azure_monitor

    options: dict[str, Any] = {
        name: {"enabled": False} for name in _INSTRUMENTATIONS_OFF
    }
    configure(
        connection_string=settings.applicationinsights_connection_string,
        logger_name=_EXPORTED_LOGGER,
        instrumentation_options=options,
        # A command-line run is short: telemetry that fails to send is reported
        # by the exporter, not kept on disk for a run that may never come.
        disable_offline_storage=True,
        enable_live_metrics=False,
        enable_performance_counters=False,
    )
    # Decisions are INFO records; without this the root logger's WARNING level
    # would drop them before the exporting handler sees them.
    logging.getLogger(_EXPORTED_LOGGER).setLevel(logging.INFO)


class Instruments:
    """The playbook's counters and histogram, created on one meter.

    Every attribute is a low-cardinality value (verdict, reason, status, route
    template): identifiers belong in log records and spans, never in metrics.
    """

    def __init__(self, meter: Meter) -> None:
        self.target_outcomes = meter.create_counter(
            "quarantine.target_outcomes",
            unit="{target}",
            description="Targets judged, by verdict and reason.",
        )
        self.submissions = meter.create_counter(
            "quarantine.submissions",
            unit="{call}",
            description="StopAndQuarantineFile answers, by result.",
        )
        self.deferrals = meter.create_counter(
            "quarantine.deferrals",
            unit="{target}",
            description="Targets deferred for later, by reason.",
        )
        self.rejected_events = meter.create_counter(
            "quarantine.rejected_events",
            unit="{record}",
            description="Input that named no readable target, by reason.",
        )
        self.api_throttled = meter.create_counter(
            "quarantine.api_throttled",
            unit="{response}",
            description="429 answers from the Defender API, by route template.",
        )
        self.machine_action_outcomes = meter.create_counter(
            "quarantine.machine_action_outcomes",
            unit="{action}",
            description="Machine actions seen in a final status, by status.",
        )
        self.backlog_events = meter.create_counter(
            "quarantine.backlog_events",
            unit="{message}",
            description="Targets put on the backlog or set aside as poison, by "
            "event and reason.",
        )
        self.backlog_depth = meter.create_gauge(
            "quarantine.backlog_depth",
            unit="{message}",
            description="Messages waiting on the backlog queue, delayed ones included.",
        )
        self.backlog_oldest_age = meter.create_gauge(
            "quarantine.backlog_oldest_age",
            unit="s",
            description="Age of the oldest visible backlog message.",
        )
        self.event_to_submission = meter.create_histogram(
            "quarantine.event_to_submission",
            unit="s",
            description="Seconds from an event's enqueue time to its submission.",
        )

    def target_outcome(self, verdict: str, reason: str, submission: str | None) -> None:
        self.target_outcomes.add(1, {"verdict": verdict, "reason": reason})
        if verdict == "defer":
            self.deferrals.add(1, {"reason": reason})
        if submission is not None:
            self.submissions.add(1, {"result": submission})

    def rejected_event(self, reason: str) -> None:
        self.rejected_events.add(1, {"reason": reason})

    def api_response(self, method: str, route: str, status: int | None) -> None:
        if status == 429:
            self.api_throttled.add(1, {"method": method, "route": route})

    def machine_action_outcome(self, status: str) -> None:
        self.machine_action_outcomes.add(1, {"status": status})

    def backlog_event(self, event: str, reason: str) -> None:
        self.backlog_events.add(1, {"event": event, "reason": reason})

    def backlog_level(self, messages: int, oldest_age_seconds: float | None) -> None:
        self.backlog_depth.set(messages)
        if oldest_age_seconds is not None:
            self.backlog_oldest_age.set(oldest_age_seconds)

    def submission_delay(self, enqueued_time: datetime, submitted_at: datetime) -> None:
        # The Event Hubs binding may hand over a naive enqueue time; it is UTC.
        if enqueued_time.tzinfo is None:
            enqueued_time = enqueued_time.replace(tzinfo=UTC)
        seconds = (submitted_at - enqueued_time).total_seconds()
        # A clock behind the broker's would give a negative delay; it is zero.
        self.event_to_submission.record(max(seconds, 0.0))


# A meter from the global provider: a proxy until a provider is set (by the worker
# or by configure_for_command_line), then the real one.
_instruments = Instruments(metrics.get_meter(METER_NAME, __version__))


def record_target_outcome(verdict: str, reason: str, submission: str | None) -> None:
    """Count one target's outcome (and its deferral or submission, if any)."""
    _instruments.target_outcome(verdict, reason, submission)


def record_rejected_event(reason: str) -> None:
    """Count one piece of input that named no readable target."""
    _instruments.rejected_event(reason)


def record_api_response(method: str, route: str, status: int | None) -> None:
    """Count a Defender answer worth a metric (today: 429) by its route template."""
    _instruments.api_response(method, route, status)


def record_machine_action_outcome(status: str) -> None:
    """Count one machine action seen in a final status."""
    _instruments.machine_action_outcome(status)


def record_submission_delay(enqueued_time: datetime, submitted_at: datetime) -> None:
    """Record the time from an event's enqueue time to its target's submission."""
    _instruments.submission_delay(enqueued_time, submitted_at)


def record_backlog_event(event: str, reason: str) -> None:
    """Count a target deferred to the backlog or a message poisoned, by reason."""
    _instruments.backlog_event(event, reason)


def record_backlog_depth(messages: int, oldest_age_seconds: float | None) -> None:
    """Set the backlog's depth and its oldest message's age, as just read."""
    _instruments.backlog_level(messages, oldest_age_seconds)
