"""Extraction cost against the floor of decoding the same bodies with ``json.loads``.

The stream is the demo's (about 300 records in 30 events). Both sides are timed in
alternating rounds and the best round of each is kept, so a noisy neighbour costs
both alike. The ratio says what target extraction adds on top of JSON decoding,
which every reader of these messages pays anyway.
"""

from __future__ import annotations

import contextlib
import json
import time
import tracemalloc
from collections.abc import Callable

from demo.stream import build_stream
from shared.alert_formats import extract
from simulator import demo_tenant

ROUNDS = 15
REPEAT = 20


def run() -> None:
    """Print the time and peak-memory ratios of extract() to json.loads()."""
    bodies = [event.body for event in build_stream(demo_tenant())]

    def decode_only() -> None:
        for body in bodies:
            with contextlib.suppress(ValueError):
                json.loads(body)

    def extract_all() -> None:
        for body in bodies:
            extract(body, source="bench")

    decode_time, extract_time = _best_of(decode_only, extract_all)
    decode_peak = _peak_bytes(decode_only)
    extract_peak = _peak_bytes(extract_all)
    size = sum(len(body) for body in bodies)

    print(f"extraction: {len(bodies)} events, {size} bytes per pass")
    print(
        f"  json.loads only   {decode_time * 1e3:8.2f} ms per pass (best of {ROUNDS})"
    )
    print(f"  extract()         {extract_time * 1e3:8.2f} ms per pass")
    print(f"  time ratio        {extract_time / decode_time:8.2f}x")
    print(f"  peak memory ratio {extract_peak / max(decode_peak, 1):8.2f}x")


def _best_of(
    baseline: Callable[[], None], measured: Callable[[], None]
) -> tuple[float, float]:
    best_baseline = best_measured = float("inf")
    for _ in range(ROUNDS):
        best_baseline = min(best_baseline, _time(baseline))
        best_measured = min(best_measured, _time(measured))
    return best_baseline, best_measured


def _time(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    for _ in range(REPEAT):
        work()
    return (time.perf_counter() - started) / REPEAT


def _peak_bytes(work: Callable[[], None]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
