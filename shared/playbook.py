"""Wiring: the settings, the state, the Defender client and the pipeline.

Triggers and the command line get their pipeline here, so they all run the same
code with the same settings. A Functions worker process builds one pipeline on first
use and keeps it: the HTTP session, the token cache and the facts cache are then
shared by every invocation the process serves.

The state (ledger, API budget, backlog, shared facts) lives in the storage account
of ``AzureWebJobsStorage`` (``shared.storage``). In a function app it must: a
function refuses to start without it, since state kept in one process would let
instances submit the same target twice and overspend the API limits. The command
line may run without it; its state is then kept in memory for the run, and it
says so.
"""

from __future__ import annotations

__all__ = [
    "DefenderQuarantineApi",
    "State",
    "build_pipeline",
    "build_state",
    "get_action_tracker",
    "get_backlog",
    "get_pipeline",
    "get_settings",
    "reset",
]

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.action_tracker import ActionTracker
from shared.backlog import Backlog, MemoryBacklog, QueueBacklog
from shared.budget import Budget, MemoryBudget, TableBudget
from shared.defender_client import DefenderClient
from shared.errors import ApiResponseError, SettingsError
from shared.facts_cache import FactsCache
from shared.facts_store import FactsStore, TableFactsStore
from shared.ledger import Ledger, MemoryLedger
from shared.machine_actions import Submission, SubmissionOutcome
from shared.pipeline import Pipeline
from shared.settings import Settings, load_settings
from shared.storage import (
    BUDGET_TABLE,
    FACTS_TABLE,
    LEDGER_TABLE,
    StorageAccount,
    backlog_poison_queue_name,
)
from shared.table_ledger import TableLedger
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
        # That report allows only 30 calls a minute, and each new device costs
        # one (then the shared facts cache answers): a burst of alerts for many
        # new devices waits on that budget first, in the backlog.
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

    def find_submission(
        self, device_id: str, sha1: str, since: datetime
    ) -> Submission | None:
        actions = self._client.quarantine_actions(
            device_id, sha1, created_since=since - _CLOCK_SKEW
        )
        if not actions:
            return None
        return Submission(SubmissionOutcome.RECOVERED_AFTER_UNKNOWN, actions[0])

    def alert_document(self, alert_id: str) -> Mapping[str, Any]:
        return self._client.get_alert(alert_id).document


# Our clock and Defender's may differ a little; an action stamped slightly before
# the claim that led to it is still that claim's action.
_CLOCK_SKEW = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class State:
    """Where this process keeps what must outlive it and be shared."""

    ledger: Ledger
    backlog: Backlog
    budget: Budget
    facts_store: FactsStore | None
    where: str

    @property
    def durable(self) -> bool:
        return self.facts_store is not None


def build_state(settings: Settings, *, require_storage: bool = False) -> State:
    """The state on the configured storage account, else in memory.

    Raises:
        SettingsError: no storage is configured and ``require_storage`` is set,
            or the storage settings contradict each other.
    """
    account = StorageAccount.from_settings(settings)
    if account is None:
        if require_storage:
            raise SettingsError(
                [
                    "AzureWebJobsStorage: not set; the function app keeps its "
                    "ledger, API budget and backlog there"
                ]
            )
        return State(
            ledger=MemoryLedger(),
            backlog=MemoryBacklog(),
            budget=MemoryBudget(share=settings.api_budget_share),
            facts_store=None,
            where="memory (this run only: AzureWebJobsStorage is not set)",
        )

    queue_name = settings.backlog_queue_name
    return State(
        ledger=TableLedger(account.table(LEDGER_TABLE)),
        backlog=QueueBacklog(
            account.queue(queue_name),
            account.queue(backlog_poison_queue_name(queue_name)),
        ),
        budget=TableBudget(
            account.table(BUDGET_TABLE), share=settings.api_budget_share
        ),
        facts_store=TableFactsStore(account.table(FACTS_TABLE)),
        where=f"storage account {account.account_name}",
    )


def build_pipeline(
    settings: Settings,
    *,
    state: State,
    client: DefenderClient | None = None,
) -> Pipeline:
    """A pipeline for ``settings`` on ``state``; the client is built from them
    unless given.

    Raises:
        SettingsError: the credential settings are incomplete or unsafe.
    """
    client = client or DefenderClient.from_settings(settings, budget=state.budget)
    client.check_permissions()

    return Pipeline(
        settings=settings,
        api=DefenderQuarantineApi(client),
        ledger=state.ledger,
        facts_cache=FactsCache.from_settings(settings, store=state.facts_store),
        backlog=state.backlog,
    )


_lock = threading.Lock()
_settings: Settings | None = None
_state: State | None = None
_client: DefenderClient | None = None
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
        SettingsError: a setting is missing or malformed (storage included); the
            triggers let this escape so that the host retries instead of
            skipping events.
    """
    global _pipeline  # noqa: PLW0603 - one pipeline per worker process
    settings = get_settings()
    with _lock:
        if _pipeline is None:
            state, client = _state_and_client(settings)
            _pipeline = build_pipeline(settings, state=state, client=client)
            logger.info(
                "playbook.started",
                extra={
                    "mode": str(settings.quarantine_mode),
                    "kill_switch": settings.kill_switch,
                    "cloud": settings.defender_cloud,
                    "state": state.where,
                },
            )
        return _pipeline


def get_action_tracker() -> ActionTracker:
    """An action tracker on this process's ledger and Defender client."""
    settings = get_settings()
    with _lock:
        state, client = _state_and_client(settings)
        return ActionTracker(ledger=state.ledger, api=client)


def get_backlog() -> Backlog:
    """The backlog of this process's state."""
    settings = get_settings()
    with _lock:
        state, _ = _state_and_client(settings)
        return state.backlog


def _state_and_client(settings: Settings) -> tuple[State, DefenderClient]:
    """The durable state and the budgeted client, built once (under ``_lock``)."""
    global _state, _client  # noqa: PLW0603 - see get_settings
    if _state is None:
        _state = build_state(settings, require_storage=True)
    if _client is None:
        _client = DefenderClient.from_settings(settings, budget=_state.budget)
    return _state, _client


def reset() -> None:
    """Forget the settings, state and pipeline of this process (tests,
    reconfiguration)."""
    global _settings, _state, _client, _pipeline  # noqa: PLW0603 - see get_settings
    with _lock:
        if _client is not None:
            _client.close()
        _settings = None
        _state = None
        _client = None
        _pipeline = None
