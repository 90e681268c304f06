"""A cache of device and file facts, with expiry, in memory and in shared storage.

One alert storm names the same device and the same file many times, and the
lookups behind them are rate-limited: 100 calls a minute for a machine or a
file, 30 for the antivirus health report (Microsoft's pages for Get machine by
ID, Get file information and the device antivirus health report API). Facts
fetched once are reused for FACT_CACHE_SECONDS.

Two caches, each keyed case-insensitively and bounded (least recently used
entries go first): device facts by device id, file facts by SHA-1. A device's
antivirus mode travels inside its ``DeviceFacts``, so it is cached with them.

A lookup answers from memory when it can, else calls the ``fetch`` it is given
and remembers the answer. ``fetch`` returns None only when Defender has no record
(404); a fault must raise, so that it is never remembered as an absence, and
nothing is cached for it. "Not found" is remembered for a shorter time
(``MISSING_TTL_SECONDS``, or the TTL when that is shorter): a burst of alerts
for a hash Defender has not catalogued spends one call, not one per alert, yet
a device or file that appears in Defender's inventory a little later is looked
up again soon.

Behind the memory there may be a second level, a ``FactsStore`` shared by every
instance of the function app (``shared.facts_store.TableFactsStore``, in Table
storage). A lookup then asks memory, then the store, then ``fetch``; a fetched
answer is written to both, so an instance that has never seen a device finds
what another instance learnt. The store is a cache too: when it fails (an
``AzureError``: storage unreachable, a missing table), the lookup logs
``facts_store.unavailable`` and goes on to ``fetch``, or simply does not store
the answer. An outage of the cache must never stop a quarantine.

The cache is thread-safe. The fetch runs outside the lock, so two threads that
miss the same key at once may both fetch it; the later answer is kept. The
clock is injected so tests can move time.

Limitation: the store keeps each answer's own expiry, but an answer read from
the store is then remembered in memory for a whole lifetime again, so facts can
be up to twice FACT_CACHE_SECONDS old (and "not found" twice
``MISSING_TTL_SECONDS``) before they are fetched anew.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_ENTRIES", "MISSING_TTL_SECONDS", "FactsCache"]

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from azure.core.exceptions import AzureError

from shared.facts_store import FactsStore
from shared.settings import Settings
from shared.targets import DeviceFacts, FileFacts

DEFAULT_MAX_ENTRIES = 10_000
MISSING_TTL_SECONDS = 300.0

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    """A remembered answer (None: Defender had no record) and when it expires."""

    value: T | None
    expires_at: float


class _ExpiringLru(Generic[T]):
    """A bounded map whose entries expire; the least recently used go first."""

    def __init__(self, *, max_entries: int, clock: Callable[[], float]) -> None:
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: str) -> _Entry[T] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None

            if self._clock() >= entry.expires_at:
                del self._entries[key]
                return None

            self._entries.move_to_end(key)
            return entry

    def put(self, key: str, value: T | None, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            return
        entry = _Entry(value, self._clock() + ttl_seconds)

        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _key(identifier: str) -> str:
    return identifier.strip().lower()


@dataclass(frozen=True, slots=True)
class _SharedLevel(Generic[T]):
    """One kind of facts in the shared store, whose outages never fail a lookup."""

    kind: str
    get: Callable[[str], tuple[bool, T | None]]
    put: Callable[[str, T | None, float], None]

    def read(self, key: str) -> tuple[bool, T | None]:
        try:
            return self.get(key)
        except AzureError as exc:
            _log_unavailable(self.kind, "read", exc)
            return False, None

    def write(self, key: str, value: T | None, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            return
        try:
            self.put(key, value, ttl_seconds)
        except AzureError as exc:
            _log_unavailable(self.kind, "write", exc)


def _log_unavailable(kind: str, operation: str, exc: AzureError) -> None:
    # The error's type only: its message may carry the request's address.
    logger.warning(
        "facts_store.unavailable",
        extra={"kind": kind, "operation": operation, "error": type(exc).__name__},
    )


class FactsCache:
    """Device and file facts, remembered for a while. A TTL of zero turns it off.

    ``store``, when given, is the second level shared with other instances.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float,
        missing_ttl_seconds: float = MISSING_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        store: FactsStore | None = None,
    ) -> None:
        if ttl_seconds < 0 or missing_ttl_seconds < 0:
            raise ValueError("a cache lifetime cannot be negative")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")

        self._ttl = float(ttl_seconds)
        self._missing_ttl = min(float(missing_ttl_seconds), self._ttl)
        self._devices: _ExpiringLru[DeviceFacts] = _ExpiringLru(
            max_entries=max_entries, clock=clock
        )
        self._files: _ExpiringLru[FileFacts] = _ExpiringLru(
            max_entries=max_entries, clock=clock
        )

        self._shared_devices: _SharedLevel[DeviceFacts] | None = None
        self._shared_files: _SharedLevel[FileFacts] | None = None
        if store is not None and self._ttl > 0:
            self._shared_devices = _SharedLevel(
                "device", store.get_device, store.put_device
            )
            self._shared_files = _SharedLevel("file", store.get_file, store.put_file)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: FactsStore | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> FactsCache:
        """A cache whose lifetime is FACT_CACHE_SECONDS, over ``store`` if given."""
        return cls(ttl_seconds=settings.fact_cache_seconds, clock=clock, store=store)

    def device(
        self, device_id: str, fetch: Callable[[str], DeviceFacts | None]
    ) -> DeviceFacts | None:
        """The device's facts from memory, else the store, else ``fetch(device_id)``.

        Returns None when Defender has no record of the device.
        """
        return self._lookup(self._devices, self._shared_devices, device_id, fetch)

    def file(
        self, sha1: str, fetch: Callable[[str], FileFacts | None]
    ) -> FileFacts | None:
        """The file's facts from memory, else the store, else ``fetch(sha1)``.

        Returns None when Defender has no record of the file.
        """
        return self._lookup(self._files, self._shared_files, sha1, fetch)

    def _lookup(
        self,
        cache: _ExpiringLru[T],
        shared: _SharedLevel[T] | None,
        identifier: str,
        fetch: Callable[[str], T | None],
    ) -> T | None:
        key = _key(identifier)
        remembered = cache.get(key)
        if remembered is not None:
            return remembered.value

        if shared is not None:
            found, stored = shared.read(key)
            if found:
                cache.put(key, stored, self._lifetime(stored))
                return stored

        value = fetch(identifier)

        ttl = self._lifetime(value)
        cache.put(key, value, ttl)
        if shared is not None:
            shared.write(key, value, ttl)
        return value

    def _lifetime(self, value: object) -> float:
        return self._ttl if value is not None else self._missing_ttl

    def clear(self) -> None:
        """Forget everything, for example after the operator changes a device."""
        self._devices.clear()
        self._files.clear()

    def sizes(self) -> dict[str, int]:
        """How many entries each cache holds, expired ones included until read."""
        return {"devices": len(self._devices), "files": len(self._files)}
