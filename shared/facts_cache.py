"""An in-process cache of device and file facts, with expiry.

One alert storm names the same device and the same file many times, and the
lookups behind them are rate-limited: 100 calls a minute for a machine or a
file, 30 for the antivirus health report (Microsoft's pages for Get machine by
ID, Get file information and the device antivirus health report API). Facts
fetched once are reused for FACT_CACHE_SECONDS.

Two caches, each keyed case-insensitively and bounded (least recently used
entries go first): device facts by device id, file facts by SHA-1. A device's
antivirus mode travels inside its ``DeviceFacts``, so it is cached with them.

A lookup either answers from memory or calls the ``fetch`` it is given and
remembers the answer. ``fetch`` returns None only when Defender has no record
(404); a fault must raise, so that it is never remembered as an absence, and
nothing is cached for it. "Not found" is remembered for a shorter time
(``MISSING_TTL_SECONDS``, or the TTL when that is shorter): a burst of alerts
for a hash Defender has not catalogued spends one call, not one per alert, yet
a device or file that appears in Defender's inventory a little later is looked
up again soon.

The cache is thread-safe. The fetch runs outside the lock, so two threads that
miss the same key at once may both fetch it; the later answer is kept. The
clock is injected so tests can move time.

Limitation: the cache lives in one worker process. Instances of the function
app do not share it, and a restart empties it; a durable cache shared through
storage is a later step.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_ENTRIES", "MISSING_TTL_SECONDS", "FactsCache"]

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared.settings import Settings
from shared.targets import DeviceFacts, FileFacts

DEFAULT_MAX_ENTRIES = 10_000
MISSING_TTL_SECONDS = 300.0

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


class FactsCache:
    """Device and file facts, remembered for a while. A TTL of zero turns it off."""

    def __init__(
        self,
        *,
        ttl_seconds: float,
        missing_ttl_seconds: float = MISSING_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
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

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Callable[[], float] = time.monotonic
    ) -> FactsCache:
        """A cache whose lifetime is FACT_CACHE_SECONDS."""
        return cls(ttl_seconds=settings.fact_cache_seconds, clock=clock)

    def device(
        self, device_id: str, fetch: Callable[[str], DeviceFacts | None]
    ) -> DeviceFacts | None:
        """The device's facts from memory, else from ``fetch(device_id)``.

        Returns None when Defender has no record of the device.
        """
        return self._lookup(self._devices, device_id, fetch)

    def file(
        self, sha1: str, fetch: Callable[[str], FileFacts | None]
    ) -> FileFacts | None:
        """The file's facts from memory, else from ``fetch(sha1)``.

        Returns None when Defender has no record of the file.
        """
        return self._lookup(self._files, sha1, fetch)

    def _lookup(
        self,
        cache: _ExpiringLru[T],
        identifier: str,
        fetch: Callable[[str], T | None],
    ) -> T | None:
        key = _key(identifier)
        remembered = cache.get(key)
        if remembered is not None:
            return remembered.value

        value = fetch(identifier)

        ttl = self._ttl if value is not None else self._missing_ttl
        cache.put(key, value, ttl)
        return value

    def clear(self) -> None:
        """Forget everything, for example after the operator changes a device."""
        self._devices.clear()
        self._files.clear()

    def sizes(self) -> dict[str, int]:
        """How many entries each cache holds, expired ones included until read."""
        return {"devices": len(self._devices), "files": len(self._files)}
