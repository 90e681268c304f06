"""Backlog messages and the in-memory backlog; the queue itself is tested on Azurite."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.backlog import (
    DeferredTarget,
    MemoryBacklog,
    PoisonRecord,
    is_fault_deferral,
)
from shared.codec import CodecError
from shared.targets import Alert, AlertFormat, EvidenceKind, Target

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _item(**changes: object) -> DeferredTarget:
    values: dict[str, object] = {
        "target": Target(
            alert=Alert(id="da1", format=AlertFormat.MDE),
            device_id="1" * 40,
            sha1="a" * 40,
            evidence=EvidenceKind.FILE,
        ),
        "reason": "api_throttled",
        "retry_at": NOW + timedelta(seconds=30),
        "attempts": 2,
        "first_deferred_at": NOW - timedelta(minutes=5),
        "source": "partition 0 sequence 7",
        **changes,
    }
    return DeferredTarget(**values)  # type: ignore[arg-type]


def test_a_deferred_target_reads_back_from_its_message() -> None:
    item = _item()

    assert DeferredTarget.from_message(item.to_message()) == item
    assert DeferredTarget.from_message(item.to_message().encode()) == item


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[]", "not a deferred target"),
        (json.dumps({"kind": "something-else"}).encode(), "not a deferred target"),
    ],
)
def test_an_unreadable_message_says_why(body: bytes, reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        DeferredTarget.from_message(body)


def test_a_message_with_a_bad_field_says_which() -> None:
    document = json.loads(_item().to_message())
    document["attempts"] = -1

    with pytest.raises(CodecError, match="attempts"):
        DeferredTarget.from_message(json.dumps(document))

    document["attempts"] = 1
    document["retry_at"] = "2026-12-03T12:00:00"
    with pytest.raises(CodecError, match="time zone"):
        DeferredTarget.from_message(json.dumps(document))


def test_waiting_for_budget_or_a_claim_uses_no_attempt() -> None:
    assert not is_fault_deferral("api_budget_exhausted")
    assert not is_fault_deferral("api_throttled")
    assert not is_fault_deferral("claimed_elsewhere")
    assert is_fault_deferral("api_unavailable")
    assert is_fault_deferral("api_outcome_unknown")
    assert is_fault_deferral("ledger_conflict")


def test_the_memory_backlog_keeps_items_and_poison_and_measures_itself() -> None:
    backlog = MemoryBacklog(now=lambda: NOW)

    backlog.defer(_item())
    backlog.poison(PoisonRecord(reason="unreadable: x", body="x", poisoned_at=NOW))
    depth = backlog.depth()

    assert len(backlog.items()) == 1
    assert [record.reason for record in backlog.poisoned()] == ["unreadable: x"]
    assert (depth.messages, depth.poisoned) == (1, 1)
    assert depth.oldest_age_seconds == 300.0
