"""The Table storage ledger on Azurite: one contract with MemoryLedger, and races.

``ledger`` gives each contract test twice, once per implementation, so the
ledger the command line uses and the one the function app uses cannot drift
apart. The races claim one target from threads that each have their own
connection, and twenty targets from two separate processes: each target must be
granted exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.ledger import (
    CLAIM_SECONDS,
    MAX_ALERT_IDS,
    MAX_VERDICTS,
    Claim,
    ClaimRefusal,
    Ledger,
    LedgerConflictError,
    LedgerEntry,
    MemoryLedger,
    VerdictRecord,
)
from shared.table_ledger import (
    MAX_WRITE_ATTEMPTS,
    LedgerEntityError,
    TableLedger,
    entity_from_entry,
    entry_from_entity,
)

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DEVICE = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
OTHER_DEVICE = "2f6cd0e8f524eee8a13d3a43f529813c95e1dd18"
SHA1 = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"
OTHER_SHA1 = "0123456789abcdef0123456789abcdef01234567"
ACTION = "b5a1c3f0-0000-4000-8000-000000000001"


@pytest.fixture(name="table_service")
def _table_service(storage_connection: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(storage_connection)


@pytest.fixture(name="table_name")
def _table_name(storage_prefix: str) -> str:
    return f"{storage_prefix}ledger"


@pytest.fixture(name="table")
def _table(table_service: TableServiceClient, table_name: str) -> TableClient:
    return table_service.create_table_if_not_exists(table_name)


@pytest.fixture(name="table_ledger")
def _table_ledger(table: TableClient) -> TableLedger:
    return TableLedger(table)


@pytest.fixture(name="ledger", params=["memory", "table"])
def _ledger(request: pytest.FixtureRequest) -> Ledger:
    if request.param == "memory":
        return MemoryLedger()
    ledger: Ledger = request.getfixturevalue("table_ledger")
    return ledger


def claim(
    ledger: Ledger,
    *,
    at: datetime = NOW,
    device_id: str = DEVICE,
    sha1: str = SHA1,
    most: int = 3,
) -> Claim:
    return ledger.claim(
        device_id=device_id, sha1=sha1, alert_id="alert-1", at=at, max_submissions=most
    )


def note_verdict(
    ledger: Ledger, *, alert_id: str = "alert-1", at: datetime = NOW
) -> None:
    ledger.record_verdict(
        device_id=DEVICE,
        sha1=SHA1,
        alert_id=alert_id,
        verdict="submit",
        reason="eligible",
        at=at,
    )


def submit(
    ledger: Ledger,
    *,
    device_id: str = DEVICE,
    sha1: str = SHA1,
    at: datetime = NOW,
    status: str = "Pending",
    action_id: str = ACTION,
) -> LedgerEntry:
    granted = claim(ledger, at=at, device_id=device_id, sha1=sha1)
    assert granted.granted, f"the claim was refused: {granted.refusal}"
    return ledger.record_submission(
        granted, action_id=action_id, action_status=status, at=at
    )


class TestLedgerContract:
    """What every ledger answers, in memory and in Table storage alike."""

    def test_knows_nothing_of_a_target_never_seen(self, ledger: Ledger) -> None:
        assert ledger.find(DEVICE, SHA1) is None
        assert ledger.entries() == []

    def test_a_verdict_creates_the_entry(self, ledger: Ledger) -> None:
        note_verdict(ledger)

        entry = ledger.find(DEVICE, SHA1)

        assert entry is not None
        assert entry.verdicts == [VerdictRecord(NOW, "submit", "eligible", "alert-1")]
        assert entry.alert_ids == ["alert-1"]
        assert (entry.first_seen, entry.last_seen) == (NOW, NOW)
        assert entry.submissions == 0
        assert entry.claim_id is None

    def test_a_claim_holds_until_it_expires(self, ledger: Ledger) -> None:
        first = claim(ledger)
        second = claim(ledger, at=NOW + timedelta(seconds=CLAIM_SECONDS - 1))

        assert first.granted
        assert second.refusal is ClaimRefusal.CLAIMED_ELSEWHERE
        assert second.retry_at == NOW + timedelta(seconds=CLAIM_SECONDS)
        entry = ledger.find(DEVICE, SHA1)
        assert entry is not None
        assert (entry.claim_id, entry.claimed_at) == (first.claim_id, NOW)
        assert entry.alert_ids == ["alert-1"]

    def test_a_stale_claim_is_taken_over_with_a_recovery_time(
        self, ledger: Ledger
    ) -> None:
        claim(ledger)

        later = NOW + timedelta(seconds=CLAIM_SECONDS)
        takeover = claim(ledger, at=later)

        assert takeover.granted
        assert takeover.recover_since == NOW
        entry = ledger.find(DEVICE, SHA1)
        assert entry is not None
        assert entry.claim_id == takeover.claim_id
        assert entry.recover_since == NOW

    def test_a_submission_ends_the_claim_and_blocks_another(
        self, ledger: Ledger
    ) -> None:
        recorded = submit(ledger)

        again = claim(ledger, at=NOW + timedelta(minutes=1))

        assert recorded.action_id == ACTION
        assert recorded.action_status == "Pending"
        assert recorded.submissions == 1
        assert recorded.submitted_at == NOW
        assert recorded.claim_id is None
        assert recorded.has_open_action
        assert again.refusal is ClaimRefusal.DUPLICATE
        assert ledger.find(DEVICE, SHA1) == recorded

    def test_a_submission_clears_what_was_left_to_recover(self, ledger: Ledger) -> None:
        claim(ledger)
        takeover = claim(ledger, at=NOW + timedelta(seconds=CLAIM_SECONDS))

        recorded = ledger.record_submission(
            takeover, action_id=ACTION, action_status="InProgress", at=NOW
        )

        assert recorded.recover_since is None
        assert recorded.claim_id is None

    def test_a_late_answer_leaves_the_newer_claim_in_place(
        self, ledger: Ledger
    ) -> None:
        stale = claim(ledger)
        current = claim(ledger, at=NOW + timedelta(seconds=CLAIM_SECONDS))

        recorded = ledger.record_submission(
            stale, action_id=ACTION, action_status="Pending", at=NOW
        )

        assert recorded.claim_id == current.claim_id
        assert recorded.action_id == ACTION

    def test_refusals_count_until_the_submissions_are_exhausted(
        self, ledger: Ledger
    ) -> None:
        for minute in range(2):
            granted = claim(ledger, at=NOW + timedelta(minutes=minute), most=2)
            assert granted.granted
            refused = ledger.record_refusal(
                granted, error="400 InvalidRequest: bad SHA-1", at=NOW
            )

        last = claim(ledger, at=NOW + timedelta(minutes=5), most=2)

        assert refused.action_status == "Refused"
        assert refused.action_id is None
        assert refused.last_error == "400 InvalidRequest: bad SHA-1"
        assert refused.submissions == 2
        assert last.refusal is ClaimRefusal.RESUBMISSIONS_EXHAUSTED

    def test_a_later_submission_clears_the_last_error(self, ledger: Ledger) -> None:
        granted = claim(ledger)
        ledger.record_refusal(granted, error="404 not found", at=NOW)

        recorded = submit(ledger, at=NOW + timedelta(minutes=1))

        assert recorded.last_error is None
        assert recorded.submissions == 2

    def test_release_after_a_possible_send_leaves_a_recovery_time(
        self, ledger: Ledger
    ) -> None:
        granted = claim(ledger)

        ledger.release(granted, maybe_sent=True, at=NOW + timedelta(seconds=30))
        following = claim(ledger, at=NOW + timedelta(seconds=31))

        assert following.granted
        assert following.recover_since == NOW

    def test_release_without_a_send_leaves_nothing(self, ledger: Ledger) -> None:
        granted = claim(ledger)

        ledger.release(granted, maybe_sent=False, at=NOW)

        entry = ledger.find(DEVICE, SHA1)
        assert entry is not None
        assert (entry.claim_id, entry.claimed_at, entry.recover_since) == (
            None,
            None,
            None,
        )

    def test_release_of_a_superseded_claim_changes_nothing(
        self, ledger: Ledger
    ) -> None:
        stale = claim(ledger)
        later = NOW + timedelta(seconds=CLAIM_SECONDS)
        current = claim(ledger, at=later)
        before = ledger.find(DEVICE, SHA1)

        ledger.release(stale, maybe_sent=True, at=later)

        assert ledger.find(DEVICE, SHA1) == before
        assert before is not None
        assert before.claim_id == current.claim_id

    def test_release_of_an_unknown_target_does_nothing(self, ledger: Ledger) -> None:
        phantom = Claim(device_id=DEVICE, sha1=SHA1, claim_id="f" * 32)

        ledger.release(phantom, maybe_sent=True, at=NOW)

        assert ledger.find(DEVICE, SHA1) is None

    def test_action_status_follows_only_the_current_action(
        self, ledger: Ledger
    ) -> None:
        submit(ledger)
        later = NOW + timedelta(minutes=5)

        old = ledger.record_action_status(
            device_id=DEVICE, sha1=SHA1, action_id="older", status="Failed", at=later
        )
        unknown = ledger.record_action_status(
            device_id=OTHER_DEVICE,
            sha1=SHA1,
            action_id=ACTION,
            status="Failed",
            at=later,
        )
        done = ledger.record_action_status(
            device_id=DEVICE, sha1=SHA1, action_id=ACTION, status="Succeeded", at=later
        )

        assert old is None
        assert unknown is None
        assert done is not None
        assert done.action_status == "Succeeded"
        assert done.action_updated_at == later
        assert not done.has_open_action
        assert ledger.find(DEVICE, SHA1) == done

    def test_open_only_lists_targets_with_an_open_action(self, ledger: Ledger) -> None:
        devices = [f"{index:040x}" for index in range(1, 5)]
        statuses = ["Pending", "InProgress", "Succeeded", "Failed"]
        for device_id, status in zip(devices, statuses, strict=True):
            submit(ledger, device_id=device_id, status=status)
        note_verdict(ledger)
        ledger.record_action_status(
            device_id=devices[0],
            sha1=SHA1,
            action_id=ACTION,
            status="Succeeded",
            at=NOW,
        )

        open_entries = ledger.entries(open_only=True)
        every_entry = ledger.entries()

        assert [entry.device_id for entry in open_entries] == [devices[1]]
        assert len(every_entry) == 5

    def test_devices_submitted_counts_one_file_since_a_time(
        self, ledger: Ledger
    ) -> None:
        devices = [f"{index:040x}" for index in range(1, 5)]
        for hours_ago, device_id in zip((3, 1, 0, 0), devices, strict=True):
            submit(ledger, device_id=device_id, at=NOW - timedelta(hours=hours_ago))
        submit(ledger, device_id=devices[0], sha1=OTHER_SHA1, at=NOW)
        ledger.record_verdict(
            device_id=OTHER_DEVICE,
            sha1=SHA1,
            alert_id="a",
            verdict="skip",
            reason="excluded",
            at=NOW,
        )

        last_hour = ledger.devices_submitted(SHA1, since=NOW - timedelta(hours=1))
        today = ledger.devices_submitted(SHA1, since=NOW - timedelta(hours=12))
        from_now = ledger.devices_submitted(SHA1, since=NOW)
        other = ledger.devices_submitted(OTHER_SHA1, since=NOW - timedelta(hours=1))

        assert (last_hour, today, from_now, other) == (3, 4, 2, 1)

    def test_alert_ids_and_verdicts_stay_bounded(self, ledger: Ledger) -> None:
        for index in range(max(MAX_ALERT_IDS, MAX_VERDICTS) + 4):
            note_verdict(
                ledger, alert_id=f"alert-{index}", at=NOW + timedelta(seconds=index)
            )

        entry = ledger.find(DEVICE, SHA1)

        assert entry is not None
        assert len(entry.alert_ids) == MAX_ALERT_IDS
        assert len(entry.verdicts) == MAX_VERDICTS
        assert entry.verdicts[-1].alert_id == entry.alert_ids[-1]
        assert entry.first_seen == NOW

    def test_answers_are_copies(self, ledger: Ledger) -> None:
        recorded = submit(ledger)
        recorded.action_status = "Tampered"

        found = ledger.find(DEVICE, SHA1)

        assert found is not None
        assert found.action_status == "Pending"


def full_entry() -> LedgerEntry:
    """An entry with every field set, times in two zones and to the microsecond."""
    paris = timezone(timedelta(hours=1))
    return LedgerEntry(
        device_id=DEVICE,
        sha1=SHA1,
        action_id=ACTION,
        action_status="InProgress",
        action_updated_at=datetime(2026, 12, 3, 12, 0, 1, 250_001, tzinfo=UTC),
        submitted_at=datetime(2026, 12, 3, 13, 0, 0, 999_999, tzinfo=paris),
        submissions=2,
        alert_ids=["da638_1", "da638_2", "ålert «quoted»"],
        verdicts=[
            VerdictRecord(NOW, "skip", "trusted_signer", "da638_1"),
            VerdictRecord(
                datetime(2026, 12, 3, 13, 5, tzinfo=paris), "submit", "", "da638_2"
            ),
        ],
        first_seen=NOW - timedelta(days=1),
        last_seen=NOW,
        last_error='400 "InvalidRequest"',
        claim_id="c" * 32,
        claimed_at=NOW + timedelta(microseconds=1),
        recover_since=NOW - timedelta(seconds=30),
    )


class TestEntityMapping:
    def test_every_field_survives_storage(
        self, table: TableClient, table_ledger: TableLedger
    ) -> None:
        entry = full_entry()
        table.create_entity(entity_from_entry(entry))

        found = table_ledger.find(DEVICE, SHA1)

        assert found == entry
        assert found is not None
        for value in (found.submitted_at, found.claimed_at, found.verdicts[1].at):
            assert type(value) is datetime
            assert value is not None
            assert value.utcoffset() == timedelta(0)

    def test_the_mapping_alone_round_trips(self) -> None:
        entry = full_entry()

        assert entry_from_entity(entity_from_entry(entry)) == entry

    def test_lists_are_compact_json_and_absent_fields_are_left_out(self) -> None:
        entity = entity_from_entry(LedgerEntry(device_id=DEVICE, sha1=SHA1))

        assert entity["AlertIds"] == "[]"
        assert entity["Verdicts"] == "[]"
        assert "ClaimId" not in entity
        assert entity["HasOpenAction"] is False
        assert (entity["PartitionKey"], entity["RowKey"]) == (SHA1, DEVICE)

    def test_has_open_action_is_stored_as_the_entry_says(
        self, table: TableClient, table_ledger: TableLedger
    ) -> None:
        submit(table_ledger)
        pending = table.get_entity(SHA1, DEVICE)["HasOpenAction"]
        table_ledger.record_action_status(
            device_id=DEVICE, sha1=SHA1, action_id=ACTION, status="TimeOut", at=NOW
        )
        timed_out = table.get_entity(SHA1, DEVICE)["HasOpenAction"]

        assert (pending, timed_out) == (True, False)

    def test_a_long_error_is_cut_to_what_a_property_holds(
        self, table_ledger: TableLedger
    ) -> None:
        granted = claim(table_ledger)

        refused = table_ledger.record_refusal(granted, error="x" * 100_000, at=NOW)

        assert refused.last_error is not None
        assert len(refused.last_error) == 4_000
        assert table_ledger.find(DEVICE, SHA1) == refused

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("Version", 2),
            ("Submissions", "three"),
            ("Submissions", -1),
            ("AlertIds", "[1, 2]"),
            ("Verdicts", "not json"),
            (
                "Verdicts",
                '[{"at": "yesterday", "verdict": "skip", '
                '"reason": "r", "alert_id": "a"}]',
            ),
            ("Verdicts", '[{"verdict": "skip"}]'),
            ("ClaimedAt", "2026-12-03T12:00:00Z"),
            ("ActionId", 5),
        ],
    )
    def test_a_corrupt_entity_raises_naming_the_property(
        self,
        table: TableClient,
        table_ledger: TableLedger,
        name: str,
        value: Any,
    ) -> None:
        entity = entity_from_entry(full_entry()) | {name: value}
        table.create_entity(entity)

        with pytest.raises(LedgerEntityError, match=name):
            table_ledger.find(DEVICE, SHA1)
        with pytest.raises(LedgerEntityError, match=name):
            claim(table_ledger, at=NOW + timedelta(days=1))

    def test_entries_leave_out_a_corrupt_entity_and_log_it(
        self,
        table: TableClient,
        table_ledger: TableLedger,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        submit(table_ledger, device_id=OTHER_DEVICE)
        table.create_entity(entity_from_entry(full_entry()) | {"Submissions": "x"})

        with caplog.at_level(logging.ERROR, logger="shared.table_ledger"):
            listed = table_ledger.entries(open_only=True)

        assert [entry.device_id for entry in listed] == [OTHER_DEVICE]
        unreadable = [r for r in caplog.records if r.msg == "ledger.entity_unreadable"]
        assert len(unreadable) == 1
        assert unreadable[0].device_id == DEVICE

    def test_identifiers_must_be_forty_hex_characters(
        self, table_ledger: TableLedger
    ) -> None:
        with pytest.raises(ValueError, match="device_id"):
            table_ledger.find("a' or PartitionKey ne '", SHA1)
        with pytest.raises(ValueError, match="sha1"):
            table_ledger.devices_submitted("not-a-sha1", since=NOW)

    def test_identifiers_are_stored_in_lower_case(
        self, table_ledger: TableLedger
    ) -> None:
        note_verdict(table_ledger)

        found = table_ledger.find(DEVICE.upper(), SHA1.upper())

        assert found is not None
        assert (found.device_id, found.sha1) == (DEVICE, SHA1)

    def test_a_time_without_a_zone_is_refused(self, table_ledger: TableLedger) -> None:
        with pytest.raises(ValueError, match="time zone"):
            note_verdict(table_ledger, at=datetime(2026, 12, 3, 12, 0))
        with pytest.raises(ValueError, match="time zone"):
            table_ledger.devices_submitted(SHA1, since=datetime(2026, 12, 3))


class MeddlingTable(TableClient):
    """A table client that lets another writer act between each read and write."""

    meddle: Callable[[], None] | None = None

    def get_entity(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_entity(*args, **kwargs)
        finally:
            if self.meddle is not None:
                self.meddle()


@pytest.fixture(name="meddling")
def _meddling(storage_connection: str, table: TableClient) -> MeddlingTable:
    return MeddlingTable.from_connection_string(storage_connection, table.table_name)


class TestConcurrency:
    def test_a_verdict_noted_mid_claim_keeps_both(
        self, meddling: MeddlingTable, table_ledger: TableLedger
    ) -> None:
        note_verdict(table_ledger, alert_id="alert-0")
        ledger = TableLedger(meddling)

        def note_once() -> None:
            meddling.meddle = None
            note_verdict(table_ledger, alert_id="alert-2")

        meddling.meddle = note_once
        granted = claim(ledger)

        entry = table_ledger.find(DEVICE, SHA1)
        assert granted.granted
        assert entry is not None
        assert entry.claim_id == granted.claim_id
        assert [v.alert_id for v in entry.verdicts] == ["alert-0", "alert-2"]
        assert entry.alert_ids == ["alert-0", "alert-2", "alert-1"]

    def test_a_claim_taken_mid_claim_is_respected(
        self, meddling: MeddlingTable, table_ledger: TableLedger
    ) -> None:
        ledger = TableLedger(meddling)
        rival: list[Claim] = []

        def claim_once() -> None:
            meddling.meddle = None
            rival.append(claim(table_ledger))

        meddling.meddle = claim_once
        mine = claim(ledger)

        assert rival[0].granted
        assert mine.refusal is ClaimRefusal.CLAIMED_ELSEWHERE
        entry = table_ledger.find(DEVICE, SHA1)
        assert entry is not None
        assert entry.claim_id == rival[0].claim_id

    def test_endless_conflicts_give_up_with_a_ledger_conflict(
        self,
        meddling: MeddlingTable,
        table: TableClient,
        caplog: pytest.LogCaptureFixture,
        storage_connection: str,
    ) -> None:
        touches = iter(range(1000))

        def touch() -> None:
            blank = entity_from_entry(LedgerEntry(device_id=DEVICE, sha1=SHA1))
            table.upsert_entity(
                blank | {"Touched": next(touches)}, mode=UpdateMode.MERGE
            )

        meddling.meddle = touch
        ledger = TableLedger(meddling)

        with (
            caplog.at_level(logging.DEBUG, logger="shared.table_ledger"),
            pytest.raises(LedgerConflictError, match="try again later"),
        ):
            claim(ledger)

        conflicts = [r for r in caplog.records if r.msg == "ledger.write_conflict"]
        assert [r.attempt for r in conflicts] == list(range(1, MAX_WRITE_ATTEMPTS + 1))
        assert {(r.device_id, r.sha1, r.operation) for r in conflicts} == {
            (DEVICE, SHA1, "claim")
        }
        assert conflicts[0].conflict == "ResourceExistsError"
        assert conflicts[1].conflict == "ResourceModifiedError"
        assert _account_key(storage_connection) not in caplog.text

    @pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
    def test_threads_racing_for_one_target_get_one_grant(
        self,
        storage_connection: str,
        table_name: str,
        table_ledger: TableLedger,
        existing: bool,
    ) -> None:
        if existing:
            note_verdict(table_ledger, alert_id="alert-0")
        racers = 8
        barrier = threading.Barrier(racers)
        claims: list[Claim] = []
        errors: list[BaseException] = []

        def race() -> None:
            own = TableClient.from_connection_string(storage_connection, table_name)
            ledger = TableLedger(own)
            try:
                barrier.wait()
                claims.append(claim(ledger))
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=race) for _ in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        granted = [c for c in claims if c.granted]
        assert len(granted) == 1
        assert [c.refusal for c in claims if not c.granted] == [
            ClaimRefusal.CLAIMED_ELSEWHERE
        ] * (racers - 1)
        entry = table_ledger.find(DEVICE, SHA1)
        assert entry is not None
        assert entry.claim_id == granted[0].claim_id

    def test_threads_noting_verdicts_at_once_lose_none(
        self, storage_connection: str, table_name: str, table_ledger: TableLedger
    ) -> None:
        racers = 8
        barrier = threading.Barrier(racers)
        errors: list[BaseException] = []

        def race(index: int) -> None:
            own = TableClient.from_connection_string(storage_connection, table_name)
            try:
                barrier.wait()
                note_verdict(TableLedger(own), alert_id=f"alert-{index}")
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        entry = table_ledger.find(DEVICE, SHA1)
        assert entry is not None
        assert sorted(entry.alert_ids) == sorted(f"alert-{n}" for n in range(racers))
        assert len(entry.verdicts) == racers

    def test_two_processes_claiming_twenty_targets_get_each_once(
        self,
        storage_connection: str,
        table_name: str,
        table: TableClient,
        repo: Path,
    ) -> None:
        targets = [[f"{index:040x}", SHA1] for index in range(1, 21)]
        environment = os.environ | {
            "LEDGER_CONNECTION": storage_connection,
            "LEDGER_TABLE": table_name,
            "LEDGER_TARGETS": json.dumps(targets),
            "LEDGER_AT": NOW.isoformat(),
        }
        claimants = [
            subprocess.Popen(
                [sys.executable, "-c", CLAIMANT],
                cwd=repo,
                env=environment,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]

        try:
            for process in claimants:
                assert process.stdout is not None
                assert process.stdout.readline().strip() == "ready"
            for process in claimants:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
            results = [process.communicate(timeout=60) for process in claimants]
        finally:
            for process in claimants:
                if process.poll() is None:
                    process.kill()
                    process.wait()

        for process, (_, stderr) in zip(claimants, results, strict=True):
            assert process.returncode == 0, stderr
        granted = [pair for stdout, _ in results for pair in json.loads(stdout)]
        assert sorted(granted) == sorted(targets)
        stored = {
            entity["RowKey"]: entity["ClaimId"] for entity in table.list_entities()
        }
        assert len(stored) == 20


# Run by each racing process: claim every target once, print those granted.
CLAIMANT = textwrap.dedent(
    """
    import json, os, sys
    from datetime import datetime

    from azure.data.tables import TableClient

    from shared.ledger import ClaimRefusal
    from shared.table_ledger import TableLedger

    table = TableClient.from_connection_string(
        os.environ["LEDGER_CONNECTION"], os.environ["LEDGER_TABLE"]
    )
    ledger = TableLedger(table)
    targets = json.loads(os.environ["LEDGER_TARGETS"])
    at = datetime.fromisoformat(os.environ["LEDGER_AT"])
    print("ready", flush=True)
    sys.stdin.readline()

    granted = []
    for device_id, sha1 in targets:
        claim = ledger.claim(
            device_id=device_id, sha1=sha1, alert_id="race", at=at, max_submissions=3
        )
        if claim.granted:
            granted.append([device_id, sha1])
        elif claim.refusal is not ClaimRefusal.CLAIMED_ELSEWHERE:
            sys.exit(f"unexpected refusal {claim.refusal}")
    print(json.dumps(granted), flush=True)
    """
)


def _account_key(connection: str) -> str:
    parts = dict(part.split("=", 1) for part in connection.split(";") if part)
    return parts["AccountKey"]


class TestStorageFailures:
    def test_a_missing_table_raises_the_sdk_error_not_a_conflict(
        self, table_service: TableServiceClient
    ) -> None:
        ledger = TableLedger(table_service.get_table_client("nosuchtable"))

        with pytest.raises(ResourceNotFoundError):
            ledger.find(DEVICE, SHA1)
        with pytest.raises(ResourceNotFoundError):
            claim(ledger)
        with pytest.raises(ResourceNotFoundError):
            ledger.entries(open_only=True)

    def test_an_unreachable_service_raises_the_sdk_error(
        self, storage_connection: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        parts = [
            part
            for part in storage_connection.split(";")
            if part and not part.startswith("TableEndpoint=")
        ]
        parts.append(f"TableEndpoint=http://127.0.0.1:{closed_port}/devstoreaccount1")
        unreachable = TableClient.from_connection_string(
            ";".join(parts), "ledger", retry_total=0
        )
        ledger = TableLedger(unreachable)

        with caplog.at_level(logging.DEBUG, logger="shared"), pytest.raises(AzureError):
            claim(ledger)

        assert _account_key(storage_connection) not in caplog.text

    def test_create_makes_the_table_once(
        self, table_service: TableServiceClient, storage_prefix: str
    ) -> None:
        name = f"{storage_prefix}made"

        first = TableLedger.create(table_service, name)
        note_verdict(first)
        second = TableLedger.create(table_service, name)

        assert second.find(DEVICE, SHA1) is not None
