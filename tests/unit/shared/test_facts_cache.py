"""The facts cache: expiry, remembered absences, faults, bounds, the shared store.

The store here is ``DictStore``, a ``FactsStore`` in a dict; the Table storage one
is tested on Azurite in tests/integration/shared/test_facts_store.py.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError

from shared.errors import ApiRequestError
from shared.facts_cache import MISSING_TTL_SECONDS, FactsCache
from shared.settings import Settings
from shared.targets import DeviceFacts, FileFacts

DEVICE_ID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
SHA1 = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeLookup:
    """Stands in for one Defender lookup: known answers, a call log, faults."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers = dict(answers or {})
        self.calls: list[str] = []
        self.fault: Exception | None = None

    def __call__(self, identifier: str) -> Any:
        self.calls.append(identifier)
        if self.fault is not None:
            raise self.fault
        return self.answers.get(identifier.strip().lower())


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


def device(device_id: str = DEVICE_ID) -> DeviceFacts:
    return DeviceFacts(
        device_id=device_id, os_platform="Windows11", av_mode="1", source="api"
    )


def test_cache_fetches_once_and_answers_from_memory_until_expiry(
    clock: FakeClock,
) -> None:
    cache = FactsCache(ttl_seconds=60, clock=clock)
    fetch = FakeLookup({DEVICE_ID: device()})

    first = cache.device(DEVICE_ID, fetch)
    clock.advance(59.9)
    second = cache.device(DEVICE_ID, fetch)
    clock.advance(0.1)
    third = cache.device(DEVICE_ID, fetch)

    assert first == second == third == device()
    assert fetch.calls == [DEVICE_ID, DEVICE_ID]


def test_cache_keys_ignore_case_and_surrounding_space(clock: FakeClock) -> None:
    cache = FactsCache(ttl_seconds=60, clock=clock)
    fetch = FakeLookup({SHA1: FileFacts(sha1=SHA1, signer="Contoso", source="api")})

    cache.file(SHA1.upper(), fetch)
    found = cache.file(f" {SHA1} ", fetch)

    assert found is not None
    assert found.signer == "Contoso"
    assert fetch.calls == [SHA1.upper()]


def test_cache_remembers_an_unknown_device_for_the_shorter_time(
    clock: FakeClock,
) -> None:
    cache = FactsCache(ttl_seconds=3600, clock=clock)
    fetch = FakeLookup()

    first = cache.device(DEVICE_ID, fetch)
    clock.advance(MISSING_TTL_SECONDS - 1)
    second = cache.device(DEVICE_ID, fetch)
    clock.advance(1)
    cache.device(DEVICE_ID, fetch)

    assert first is None
    assert second is None
    assert len(fetch.calls) == 2


def test_cache_never_remembers_absence_longer_than_presence(clock: FakeClock) -> None:
    cache = FactsCache(ttl_seconds=30, clock=clock)
    fetch = FakeLookup()

    cache.file(SHA1, fetch)
    clock.advance(30)
    cache.file(SHA1, fetch)

    assert len(fetch.calls) == 2


def test_cache_remembers_nothing_when_the_fetch_fails(clock: FakeClock) -> None:
    cache = FactsCache(ttl_seconds=60, clock=clock)
    fetch = FakeLookup({DEVICE_ID: device()})
    fetch.fault = ApiRequestError("connection reset")

    with pytest.raises(ApiRequestError):
        cache.device(DEVICE_ID, fetch)
    fetch.fault = None
    found = cache.device(DEVICE_ID, fetch)

    assert found == device()
    assert len(fetch.calls) == 2


def test_cache_with_zero_lifetime_always_fetches(clock: FakeClock) -> None:
    cache = FactsCache(ttl_seconds=0, clock=clock)
    fetch = FakeLookup({DEVICE_ID: device()})

    cache.device(DEVICE_ID, fetch)
    cache.device(DEVICE_ID, fetch)

    assert len(fetch.calls) == 2
    assert cache.sizes() == {"devices": 0, "files": 0}


def test_cache_evicts_the_least_recently_used_entry(clock: FakeClock) -> None:
    cache = FactsCache(ttl_seconds=60, max_entries=2, clock=clock)
    first, second, third = "a" * 40, "b" * 40, "c" * 40
    fetch = FakeLookup({key: device(key) for key in (first, second, third)})
    cache.device(first, fetch)
    cache.device(second, fetch)

    cache.device(first, fetch)
    cache.device(third, fetch)
    fetch.calls.clear()
    cache.device(first, fetch)
    cache.device(third, fetch)
    cache.device(second, fetch)

    assert fetch.calls == [second]
    assert cache.sizes()["devices"] == 2


def test_cache_keeps_devices_and_files_apart(clock: FakeClock) -> None:
    cache = FactsCache(ttl_seconds=60, clock=clock)
    same_key = "d" * 40
    devices = FakeLookup({same_key: device(same_key)})
    files = FakeLookup({same_key: FileFacts(sha1=same_key, source="api")})

    found_device = cache.device(same_key, devices)
    found_file = cache.file(same_key, files)

    assert isinstance(found_device, DeviceFacts)
    assert isinstance(found_file, FileFacts)
    assert cache.sizes() == {"devices": 1, "files": 1}


def test_cache_clear_forgets_everything(clock: FakeClock) -> None:
    cache = FactsCache(ttl_seconds=60, clock=clock)
    fetch = FakeLookup({DEVICE_ID: device()})
    cache.device(DEVICE_ID, fetch)
    cache.file(SHA1, FakeLookup())

    cache.clear()
    cache.device(DEVICE_ID, fetch)

    assert len(fetch.calls) == 2
    assert cache.sizes() == {"devices": 1, "files": 0}


def test_cache_from_settings_uses_fact_cache_seconds(clock: FakeClock) -> None:
    cache = FactsCache.from_settings(Settings(fact_cache_seconds=10), clock=clock)
    fetch = FakeLookup({SHA1: FileFacts(sha1=SHA1, source="api")})

    cache.file(SHA1, fetch)
    clock.advance(9)
    cache.file(SHA1, fetch)
    clock.advance(1)
    cache.file(SHA1, fetch)

    assert len(fetch.calls) == 2


@pytest.mark.parametrize(
    "arguments",
    [
        {"ttl_seconds": -1},
        {"ttl_seconds": 60, "missing_ttl_seconds": -1},
        {"ttl_seconds": 60, "max_entries": 0},
    ],
)
def test_cache_refuses_impossible_limits(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"lifetime|max_entries"):
        FactsCache(**arguments)


def test_cache_stays_within_bounds_under_concurrent_use(clock: FakeClock) -> None:
    cache = FactsCache(ttl_seconds=60, max_entries=50, clock=clock)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        fetch = FakeLookup()
        try:
            for index in range(2_000):
                device_id = f"{worker:02x}{index:038x}"
                fetch.answers[device_id] = device(device_id)
                assert cache.device(device_id, fetch) is not None
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert cache.sizes()["devices"] == 50


class DictStore:
    """A ``FactsStore`` in a dict: records each call, can fail like storage."""

    def __init__(self) -> None:
        self.devices: dict[str, tuple[DeviceFacts | None, float]] = {}
        self.files: dict[str, tuple[FileFacts | None, float]] = {}
        self.calls: list[str] = []
        self.fault: Exception | None = None

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fault is not None:
            raise self.fault

    def get_device(self, device_id: str) -> tuple[bool, DeviceFacts | None]:
        self._call("get_device")
        if device_id not in self.devices:
            return False, None
        return True, self.devices[device_id][0]

    def put_device(
        self, device_id: str, facts: DeviceFacts | None, ttl_seconds: float
    ) -> None:
        self._call("put_device")
        self.devices[device_id] = (facts, ttl_seconds)

    def get_file(self, sha1: str) -> tuple[bool, FileFacts | None]:
        self._call("get_file")
        if sha1 not in self.files:
            return False, None
        return True, self.files[sha1][0]

    def put_file(self, sha1: str, facts: FileFacts | None, ttl_seconds: float) -> None:
        self._call("put_file")
        self.files[sha1] = (facts, ttl_seconds)


class TestFactsCacheWithStore:
    def test_memory_is_asked_first_then_the_store_then_the_api(
        self, clock: FakeClock
    ) -> None:
        store = DictStore()
        store.devices[DEVICE_ID] = (device(), 60)
        cache = FactsCache(ttl_seconds=60, clock=clock, store=store)
        fetch = FakeLookup()

        first = cache.device(DEVICE_ID.upper(), fetch)
        second = cache.device(DEVICE_ID, fetch)

        assert first == second == device()
        assert store.calls == ["get_device"]
        assert fetch.calls == []

    def test_a_fetched_answer_is_stored_with_its_lifetime(
        self, clock: FakeClock
    ) -> None:
        store = DictStore()
        cache = FactsCache(ttl_seconds=3600, clock=clock, store=store)

        cache.device(DEVICE_ID, FakeLookup({DEVICE_ID: device()}))
        cache.file(SHA1, FakeLookup())

        assert store.devices == {DEVICE_ID: (device(), 3600)}
        assert store.files == {SHA1: (None, MISSING_TTL_SECONDS)}

    def test_an_absence_found_in_the_store_is_not_fetched(
        self, clock: FakeClock
    ) -> None:
        store = DictStore()
        store.files[SHA1] = (None, MISSING_TTL_SECONDS)
        cache = FactsCache(ttl_seconds=3600, clock=clock, store=store)
        fetch = FakeLookup({SHA1: FileFacts(sha1=SHA1, source="api")})

        found = cache.file(SHA1, fetch)

        assert found is None
        assert fetch.calls == []

    def test_a_failing_store_is_passed_by_with_a_warning(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = DictStore()
        store.fault = ServiceRequestError("connection refused")
        cache = FactsCache(ttl_seconds=60, clock=clock, store=store)
        fetch = FakeLookup({DEVICE_ID: device()})

        with caplog.at_level(logging.WARNING, logger="shared.facts_cache"):
            found = cache.device(DEVICE_ID, fetch)
            again = cache.device(DEVICE_ID, fetch)

        assert found == again == device()
        assert fetch.calls == [DEVICE_ID]
        assert [(r.msg, r.operation, r.kind) for r in caplog.records] == [
            ("facts_store.unavailable", "read", "device"),
            ("facts_store.unavailable", "write", "device"),
        ]

    def test_a_fault_other_than_storage_still_raises(self, clock: FakeClock) -> None:
        store = DictStore()
        store.fault = RuntimeError("a bug, not an outage")
        cache = FactsCache(ttl_seconds=60, clock=clock, store=store)

        with pytest.raises(RuntimeError, match="a bug"):
            cache.device(DEVICE_ID, FakeLookup({DEVICE_ID: device()}))

    def test_a_failed_fetch_stores_nothing(self, clock: FakeClock) -> None:
        store = DictStore()
        cache = FactsCache(ttl_seconds=60, clock=clock, store=store)
        fetch = FakeLookup()
        fetch.fault = ApiRequestError("connection reset")

        with pytest.raises(ApiRequestError):
            cache.device(DEVICE_ID, fetch)

        assert store.calls == ["get_device"]

    def test_zero_lifetime_leaves_the_store_alone(self, clock: FakeClock) -> None:
        store = DictStore()
        cache = FactsCache.from_settings(
            Settings(fact_cache_seconds=0), store, clock=clock
        )

        cache.device(DEVICE_ID, FakeLookup({DEVICE_ID: device()}))

        assert store.calls == []
