"""Machine actions and their life on the simulator's clock.

A StopAndQuarantineFile action is created ``Pending``. Once its device is reachable
it is picked up (``InProgress``) after ``PICKUP_SECONDS`` and settles after
``SETTLE_SECONDS``: ``Succeeded``, or ``Failed`` with a non-zero ``errorHResult``
when the device or the file does not meet the prerequisites, because the real
service accepts such a request and fails it later (defender-api.md section 1.5). An
action whose device stays unreachable for three days ends ``TimeOut`` (section 1.4).

Status is computed lazily from timestamps, so moving a manual clock is enough to
move every action; each transition keeps the time it happened at, which becomes
``lastUpdateDateTimeUtc``. Not thread-safe by itself: used under the state lock.

Limitation: once picked up, an action completes even if its device goes offline.
"""

from __future__ import annotations

__all__ = [
    "DELIVERY_TIMEOUT_SECONDS",
    "HRESULT_ANTIVIRUS_NOT_RUNNING",
    "HRESULT_TRUSTED_FILE",
    "HRESULT_UNSUPPORTED_OS",
    "PICKUP_SECONDS",
    "SETTLE_SECONDS",
    "ActionBook",
    "ActionStatus",
    "CancelRefused",
    "MachineAction",
    "failed_prerequisite",
]

import uuid
from dataclasses import dataclass
from enum import StrEnum

from simulator.tenant import Device, FileRecord


class ActionStatus(StrEnum):
    """The statuses of a machine action, spelt as the API spells them."""

    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMEOUT = "TimeOut"
    CANCELLED = "Cancelled"


_OPEN = frozenset({ActionStatus.PENDING, ActionStatus.IN_PROGRESS})

# Realistic orders of magnitude for an online device; the real service gives none.
PICKUP_SECONDS = 5.0
SETTLE_SECONDS = 30.0
# "The Stop and quarantine action has a maximum timeout period of 3 days"
# (defender-api.md section 1.4).
DELIVERY_TIMEOUT_SECONDS = 3 * 24 * 3600.0

# Defender does not document the HRESULTs of a failed quarantine; these are Windows
# codes that say what went wrong, so a test can tell the causes apart.
HRESULT_UNSUPPORTED_OS = -2147024846  # 0x80070032, ERROR_NOT_SUPPORTED
HRESULT_ANTIVIRUS_NOT_RUNNING = -2147023838  # 0x80070422, ERROR_SERVICE_DISABLED
HRESULT_TRUSTED_FILE = -2147024891  # 0x80070005, E_ACCESSDENIED

# Windows 10 version 1703 is build 15063, the first the action supports.
_FIRST_SUPPORTED_WINDOWS_10_BUILD = 15063
# Active, Passive and EDR in block mode run Defender Antivirus at least passively;
# Disabled does not, and Other ("", "3") and PassiveAudit ("5") are unconfirmed, so
# the strictest reading fails them (docs/simulator.md).
_RUNNING_AV_MODES = frozenset({"0", "1", "4"})
_MICROSOFT_SIGNERS = ("microsoft windows", "microsoft corporation")


def failed_prerequisite(
    device: Device, file: FileRecord, trusted_publishers: tuple[str, ...]
) -> int:
    """The HRESULT the action will fail with, or 0 when it can succeed."""
    if not _is_supported_windows(device):
        return HRESULT_UNSUPPORTED_OS
    if device.av_mode not in _RUNNING_AV_MODES:
        return HRESULT_ANTIVIRUS_NOT_RUNNING
    if _is_trusted(file, trusted_publishers):
        return HRESULT_TRUSTED_FILE
    return 0


def _is_supported_windows(device: Device) -> bool:
    # The API page names Windows 10 1703+ and Windows 11 only; Windows Server is
    # accepted and then fails (the strictest of the two documented readings).
    platform = device.os_platform.lower()
    if platform == "windows11":
        return True
    if platform == "windows10":
        build = device.os_build or 0
        return build >= _FIRST_SUPPORTED_WINDOWS_10_BUILD
    return False


def _is_trusted(file: FileRecord, trusted_publishers: tuple[str, ...]) -> bool:
    if not file.is_valid_certificate or not file.signer:
        return False

    signer = file.signer.lower()
    if signer.startswith(_MICROSOFT_SIGNERS):
        return True
    return signer in {publisher.lower() for publisher in trusted_publishers}


@dataclass(slots=True)
class MachineAction:
    """One StopAndQuarantineFile machine action (mutable, owned by ActionBook)."""

    id: str
    machine_id: str
    computer_dns_name: str
    sha1: str
    requestor: str
    requestor_comment: str
    created_at: float
    outcome_hresult: int
    delivered_at: float | None
    status: ActionStatus = ActionStatus.PENDING
    updated_at: float = 0.0
    error_hresult: int = 0
    cancellation_requestor: str | None = None
    cancellation_comment: str | None = None
    cancelled_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN

    def refresh(self, now: float) -> None:
        """Bring the status up to ``now``."""
        if not self.is_open:
            return

        if self.delivered_at is None:
            deadline = self.created_at + DELIVERY_TIMEOUT_SECONDS
            if now >= deadline:
                self._settle(ActionStatus.TIMEOUT, deadline)
            return

        settled = self.delivered_at + SETTLE_SECONDS
        picked_up = self.delivered_at + PICKUP_SECONDS
        if now >= settled:
            failed = self.outcome_hresult != 0
            status = ActionStatus.FAILED if failed else ActionStatus.SUCCEEDED
            self.error_hresult = self.outcome_hresult
            self._settle(status, settled)
        elif now >= picked_up:
            self.status = ActionStatus.IN_PROGRESS
            self.updated_at = picked_up

    def _settle(self, status: ActionStatus, at: float) -> None:
        self.status = status
        self.updated_at = at


class CancelRefused(Exception):
    """The action is already in a final status."""


class ActionBook:
    """Every machine action created in this run, oldest first."""

    def __init__(self) -> None:
        self._actions: dict[str, MachineAction] = {}
        self._latest: dict[tuple[str, str], MachineAction] = {}

    def create(
        self,
        *,
        device: Device,
        sha1: str,
        requestor: str,
        comment: str,
        outcome_hresult: int,
        now: float,
    ) -> MachineAction:
        action = MachineAction(
            id=str(uuid.uuid4()),
            machine_id=device.id,
            computer_dns_name=device.computer_dns_name,
            sha1=sha1,
            requestor=requestor,
            requestor_comment=comment,
            created_at=now,
            updated_at=now,
            outcome_hresult=outcome_hresult,
            delivered_at=now if device.is_active else None,
        )

        self._actions[action.id] = action
        self._latest[(device.id, sha1)] = action
        return action

    def get(self, action_id: str, now: float) -> MachineAction | None:
        action = self._actions.get(action_id.lower())
        if action is not None:
            action.refresh(now)
        return action

    def open_action(
        self, machine_id: str, sha1: str, now: float
    ) -> MachineAction | None:
        """The action for this target that has not reached a final status, if any."""
        action = self._latest.get((machine_id, sha1))
        if action is None:
            return None

        action.refresh(now)
        return action if action.is_open else None

    def all(self, now: float) -> list[MachineAction]:
        for action in self._actions.values():
            action.refresh(now)
        return list(self._actions.values())

    def cancel(
        self, action: MachineAction, *, requestor: str, comment: str, now: float
    ) -> None:
        """Cancel an open action; raises CancelRefused when it is already final."""
        action.refresh(now)
        if not action.is_open:
            raise CancelRefused(action.status)

        action.status = ActionStatus.CANCELLED
        action.updated_at = now
        action.cancellation_requestor = requestor
        action.cancellation_comment = comment
        action.cancelled_at = now

    def device_reachable(self, machine_id: str, now: float) -> None:
        """Deliver the device's waiting actions: it has just come online."""
        for action in self._actions.values():
            action.refresh(now)
            if (
                action.machine_id == machine_id
                and action.is_open
                and action.delivered_at is None
            ):
                action.delivered_at = now

    def reset(self) -> None:
        self._actions.clear()
        self._latest.clear()
