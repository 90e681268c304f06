"""250 eligible targets at once: within Defender's limits, and none lost.

The simulator runs 4 times faster than the wall clock, so its minute is 15
seconds; the shared budget counts the same windows 4 times shorter. (Faster, and
the first pass over 250 targets would outlast a window; slower, and the test
would take minutes.) Everything
else is real: the budget and ledger tables and the backlog queue on Azurite, the
client over loopback, and the backlog's messages handled as the queue trigger
would hand them over, each when its visibility delay has passed.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from azure.data.tables import TableServiceClient

from shared.backlog import QueueBacklog
from shared.backlog_runner import handle_backlog_message
from shared.budget import TableBudget
from simulator import RunningSimulator, start_simulator
from tests.integration.state.conftest import (
    all_pairs,
    burst_alerts,
    burst_tenant,
    durable_state,
    pipeline_on,
    quarantine_posts,
    scaled_windows,
)

pytestmark = pytest.mark.integration

TIME_SCALE = 4.0
DRAIN_SECONDS = 120.0


def test_a_burst_past_the_limit_waits_in_the_backlog_and_is_all_submitted(
    full_token: str, storage_connection: str, storage_prefix: str
) -> None:
    simulator: RunningSimulator = start_simulator(
        tenant=burst_tenant(), time_scale=TIME_SCALE
    )
    try:
        tables = TableServiceClient.from_connection_string(storage_connection)
        budget = TableBudget(
            tables.create_table_if_not_exists(f"{storage_prefix}budget"),
            windows=scaled_windows(TIME_SCALE),  # type: ignore[arg-type]
        )
        state = durable_state(storage_connection, storage_prefix, budget=budget)
        pipeline = pipeline_on(state, simulator, full_token)
        assert isinstance(state.backlog, QueueBacklog)
        queue = state.backlog._queue  # the trigger's view of the same queue

        first = pipeline.run(burst_alerts(all_pairs()))
        later = _drain(queue, pipeline, state)

        posts = quarantine_posts(simulator)
        statuses = Counter(logged.status for logged in simulator.request_log())
    finally:
        simulator.stop()

    first_counts = Counter((o.verdict, o.submission or o.reason) for o in first)
    created_at_once = first_counts[("submit", "created")]
    # 100 a window; a machine slow enough to outlast a window gets another 100.
    assert created_at_once in (100, 200)
    assert first_counts[("defer", "api_budget_exhausted")] == 250 - created_at_once
    assert all(o.backlog == "queued" for o in first if o.verdict == "defer")
    assert 429 not in statuses
    assert sorted(posts) == sorted(all_pairs())
    assert Counter(o.submission for o in later if o.verdict == "submit") == {
        "created": 250 - created_at_once
    }
    assert state.backlog.depth().messages == 0
    assert state.backlog.depth().poisoned == 0
    recorded = state.ledger.entries()
    assert len(recorded) == 250
    assert all(entry.action_id for entry in recorded)


def _drain(queue, pipeline, state):  # type: ignore[no-untyped-def]
    """Hand over each message as it becomes visible, until the queue is empty."""
    outcomes = []
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        messages = list(queue.receive_messages(max_messages=32, visibility_timeout=30))
        if not messages and state.backlog.depth().messages == 0:
            break
        for message in messages:
            outcome = handle_backlog_message(
                message.content.encode(),
                dequeue_count=message.dequeue_count,
                pipeline=pipeline,
                backlog=state.backlog,
            )
            queue.delete_message(message)  # the host's step once the function returned
            if outcome is not None and outcome.verdict != "defer":
                outcomes.append(outcome)
        if not messages:
            time.sleep(0.2)
    return outcomes
