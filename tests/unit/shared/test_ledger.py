"""The ledger's rules: when a claim is granted, and what MemoryLedger remembers.

``decide_claim`` is the one place both ledgers take their claim decisions from,
so each of its branches is pinned here. The same behaviour, held against the
Table storage ledger as well, is in tests/integration/shared/test_table_ledger.py.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from shared.ledger import (
    CLAIM_SECONDS,
    MAX_ALERT_IDS,
    MAX_VERDICTS,
    Claim,
    ClaimRefusal,
    LedgerEntry,
    MemoryLedger,
    decide_claim,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DEVICE = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
SHA1 = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"
ACTION = "b5a1c3f0-0000-4000-8000-000000000001"


def submitted(status: str, *, submissions: int = 1) -> LedgerEntry:
    return LedgerEntry(
        device_id=DEVICE,
        sha1=SHA1,
        action_id=None if status == "Refused" else ACTION,
        action_status=status,
        submitted_at=NOW - timedelta(hours=2),
        submissions=submissions,
    )


def decide(entry: LedgerEntry | None, *, most: int = 3) -> Claim:
    return decide_claim(
        entry, device_id=DEVICE, sha1=SHA1, now=NOW, max_submissions=most
    )


class TestDecideClaim:
    def test_grants_a_target_never_seen(self) -> None:
        claim = decide(None)

        assert claim.granted
        assert (claim.device_id, claim.sha1) == (DEVICE, SHA1)
        assert claim.recover_since is None
        assert len(claim.claim_id) == 32

    def test_grants_a_target_only_judged_so_far(self) -> None:
        claim = decide(LedgerEntry(device_id=DEVICE, sha1=SHA1, first_seen=NOW))

        assert claim.granted

    @pytest.mark.parametrize("status", ["Pending", "InProgress", "Succeeded"])
    def test_refuses_a_duplicate_of_an_open_or_succeeded_action(
        self, status: str
    ) -> None:
        entry = submitted(status)

        claim = decide(entry)

        assert claim.refusal is ClaimRefusal.DUPLICATE
        assert claim.entry == entry
        assert claim.retry_at is None

    def test_treats_an_unknown_status_as_blocking(self) -> None:
        claim = decide(submitted("SomethingNew"))

        assert claim.refusal is ClaimRefusal.DUPLICATE

    @pytest.mark.parametrize("status", ["Failed", "TimeOut", "Cancelled", "Refused"])
    def test_grants_a_new_attempt_after_a_final_failure(self, status: str) -> None:
        claim = decide(submitted(status))

        assert claim.granted
        assert claim.recover_since is None

    def test_refuses_once_the_submissions_are_exhausted(self) -> None:
        claim = decide(submitted("Failed", submissions=3), most=3)

        assert claim.refusal is ClaimRefusal.RESUBMISSIONS_EXHAUSTED
        assert claim.entry is not None

    def test_refuses_while_another_claim_holds_and_says_until_when(self) -> None:
        claimed_at = NOW - timedelta(seconds=CLAIM_SECONDS - 1)
        entry = LedgerEntry(
            device_id=DEVICE, sha1=SHA1, claim_id="other", claimed_at=claimed_at
        )

        claim = decide(entry)

        assert claim.refusal is ClaimRefusal.CLAIMED_ELSEWHERE
        assert claim.retry_at == claimed_at + timedelta(seconds=CLAIM_SECONDS)
        assert claim.entry == entry

    def test_grants_over_a_stale_claim_and_asks_to_recover_first(self) -> None:
        claimed_at = NOW - timedelta(seconds=CLAIM_SECONDS)
        entry = LedgerEntry(
            device_id=DEVICE, sha1=SHA1, claim_id="vanished", claimed_at=claimed_at
        )

        claim = decide(entry)

        assert claim.granted
        assert claim.recover_since == claimed_at
        assert claim.claim_id != "vanished"

    def test_keeps_the_earlier_of_two_recovery_times(self) -> None:
        earlier = NOW - timedelta(hours=1)
        entry = LedgerEntry(
            device_id=DEVICE,
            sha1=SHA1,
            claim_id="vanished",
            claimed_at=NOW - timedelta(minutes=30),
            recover_since=earlier,
        )

        claim = decide(entry)

        assert claim.recover_since == earlier

    def test_passes_on_a_recovery_time_left_by_a_release(self) -> None:
        since = NOW - timedelta(minutes=3)
        entry = LedgerEntry(device_id=DEVICE, sha1=SHA1, recover_since=since)

        claim = decide(entry)

        assert claim.granted
        assert claim.recover_since == since

    def test_refuses_a_stale_claim_on_a_target_already_done(self) -> None:
        entry = submitted("Succeeded")
        entry.claim_id = "vanished"
        entry.claimed_at = NOW - timedelta(hours=1)

        claim = decide(entry)

        assert claim.refusal is ClaimRefusal.DUPLICATE

    def test_gives_each_claim_its_own_id(self) -> None:
        assert decide(None).claim_id != decide(None).claim_id


class TestMemoryLedger:
    def test_keeps_only_the_latest_alert_ids(self) -> None:
        ledger = MemoryLedger()

        for index in range(MAX_ALERT_IDS + 5):
            ledger.record_verdict(
                device_id=DEVICE,
                sha1=SHA1,
                alert_id=f"alert-{index}",
                verdict="skip",
                reason="below_severity",
                at=NOW + timedelta(seconds=index),
            )

        entry = ledger.find(DEVICE, SHA1)
        assert entry is not None
        assert len(entry.alert_ids) == MAX_ALERT_IDS
        assert entry.alert_ids[0] == "alert-5"
        assert entry.alert_ids[-1] == f"alert-{MAX_ALERT_IDS + 4}"

    def test_keeps_only_the_latest_verdicts_and_the_first_sighting(self) -> None:
        ledger = MemoryLedger()

        for index in range(MAX_VERDICTS + 3):
            ledger.record_verdict(
                device_id=DEVICE,
                sha1=SHA1,
                alert_id="alert-1",
                verdict="skip",
                reason=f"reason-{index}",
                at=NOW + timedelta(seconds=index),
            )

        entry = ledger.find(DEVICE, SHA1)
        assert entry is not None
        assert len(entry.verdicts) == MAX_VERDICTS
        assert entry.verdicts[0].reason == "reason-3"
        assert entry.first_seen == NOW
        assert entry.last_seen == NOW + timedelta(seconds=MAX_VERDICTS + 2)
        assert entry.alert_ids == ["alert-1"]

    def test_release_after_a_possible_send_asks_the_next_claimant_to_recover(
        self,
    ) -> None:
        ledger = MemoryLedger()
        claim = ledger.claim(
            device_id=DEVICE, sha1=SHA1, alert_id="a1", at=NOW, max_submissions=3
        )

        ledger.release(claim, maybe_sent=True, at=NOW + timedelta(seconds=40))
        entry = ledger.find(DEVICE, SHA1)
        following = ledger.claim(
            device_id=DEVICE,
            sha1=SHA1,
            alert_id="a2",
            at=NOW + timedelta(minutes=1),
            max_submissions=3,
        )

        assert entry is not None
        assert entry.recover_since == NOW
        assert entry.claim_id is None
        assert following.granted
        assert following.recover_since == NOW

    def test_release_without_a_send_leaves_nothing_to_recover(self) -> None:
        ledger = MemoryLedger()
        claim = ledger.claim(
            device_id=DEVICE, sha1=SHA1, alert_id="a1", at=NOW, max_submissions=3
        )

        ledger.release(claim, maybe_sent=False, at=NOW)

        entry = ledger.find(DEVICE, SHA1)
        assert entry is not None
        assert entry.recover_since is None
        assert entry.claim_id is None

    def test_release_of_a_superseded_claim_changes_nothing(self) -> None:
        ledger = MemoryLedger()
        stale = ledger.claim(
            device_id=DEVICE, sha1=SHA1, alert_id="a1", at=NOW, max_submissions=3
        )
        later = NOW + timedelta(seconds=CLAIM_SECONDS)
        current = ledger.claim(
            device_id=DEVICE, sha1=SHA1, alert_id="a2", at=later, max_submissions=3
        )

        ledger.release(stale, maybe_sent=True, at=later)

        entry = ledger.find(DEVICE, SHA1)
        assert entry is not None
        assert entry.claim_id == current.claim_id
        assert entry.claimed_at == later

    def test_action_status_of_an_older_action_is_ignored(self) -> None:
        ledger = MemoryLedger()
        claim = ledger.claim(
            device_id=DEVICE, sha1=SHA1, alert_id="a1", at=NOW, max_submissions=3
        )
        ledger.record_submission(
            claim, action_id=ACTION, action_status="Pending", at=NOW
        )

        ignored = ledger.record_action_status(
            device_id=DEVICE, sha1=SHA1, action_id="older", status="Failed", at=NOW
        )
        followed = ledger.record_action_status(
            device_id=DEVICE, sha1=SHA1, action_id=ACTION, status="InProgress", at=NOW
        )

        assert ignored is None
        assert followed is not None
        assert followed.action_status == "InProgress"

    def test_open_only_lists_entries_with_an_open_action(self) -> None:
        ledger = MemoryLedger()
        for index, status in enumerate(["Pending", "InProgress", "Succeeded"]):
            device = f"{index:040x}"
            claim = ledger.claim(
                device_id=device, sha1=SHA1, alert_id="a", at=NOW, max_submissions=3
            )
            ledger.record_submission(
                claim, action_id=f"action-{index}", action_status=status, at=NOW
            )
        ledger.record_verdict(
            device_id=DEVICE,
            sha1=SHA1,
            alert_id="a",
            verdict="skip",
            reason="excluded",
            at=NOW,
        )

        open_entries = ledger.entries(open_only=True)
        every_entry = ledger.entries()

        assert sorted(e.action_status or "" for e in open_entries) == [
            "InProgress",
            "Pending",
        ]
        assert len(every_entry) == 4

    def test_answers_are_copies_the_caller_cannot_change(self) -> None:
        ledger = MemoryLedger()
        ledger.record_verdict(
            device_id=DEVICE,
            sha1=SHA1,
            alert_id="a",
            verdict="skip",
            reason="excluded",
            at=NOW,
        )

        found = ledger.find(DEVICE, SHA1)
        assert found is not None
        found.claim_id = "tampered"

        again = ledger.find(DEVICE, SHA1)
        assert again is not None
        assert again.claim_id is None

    def test_grants_one_claim_among_threads(self) -> None:
        ledger = MemoryLedger()
        barrier = threading.Barrier(8)
        granted: list[bool] = []

        def claim() -> None:
            barrier.wait()
            answer = ledger.claim(
                device_id=DEVICE, sha1=SHA1, alert_id="a", at=NOW, max_submissions=3
            )
            granted.append(answer.granted)

        threads = [threading.Thread(target=claim) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(granted) == [False] * 7 + [True]
