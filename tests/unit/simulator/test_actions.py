"""Machine-action prerequisites and lifecycle, without HTTP."""

from __future__ import annotations

import pytest

from simulator import Device, FileRecord
from simulator.actions import (
    DELIVERY_TIMEOUT_SECONDS,
    HRESULT_ANTIVIRUS_NOT_RUNNING,
    HRESULT_TRUSTED_FILE,
    HRESULT_UNSUPPORTED_OS,
    ActionBook,
    ActionStatus,
    CancelRefused,
    failed_prerequisite,
)

_DEVICE = Device(id="a" * 40, computer_dns_name="pc", os_platform="Windows11")
_FILE = FileRecord(sha1="b" * 40)


def _device(**changes: object) -> Device:
    values = {"id": "a" * 40, "computer_dns_name": "pc", "os_platform": "Windows10"}
    values.update(changes)
    return Device(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("device", "hresult"),
    [
        (_device(os_build=15063), 0),
        (_device(os_build=15062), HRESULT_UNSUPPORTED_OS),
        (_device(os_build=None), HRESULT_UNSUPPORTED_OS),
        (
            _device(os_platform="WindowsServer2022", os_build=20348),
            HRESULT_UNSUPPORTED_OS,
        ),
        (_device(os_platform="Windows11", av_mode="1"), 0),
        (_device(os_platform="Windows11", av_mode="4"), 0),
        (_device(os_platform="Windows11", av_mode="2"), HRESULT_ANTIVIRUS_NOT_RUNNING),
        (_device(os_platform="Windows11", av_mode="5"), HRESULT_ANTIVIRUS_NOT_RUNNING),
        (_device(os_platform="Windows11", av_mode=""), HRESULT_ANTIVIRUS_NOT_RUNNING),
    ],
)
def test_device_prerequisites(device: Device, hresult: int) -> None:
    assert failed_prerequisite(device, _FILE, ()) == hresult


@pytest.mark.parametrize(
    ("signer", "valid", "hresult"),
    [
        ("Microsoft Windows", True, HRESULT_TRUSTED_FILE),
        ("Microsoft Corporation", True, HRESULT_TRUSTED_FILE),
        ("Microsoft Corporation", False, 0),
        ("Fabrikam Software Ltd", True, HRESULT_TRUSTED_FILE),
        ("fabrikam software ltd", True, HRESULT_TRUSTED_FILE),
        ("Fabrikam Software Ltd", False, 0),
        ("Northwind Traders Ltd", True, 0),
        (None, False, 0),
    ],
)
def test_file_prerequisites(signer: str | None, valid: bool, hresult: int) -> None:
    record = FileRecord(sha1="b" * 40, signer=signer, is_valid_certificate=valid)

    assert failed_prerequisite(_DEVICE, record, ("Fabrikam Software Ltd",)) == hresult


def _create(book: ActionBook, device: Device = _DEVICE, hresult: int = 0) -> str:
    action = book.create(
        device=device,
        sha1="b" * 40,
        requestor="app",
        comment="c",
        outcome_hresult=hresult,
        now=0,
    )
    return action.id


def test_failing_action_settles_failed_with_its_hresult() -> None:
    book = ActionBook()
    action_id = _create(book, hresult=HRESULT_TRUSTED_FILE)

    action = book.get(action_id, 30)

    assert action is not None
    assert action.status is ActionStatus.FAILED
    assert action.error_hresult == HRESULT_TRUSTED_FILE
    assert action.updated_at == 30


def test_open_action_is_found_for_its_target_until_it_settles() -> None:
    book = ActionBook()
    _create(book)

    assert book.open_action("a" * 40, "b" * 40, 29.9) is not None
    assert book.open_action("a" * 40, "b" * 40, 30) is None


def test_action_for_unreachable_device_times_out_after_three_days() -> None:
    book = ActionBook()
    action_id = _create(book, device=_device(health_status="Inactive"))

    action = book.get(action_id, DELIVERY_TIMEOUT_SECONDS + 100)

    assert action is not None
    assert action.status is ActionStatus.TIMEOUT
    assert action.updated_at == DELIVERY_TIMEOUT_SECONDS


def test_cancel_of_settled_action_is_refused() -> None:
    book = ActionBook()
    action_id = _create(book)
    action = book.get(action_id, 30)
    assert action is not None

    with pytest.raises(CancelRefused):
        book.cancel(action, requestor="app", comment="c", now=31)
