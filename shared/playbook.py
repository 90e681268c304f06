"""Wiring: the settings, the Defender client and the pipeline of this process.

Triggers and the command line get their pipeline here, so they all run the same
code with the same settings. A Functions worker process builds one pipeline on first
use and keeps it: the HTTP session, the token cache and the facts cache are then
shared by every invocation the process serves.
"""

from __future__ import annotations

__all__ = [
    "DefenderQuarantineApi",
    "build_pipeline",
    "get_pipeline",
    "get_settings",
    "reset",
]

import logging
import threading
from collections.abc import Mapping
from typing import Any

from shared.defender_client import DefenderClient
from shared.errors import ApiResponseError
from shared.facts_cache import FactsCache
from shared.ledger import Ledger, MemoryLedger
from shared.machine_actions import Submission
from shared.pipeline import Pipeline
from shared.settings import Settings, load_settings
from shared.targets import DeviceFacts, FileFacts

logger = logging.getLogger(__name__)


class DefenderQuarantineApi:
    """The pipeline's view of Defender, on top of ``DefenderClient``.

    A 404 for a device or a file means Defender does not know it: that is a fact
    (None), not a fault. Every other error reaches the pipeline, which defers.
    """

    def __init__(self, client: DefenderClient) -> None:
        self._client = client

    def device_facts(self, device_id: str) -> DeviceFacts | None:
        try:
            machine = self._client.get_machine(device_id)
        except ApiResponseError as exc:
            if exc.status == 404:
                return None
            raise

        # The machine record has no antivirus mode; the health report has it.
        # Limitation (#6): that report allows only 30 calls a minute, and each new
        # device costs one; until the shared budget lands, a burst of alerts for
        # many new devices is throttled there first and those targets deferred.
        av_info = self._client.get_av_info(device_id)
        return machine.to_device_facts(av_info)

    def file_facts(self, sha1: str) -> FileFacts | None:
        try:
            profile = self._client.get_file(sha1)
        except ApiResponseError as exc:
            if exc.status == 404:
                return None
            raise
        return profile.to_file_facts()

    def submit_quarantine(self, device_id: str, sha1: str, comment: str) -> Submission:
        return self._client.submit_stop_and_quarantine(device_id, sha1, comment)

    def alert_document(self, alert_id: str) -> Mapping[str, Any]:
        return self._client.get_alert(alert_id).document


def build_pipeline(
    settings: Settings,
    *,
    client: DefenderClient | None = None,
    ledger: Ledger | None = None,
) -> Pipeline:
    """A pipeline for ``settings``; the client is built from them unless given.

    Raises:
        SettingsError: the credential settings are incomplete or unsafe.
    """
    client = client or DefenderClient.from_settings(settings)
    client.check_permissions()

    return Pipeline(
        settings=settings,
        api=DefenderQuarantineApi(client),
        ledger=ledger or MemoryLedger(),
        facts_cache=FactsCache.from_settings(settings),
    )


_lock = threading.Lock()
_settings: Settings | None = None
_pipeline: Pipeline | None = None


def get_settings() -> Settings:
    """The settings of this process, read once."""
    global _settings  # noqa: PLW0603 - one configuration per worker process
    with _lock:
        if _settings is None:
            _settings = load_settings()
        return _settings


def get_pipeline() -> Pipeline:
    """The pipeline of this process, built on first use.

    Raises:
        SettingsError: a setting is missing or malformed; the trigger lets this
            escape so that the host retries instead of skipping events.
    """
    global _pipeline  # noqa: PLW0603 - one pipeline per worker process
    settings = get_settings()
    with _lock:
        if _pipeline is None:
            _pipeline = build_pipeline(settings)
            logger.info(
                "playbook.started",
                extra={
                    "mode": str(settings.quarantine_mode),
                    "kill_switch": settings.kill_switch,
                    "cloud": settings.defender_cloud,
                },
            )
        return _pipeline


def reset() -> None:
    """Forget the settings and pipeline of this process (tests, reconfiguration)."""
    global _settings, _pipeline  # noqa: PLW0603 - see get_settings
    with _lock:
        _settings = None
        _pipeline = None
