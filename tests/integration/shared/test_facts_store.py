"""The shared facts store on Azurite, alone and as the second level of FactsCache.

The store's clock is injected, so expiry is asserted by moving time, not by
waiting. A second ``FactsCache`` with empty memory plays another instance of the
function app.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from shared.codec import encode_device_facts
from shared.facts_cache import FactsCache
from shared.facts_store import TableFactsStore
from shared.settings import Settings
from shared.targets import DeviceFacts, FileFacts

pytestmark = pytest.mark.integration

DEVICE_ID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
SHA1 = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"
DEVICE = DeviceFacts(
    device_id=DEVICE_ID,
    os_platform="Windows11",
    os_build=22631,
    os_version="23H2",
    health_status="Active",
    onboarding_status="Onboarded",
    av_mode="0",
    machine_tags=("finance", "tier-0"),
    device_name="fin-ws-01",
    source="api",
    av_status=None,
)
FILE = FileFacts(
    sha1=SHA1,
    signer="Contoso Ltd",
    issuer="Contoso Code Signing CA",
    file_publisher="Contoso",
    is_valid_certificate=True,
    source="api",
)


class Clock:
    """UTC time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Lookup:
    """Stands in for one Defender lookup and counts its calls."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[str] = []

    def __call__(self, identifier: str) -> Any:
        self.calls.append(identifier)
        return self.answer


@pytest.fixture(name="clock")
def _clock() -> Clock:
    return Clock()


@pytest.fixture(name="table_service")
def _table_service(storage_connection: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(storage_connection)


@pytest.fixture(name="table")
def _table(table_service: TableServiceClient, storage_prefix: str) -> TableClient:
    return table_service.create_table_if_not_exists(f"{storage_prefix}facts")


@pytest.fixture(name="store")
def _store(table: TableClient, clock: Clock) -> TableFactsStore:
    return TableFactsStore(table, clock=clock)


class TestTableFactsStore:
    def test_device_and_file_facts_round_trip(self, store: TableFactsStore) -> None:
        store.put_device(DEVICE_ID, DEVICE, 60)
        store.put_file(SHA1, FILE, 60)

        assert store.get_device(DEVICE_ID) == (True, DEVICE)
        assert store.get_file(SHA1) == (True, FILE)

    def test_nothing_stored_reads_as_not_found(self, store: TableFactsStore) -> None:
        assert store.get_device(DEVICE_ID) == (False, None)
        assert store.get_file(SHA1) == (False, None)

    def test_facts_expire_at_their_lifetime(
        self, store: TableFactsStore, clock: Clock
    ) -> None:
        store.put_device(DEVICE_ID, DEVICE, 60)

        clock.advance(59.999)
        before = store.get_device(DEVICE_ID)
        clock.advance(0.001)
        at_expiry = store.get_device(DEVICE_ID)

        assert before == (True, DEVICE)
        assert at_expiry == (False, None)

    def test_no_record_is_remembered_as_such(
        self, store: TableFactsStore, clock: Clock
    ) -> None:
        store.put_file(SHA1, None, 300)

        remembered = store.get_file(SHA1)
        clock.advance(300)

        assert remembered == (True, None)
        assert store.get_file(SHA1) == (False, None)

    def test_a_later_answer_replaces_the_earlier(self, store: TableFactsStore) -> None:
        store.put_device(DEVICE_ID, None, 300)

        store.put_device(DEVICE_ID, DEVICE, 60)

        assert store.get_device(DEVICE_ID) == (True, DEVICE)

    def test_no_lifetime_stores_nothing(self, store: TableFactsStore) -> None:
        store.put_device(DEVICE_ID, DEVICE, 0)

        assert store.get_device(DEVICE_ID) == (False, None)

    def test_keys_ignore_case_and_kinds_stay_apart(
        self, store: TableFactsStore
    ) -> None:
        same = "d" * 40
        store.put_device(same.upper(), DeviceFacts(device_id=same, source="api"), 60)

        assert store.get_device(same)[0] is True
        assert store.get_file(same) == (False, None)

    def test_an_identifier_that_is_not_forty_hex_is_refused(
        self, store: TableFactsStore
    ) -> None:
        with pytest.raises(ValueError, match="40 hexadecimal"):
            store.get_device("x' or RowKey ne '")
        with pytest.raises(ValueError, match="40 hexadecimal"):
            store.put_file("../etc", None, 60)

    @pytest.mark.parametrize(
        "properties",
        [
            {"Facts": "{not json"},
            {"Facts": '{"version": 99}'},
            {"Facts": '{"version": 1, "device_id": "short", "source": "api"}'},
            {"Facts": 42},
            {"ExpiresAt": "tomorrow"},
            {"Facts": None},
        ],
        ids=[
            "not-json",
            "newer-version",
            "bad-field",
            "not-text",
            "no-expiry",
            "no-facts",
        ],
    )
    def test_an_unreadable_document_reads_as_not_found(
        self,
        store: TableFactsStore,
        table: TableClient,
        clock: Clock,
        caplog: pytest.LogCaptureFixture,
        properties: dict[str, Any],
    ) -> None:
        entity = {
            "PartitionKey": "device",
            "RowKey": DEVICE_ID,
            "Facts": json.dumps(encode_device_facts(DEVICE)),
            "ExpiresAt": clock.now + timedelta(hours=1),
        }
        table.upsert_entity(entity | properties)

        with caplog.at_level(logging.WARNING, logger="shared.facts_store"):
            found = store.get_device(DEVICE_ID)

        assert found == (False, None)
        warnings = [r for r in caplog.records if r.msg == "facts_store.unreadable"]
        assert len(warnings) == 1
        assert warnings[0].device_id == DEVICE_ID

    def test_facts_stored_under_another_identifier_are_not_trusted(
        self, store: TableFactsStore, table: TableClient, clock: Clock
    ) -> None:
        other = "e" * 40
        store.put_device(other, DeviceFacts(device_id=other, source="api"), 60)
        moved = dict(table.get_entity("device", other)) | {"RowKey": DEVICE_ID}
        table.upsert_entity(moved)

        assert store.get_device(DEVICE_ID) == (False, None)

    def test_create_makes_the_table(
        self, table_service: TableServiceClient, storage_prefix: str, clock: Clock
    ) -> None:
        first = TableFactsStore.create(table_service, f"{storage_prefix}made")
        first.put_file(SHA1, FILE, 60)

        again = TableFactsStore.create(
            table_service, f"{storage_prefix}made", clock=clock
        )

        assert again.get_file(SHA1) == (True, FILE)


class TestFactsCacheWithStore:
    def test_another_instance_finds_what_the_first_fetched(
        self, store: TableFactsStore
    ) -> None:
        first = FactsCache(ttl_seconds=3600, store=store)
        second = FactsCache(ttl_seconds=3600, store=store)
        devices = Lookup(DEVICE)
        files = Lookup(None)

        fetched = (first.device(DEVICE_ID, devices), first.file(SHA1, files))
        shared = (second.device(DEVICE_ID, devices), second.file(SHA1, files))

        assert fetched == shared == (DEVICE, None)
        assert devices.calls == [DEVICE_ID]
        assert files.calls == [SHA1]
        assert second.sizes() == {"devices": 1, "files": 1}

    def test_an_absence_is_shared_for_the_shorter_time(
        self, store: TableFactsStore, clock: Clock
    ) -> None:
        FactsCache(ttl_seconds=3600, missing_ttl_seconds=300, store=store).file(
            SHA1, Lookup(None)
        )
        clock.advance(300)
        files = Lookup(FILE)

        found = FactsCache(ttl_seconds=3600, store=store).file(SHA1, files)

        assert found == FILE
        assert files.calls == [SHA1]

    def test_from_settings_uses_the_store(self, store: TableFactsStore) -> None:
        settings = Settings(fact_cache_seconds=600)
        FactsCache.from_settings(settings, store=store).device(
            DEVICE_ID, Lookup(DEVICE)
        )
        devices = Lookup(DEVICE)

        FactsCache.from_settings(settings, store).device(DEVICE_ID, devices)

        assert devices.calls == []

    def test_an_unavailable_store_does_not_stop_the_lookup(
        self,
        table_service: TableServiceClient,
        clock: Clock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        missing = TableFactsStore(
            table_service.get_table_client("nosuchfacts"), clock=clock
        )
        cache = FactsCache(ttl_seconds=3600, store=missing)
        devices = Lookup(DEVICE)

        with caplog.at_level(logging.WARNING, logger="shared.facts_cache"):
            found = cache.device(DEVICE_ID, devices)

        assert found == DEVICE
        assert devices.calls == [DEVICE_ID]
        unavailable = [
            (r.operation, r.kind, r.error)
            for r in caplog.records
            if r.msg == "facts_store.unavailable"
        ]
        assert unavailable == [
            ("read", "device", "ResourceNotFoundError"),
            ("write", "device", "ResourceNotFoundError"),
        ]
