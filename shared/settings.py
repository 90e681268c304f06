"""App settings: read once from the environment, converted, validated, frozen.

Every setting the product knows is declared once in ``SETTINGS`` with its group,
default, meaning and a safe local value. ``local.settings.sample.json`` and the
README's settings table are checked against this list by a test, so the three
cannot drift apart. Nothing else in the product reads ``os.environ``.

A few settings are read by the Functions host rather than by this code (the Event
Hub name, its consumer group and connection); they are declared here too, marked
``host_only``, so that the sample and the README stay complete.
"""

from __future__ import annotations

__all__ = [
    "SETTINGS",
    "QuarantineMode",
    "SettingSpec",
    "Settings",
    "UnknownAvMode",
    "load_settings",
]

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.errors import SettingsError
from shared.targets import is_sha1


class QuarantineMode(StrEnum):
    """Whether verdicts are carried out, or only recorded."""

    DRY_RUN = "dry-run"
    ENFORCE = "enforce"


class UnknownAvMode(StrEnum):
    """What to do with a device whose antivirus mode Defender cannot tell."""

    SKIP = "skip"
    SUBMIT = "submit"


SEVERITIES = ("informational", "low", "medium", "high")

# The geography and sovereign-cloud names DEFENDER_CLOUD accepts; the table that
# maps each to its hosts lives with the Defender API client.
CLOUDS = (
    "global",
    "us",
    "eu",
    "uk",
    "au",
    "swa",
    "ina",
    "aea",
    "gcc",
    "gcc-high",
    "dod",
)


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One app setting: how it is named, documented, defaulted and converted."""

    name: str
    group: str
    meaning: str
    default: str
    sample: str
    secret: bool = False
    host_only: bool = False


_G_MODE = "Mode and guardrails"
_G_API = "Defender API"
_G_POLICY = "Policy"
_G_STATE = "State and backlog"
_G_HOST = "Functions host"
_G_MONITOR = "Monitoring"

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "QUARANTINE_MODE",
        _G_MODE,
        "`dry-run` records every verdict and submits nothing; `enforce` submits.",
        "dry-run",
        "dry-run",
    ),
    SettingSpec(
        "QUARANTINE_KILL_SWITCH",
        _G_MODE,
        "`true` stops every submission at once, whatever the mode.",
        "false",
        "false",
    ),
    SettingSpec(
        "MAX_DEVICES_PER_FILE_PER_HOUR",
        _G_MODE,
        "Distinct devices one SHA-1 may be submitted for in an hour; "
        "targets beyond are held with a reason.",
        "50",
        "50",
    ),
    SettingSpec(
        "MAX_SUBMISSIONS_PER_TARGET",
        _G_MODE,
        "Submissions of one device and file in all; after Failed, TimeOut or "
        "Cancelled a later alert may submit again until this many.",
        "3",
        "3",
    ),
    SettingSpec(
        "API_BUDGET_SHARE_PERCENT",
        _G_MODE,
        "Share of each Defender API rate limit this app may spend; lower it when "
        "other tools use the same app registration.",
        "100",
        "100",
    ),
    SettingSpec(
        "DEFENDER_CLOUD",
        _G_API,
        "Which Defender cloud to call: " + ", ".join(f"`{c}`" for c in CLOUDS) + ".",
        "global",
        "global",
    ),
    SettingSpec(
        "DEFENDER_API_URL",
        _G_API,
        "Overrides the API host of the cloud (a proxy, or the local simulator).",
        "",
        "http://127.0.0.1:8650",
    ),
    SettingSpec(
        "DEFENDER_TOKEN",
        _G_API,
        "A fixed bearer token for local development; refused unless the API host "
        "is on loopback.",
        "",
        "local-development-token",
        secret=True,
    ),
    SettingSpec(
        "DEFENDER_TENANT_ID",
        _G_API,
        "Entra ID tenant of the app registration (client secret or certificate).",
        "",
        "",
    ),
    SettingSpec(
        "DEFENDER_CLIENT_ID",
        _G_API,
        "Application (client) id of the app registration.",
        "",
        "",
    ),
    SettingSpec(
        "DEFENDER_CLIENT_SECRET",
        _G_API,
        "Client secret of the app registration; prefer a Key Vault reference.",
        "",
        "",
        secret=True,
    ),
    SettingSpec(
        "DEFENDER_CLIENT_CERTIFICATE_PATH",
        _G_API,
        "Path to a PEM or PKCS12 client certificate of the app registration.",
        "",
        "",
    ),
    SettingSpec(
        "DEFENDER_MANAGED_IDENTITY_CLIENT_ID",
        _G_API,
        "Client id of a user-assigned managed identity; empty uses the "
        "system-assigned one when no other credential is set.",
        "",
        "",
    ),
    SettingSpec(
        "DEFENDER_CONNECT_TIMEOUT_SECONDS",
        _G_API,
        "Seconds to wait for a TCP/TLS connection to the API.",
        "5",
        "5",
    ),
    SettingSpec(
        "DEFENDER_READ_TIMEOUT_SECONDS",
        _G_API,
        "Seconds to wait for an answer once a request is sent.",
        "30",
        "30",
    ),
    SettingSpec(
        "DEFENDER_MAX_RETRIES",
        _G_API,
        "Retries of one call after a connection error, 5xx or 429.",
        "4",
        "4",
    ),
    SettingSpec(
        "ALLOW_WINDOWS_SERVER",
        _G_POLICY,
        "`true` lets Windows Server devices be targets (the API page names "
        "clients only).",
        "false",
        "false",
    ),
    SettingSpec(
        "ALLOW_INACTIVE_DEVICES",
        _G_POLICY,
        "`true` submits for inactive devices; the action then waits up to 3 days "
        "for the device.",
        "true",
        "true",
    ),
    SettingSpec(
        "UNKNOWN_AV_MODE",
        _G_POLICY,
        "`skip` or `submit` a target whose device antivirus mode is unknown.",
        "skip",
        "skip",
    ),
    SettingSpec(
        "MIN_ALERT_SEVERITY",
        _G_POLICY,
        "Lowest alert severity acted on: " + ", ".join(SEVERITIES) + ".",
        "medium",
        "medium",
    ),
    SettingSpec(
        "ALLOWED_DETECTION_SOURCES",
        _G_POLICY,
        "Comma-separated detection sources acted on (case-insensitive); "
        "empty allows all.",
        "",
        "",
    ),
    SettingSpec(
        "ALLOWED_EVIDENCE_ROLES",
        _G_POLICY,
        "Comma-separated evidence roles acted on (case-insensitive); empty allows all.",
        "",
        "",
    ),
    SettingSpec(
        "TRUSTED_PUBLISHERS",
        _G_POLICY,
        "Semicolon-separated signer or publisher names whose validly signed files "
        "are never touched.",
        "",
        "",
    ),
    SettingSpec(
        "EXCLUDED_DEVICE_IDS",
        _G_POLICY,
        "Comma-separated Defender device ids never acted on.",
        "",
        "",
    ),
    SettingSpec(
        "EXCLUDED_DEVICE_TAGS",
        _G_POLICY,
        "Comma-separated device tags never acted on (case-insensitive).",
        "",
        "",
    ),
    SettingSpec(
        "EXCLUDED_SHA1S",
        _G_POLICY,
        "Comma-separated file SHA-1s never acted on.",
        "",
        "",
    ),
    SettingSpec(
        "EXCLUDED_PATH_PATTERNS",
        _G_POLICY,
        "Semicolon-separated folder-path globs (case-insensitive, `*` and `?`) "
        "never acted on.",
        "",
        "",
    ),
    SettingSpec(
        "FACT_CACHE_SECONDS",
        _G_POLICY,
        "How long device and file facts fetched from the API are reused.",
        "3600",
        "3600",
    ),
    SettingSpec(
        "AzureWebJobsStorage",
        _G_STATE,
        "The function app's storage account: the host's checkpoints and timers, "
        "and the playbook's ledger, API budget and backlog. Empty on the command "
        "line keeps that state in memory for the run.",
        "",
        "UseDevelopmentStorage=true",
        secret=True,
    ),
    SettingSpec(
        "AzureWebJobsStorage__accountName",
        _G_STATE,
        "Instead of a connection string: the storage account name, reached with "
        "the app's managed identity.",
        "",
        "",
    ),
    SettingSpec(
        "AzureWebJobsStorage__clientId",
        _G_STATE,
        "Client id of the user-assigned identity for that account; empty uses the "
        "system-assigned one.",
        "",
        "",
    ),
    SettingSpec(
        "STATE_TABLE_PREFIX",
        _G_STATE,
        "Prefix of the playbook's tables (`<prefix>ledger`, `<prefix>budget`, "
        "`<prefix>facts`); letters and digits.",
        "defenderquarantine",
        "defenderquarantine",
    ),
    SettingSpec(
        "BACKLOG_QUEUE_NAME",
        _G_STATE,
        "Storage queue of deferred targets; the host moves failing messages to "
        "`<name>-poison`.",
        "quarantine-backlog",
        "quarantine-backlog",
    ),
    SettingSpec(
        "BACKLOG_MAX_ATTEMPTS",
        _G_STATE,
        "Times a target deferred by a fault (5xx, lost answer, refused token) is "
        "tried before it goes to the poison queue; waits for budget do not count.",
        "12",
        "12",
    ),
    SettingSpec(
        "ACTION_TRACKER_SCHEDULE",
        _G_STATE,
        "NCRONTAB schedule (six fields, UTC) of the timer that follows open "
        "machine actions.",
        "0 */2 * * * *",
        "0 */2 * * * *",
        host_only=True,
    ),
    SettingSpec(
        "REPLAY_MAX_BODY_BYTES",
        _G_HOST,
        "Largest body the replay endpoint accepts; larger gets 413.",
        "1048576",
        "1048576",
    ),
    SettingSpec(
        "ALERTS_EVENTHUB_NAME",
        _G_HOST,
        "Event Hub that carries the Defender alerts (read by the host).",
        "defender-alerts",
        "defender-alerts",
        host_only=True,
    ),
    SettingSpec(
        "ALERTS_EVENTHUB_CONSUMER_GROUP",
        _G_HOST,
        "Consumer group of this app on that hub; give it one of its own.",
        "defender-quarantine",
        "defender-quarantine",
        host_only=True,
    ),
    SettingSpec(
        "ALERTS_EVENTHUB",
        _G_HOST,
        "Event Hubs connection string; or set "
        "`ALERTS_EVENTHUB__fullyQualifiedNamespace` for an identity-based connection.",
        "",
        "Endpoint=sb://localhost/;SharedAccessKeyName=local;SharedAccessKey=local;"
        "EntityPath=defender-alerts",
        secret=True,
        host_only=True,
    ),
    SettingSpec(
        "FUNCTIONS_WORKER_RUNTIME",
        _G_HOST,
        "Always `python` (not used on Flex Consumption, which sets the runtime in "
        "the app's configuration).",
        "python",
        "python",
        host_only=True,
    ),
    SettingSpec(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        _G_MONITOR,
        "Application Insights connection string; logs, metrics and traces go "
        "there (in Azure through the Python worker, from the command line directly). "
        "Empty exports nothing.",
        "",
        "",
        secret=True,
    ),
    SettingSpec(
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
        _G_MONITOR,
        "`true` lets the Python worker configure Azure Monitor and stream its own "
        "logs (no duplicate host entries); the app then never configures it again.",
        "false",
        "true",
        host_only=True,
    ),
    SettingSpec(
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
        _G_MONITOR,
        "Library instrumentations the worker leaves off; `requests,urllib,urllib3` "
        "keeps device ids out of dependency names (the client traces each call).",
        "",
        "requests,urllib,urllib3",
        host_only=True,
    ),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting the playbook reads, converted and validated."""

    quarantine_mode: QuarantineMode = QuarantineMode.DRY_RUN
    kill_switch: bool = False
    max_devices_per_file_per_hour: int = 50
    max_submissions_per_target: int = 3
    api_budget_share: float = 1.0

    defender_cloud: str = "global"
    defender_api_url: str | None = None
    defender_token: str | None = None
    defender_tenant_id: str | None = None
    defender_client_id: str | None = None
    defender_client_secret: str | None = None
    defender_client_certificate_path: str | None = None
    defender_managed_identity_client_id: str | None = None
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    max_retries: int = 4

    allow_windows_server: bool = False
    allow_inactive_devices: bool = True
    unknown_av_mode: UnknownAvMode = UnknownAvMode.SKIP
    min_alert_severity: str = "medium"
    allowed_detection_sources: frozenset[str] = frozenset()
    allowed_evidence_roles: frozenset[str] = frozenset()
    trusted_publishers: frozenset[str] = frozenset()
    excluded_device_ids: frozenset[str] = frozenset()
    excluded_device_tags: frozenset[str] = frozenset()
    excluded_sha1s: frozenset[str] = frozenset()
    excluded_path_patterns: tuple[str, ...] = ()
    fact_cache_seconds: int = 3600

    storage_connection_string: str | None = None
    storage_account_name: str | None = None
    storage_client_id: str | None = None
    state_table_prefix: str = "defenderquarantine"
    backlog_queue_name: str = "quarantine-backlog"
    backlog_max_attempts: int = 12

    replay_max_body_bytes: int = 1_048_576

    applicationinsights_connection_string: str | None = None
    worker_telemetry: bool = False

    def __repr__(self) -> str:
        # A Settings may end up in a log or a traceback: show which secrets are
        # set, never what they are.
        shown = {
            "quarantine_mode": str(self.quarantine_mode),
            "kill_switch": self.kill_switch,
            "defender_cloud": self.defender_cloud,
            "defender_api_url": self.defender_api_url,
            "defender_token": "<set>" if self.defender_token else None,
            "defender_client_secret": "<set>" if self.defender_client_secret else None,
            "storage": "<set>"
            if self.storage_connection_string or self.storage_account_name
            else None,
            "applicationinsights_connection_string": "<set>"
            if self.applicationinsights_connection_string
            else None,
        }
        inner = ", ".join(f"{key}={value!r}" for key, value in shown.items())
        return f"Settings({inner}, ...)"

    @property
    def dry_run(self) -> bool:
        """True unless an operator switched enforcement on."""
        return self.quarantine_mode is QuarantineMode.DRY_RUN

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and validate every setting; raise one error that names them all.

        Unset and empty mean the same: the documented default.
        """
        reader = _Reader(environ)

        settings = cls(
            quarantine_mode=reader.enum("QUARANTINE_MODE", QuarantineMode),
            kill_switch=reader.boolean("QUARANTINE_KILL_SWITCH"),
            max_devices_per_file_per_hour=reader.integer(
                "MAX_DEVICES_PER_FILE_PER_HOUR", minimum=1
            ),
            max_submissions_per_target=reader.integer(
                "MAX_SUBMISSIONS_PER_TARGET", minimum=1
            ),
            api_budget_share=reader.percent("API_BUDGET_SHARE_PERCENT"),
            defender_cloud=reader.choice("DEFENDER_CLOUD", CLOUDS),
            defender_api_url=reader.url("DEFENDER_API_URL"),
            defender_token=reader.optional("DEFENDER_TOKEN"),
            defender_tenant_id=reader.optional("DEFENDER_TENANT_ID"),
            defender_client_id=reader.optional("DEFENDER_CLIENT_ID"),
            defender_client_secret=reader.optional("DEFENDER_CLIENT_SECRET"),
            defender_client_certificate_path=reader.optional(
                "DEFENDER_CLIENT_CERTIFICATE_PATH"
            ),
            defender_managed_identity_client_id=reader.optional(
                "DEFENDER_MANAGED_IDENTITY_CLIENT_ID"
            ),
            connect_timeout_seconds=reader.number(
                "DEFENDER_CONNECT_TIMEOUT_SECONDS", minimum=0.1
            ),
            read_timeout_seconds=reader.number(
                "DEFENDER_READ_TIMEOUT_SECONDS", minimum=0.1
            ),
            max_retries=reader.integer("DEFENDER_MAX_RETRIES", minimum=0),
            allow_windows_server=reader.boolean("ALLOW_WINDOWS_SERVER"),
            allow_inactive_devices=reader.boolean("ALLOW_INACTIVE_DEVICES"),
            unknown_av_mode=reader.enum("UNKNOWN_AV_MODE", UnknownAvMode),
            min_alert_severity=reader.choice("MIN_ALERT_SEVERITY", SEVERITIES),
            allowed_detection_sources=reader.words("ALLOWED_DETECTION_SOURCES"),
            allowed_evidence_roles=reader.words("ALLOWED_EVIDENCE_ROLES"),
            trusted_publishers=reader.words("TRUSTED_PUBLISHERS", separator=";"),
            excluded_device_ids=reader.sha1_list("EXCLUDED_DEVICE_IDS"),
            excluded_device_tags=reader.words("EXCLUDED_DEVICE_TAGS"),
            excluded_sha1s=reader.sha1_list("EXCLUDED_SHA1S"),
            excluded_path_patterns=tuple(
                sorted(reader.words("EXCLUDED_PATH_PATTERNS", separator=";"))
            ),
            fact_cache_seconds=reader.integer("FACT_CACHE_SECONDS", minimum=0),
            storage_connection_string=reader.optional("AzureWebJobsStorage"),
            storage_account_name=reader.pattern(
                "AzureWebJobsStorage__accountName",
                _ACCOUNT_NAME,
                "3 to 24 lower-case letters and digits",
            ),
            storage_client_id=reader.optional("AzureWebJobsStorage__clientId"),
            state_table_prefix=reader.pattern(
                "STATE_TABLE_PREFIX",
                _TABLE_PREFIX,
                "a letter, then up to 49 letters and digits",
            )
            or "defenderquarantine",
            backlog_queue_name=reader.pattern(
                "BACKLOG_QUEUE_NAME",
                _QUEUE_NAME,
                "3 to 56 lower-case letters, digits and single hyphens",
            )
            or "quarantine-backlog",
            backlog_max_attempts=reader.integer("BACKLOG_MAX_ATTEMPTS", minimum=1),
            replay_max_body_bytes=reader.integer("REPLAY_MAX_BODY_BYTES", minimum=1),
            applicationinsights_connection_string=reader.optional(
                "APPLICATIONINSIGHTS_CONNECTION_STRING"
            ),
            worker_telemetry=reader.boolean(
                "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
            ),
        )

        if reader.problems:
            raise SettingsError(reader.problems)
        return settings


def load_settings() -> Settings:
    """The settings of this process, from its environment (the app settings)."""
    return Settings.from_env(os.environ)


_SPECS = {spec.name: spec for spec in SETTINGS}

# Azure's naming rules: storage accounts 3-24 lower-case letters and digits; tables
# 3-63 letters and digits starting with a letter (the prefix leaves room for the
# longest suffix, "ledger"); queues 3-63 lower-case letters, digits and single
# hyphens, and "-poison" (7) must still fit after the backlog's name.
_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
_TABLE_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,49}")
_QUEUE_NAME = re.compile(r"(?=.{3,56}$)[a-z0-9]+(-[a-z0-9]+)*")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class _Reader:
    """Converts raw strings, collecting every problem instead of stopping at one."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.problems: list[str] = []

    def _raw(self, name: str) -> str:
        value = self._environ.get(name, "").strip()
        return value or _SPECS[name].default

    def _convert(self, name: str, convert: Callable[[str], Any], fallback: Any) -> Any:
        raw = self._raw(name)
        try:
            return convert(raw)
        except ValueError as exc:
            self.problems.append(f"{name}: {exc}")
            return fallback

    def optional(self, name: str) -> str | None:
        return self._raw(name) or None

    def boolean(self, name: str) -> bool:
        def convert(raw: str) -> bool:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError("expected true or false")

        return bool(self._convert(name, convert, False))

    def integer(self, name: str, *, minimum: int) -> int:
        def convert(raw: str) -> int:
            try:
                value = int(raw)
            except ValueError:
                raise ValueError("expected a whole number") from None
            if value < minimum:
                raise ValueError(f"must be at least {minimum}")
            return value

        return int(self._convert(name, convert, minimum))

    def number(self, name: str, *, minimum: float) -> float:
        def convert(raw: str) -> float:
            try:
                value = float(raw)
            except ValueError:
                raise ValueError("expected a number") from None
            if not value >= minimum:
                raise ValueError(f"must be at least {minimum}")
            return value

        return float(self._convert(name, convert, minimum))

    def percent(self, name: str) -> float:
        """A whole percentage from 1 to 100, as a fraction."""

        def convert(raw: str) -> float:
            try:
                value = int(raw)
            except ValueError:
                raise ValueError("expected a whole number from 1 to 100") from None
            if not 1 <= value <= 100:
                raise ValueError("expected a whole number from 1 to 100")
            return value / 100

        return float(self._convert(name, convert, 1.0))

    def pattern(self, name: str, rule: re.Pattern[str], described: str) -> str | None:
        """The raw value when it matches ``rule`` in full, else a problem."""

        def convert(raw: str) -> str | None:
            if not raw:
                return None
            if rule.fullmatch(raw) is None:
                raise ValueError(f"expected {described}")
            return raw

        result: str | None = self._convert(name, convert, None)
        return result

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        def convert(raw: str) -> str:
            if raw.lower() not in allowed:
                raise ValueError("expected one of " + ", ".join(allowed))
            return raw.lower()

        return str(self._convert(name, convert, allowed[0]))

    def enum(self, name: str, kind: type[StrEnum]) -> Any:
        allowed = tuple(member.value for member in kind)
        return kind(self.choice(name, allowed))

    def url(self, name: str) -> str | None:
        def convert(raw: str) -> str | None:
            if not raw:
                return None
            if not re.match(r"^https?://[^/\s]+(/\S*)?$", raw):
                raise ValueError("expected an http:// or https:// URL")
            return raw.rstrip("/")

        result: str | None = self._convert(name, convert, None)
        return result

    def words(self, name: str, *, separator: str = ",") -> frozenset[str]:
        raw = self._raw(name)
        return frozenset(
            part.strip().lower() for part in raw.split(separator) if part.strip()
        )

    def sha1_list(self, name: str) -> frozenset[str]:
        values = self.words(name)
        bad = sorted(value for value in values if not is_sha1(value))
        if bad:
            # The position, not the value: an id list is not secret, but a long
            # one would drown the message.
            self.problems.append(
                f"{name}: {len(bad)} entries are not 40 hexadecimal characters"
            )
        return frozenset(value for value in values if is_sha1(value))
