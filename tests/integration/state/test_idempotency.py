"""Exactly once across replays, processes and crashes, on Azurite and the simulator.

Event Hubs delivers at least once and Functions runs many instances; these tests
replay the same alerts again, from two processes at once, and after a process
died between submitting and recording, and count what reached Defender.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from shared.ledger import CLAIM_SECONDS, Claim, LedgerEntry
from shared.pipeline import Message
from shared.playbook import State
from simulator import RunningSimulator
from tests.integration.state.conftest import (
    DEVICES,
    FILES,
    burst_alerts,
    durable_state,
    later,
    pipeline_on,
    quarantine_posts,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def _environment(
    simulator: RunningSimulator, token: str, connection: str, prefix: str
) -> dict[str, str]:
    return {
        **os.environ,
        "QUARANTINE_MODE": "enforce",
        "MIN_ALERT_SEVERITY": "low",
        "DEFENDER_API_URL": simulator.base_url,
        "DEFENDER_TOKEN": token,
        "AzureWebJobsStorage": connection,
        "STATE_TABLE_PREFIX": prefix,
        "BACKLOG_QUEUE_NAME": f"{prefix}-backlog",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "",
    }


def _replay_command(path: Path) -> list[str]:
    return [sys.executable, "-m", "shared.cli", "replay", "--enforce", str(path)]


def _write_burst(path: Path, pairs: list[tuple[str, str]]) -> Path:
    documents = [json.loads(m.body) for m in burst_alerts(pairs)]
    path.write_text(json.dumps({"value": documents}))
    return path


def test_replaying_the_same_alert_twice_submits_once(
    tmp_path: Path,
    burst_simulator: RunningSimulator,
    full_token: str,
    storage_connection: str,
    storage_prefix: str,
) -> None:
    alert = _write_burst(tmp_path / "alert.json", [(DEVICES[0], FILES[0])])
    environment = _environment(
        burst_simulator, full_token, storage_connection, storage_prefix
    )

    runs = [
        subprocess.run(
            _replay_command(alert),
            env=environment,
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        for _ in range(2)
    ]

    first, second = ([json.loads(line) for line in r.stdout.splitlines()] for r in runs)
    assert [(o["verdict"], o["submission"]) for o in first] == [("submit", "created")]
    assert [(o["verdict"], o["reason"]) for o in second] == [("skip", "duplicate")]
    assert second[0]["action_id"] == first[0]["action_id"]
    assert quarantine_posts(burst_simulator) == [(DEVICES[0], FILES[0])]


def test_two_processes_replaying_one_burst_submit_each_target_once(
    tmp_path: Path,
    burst_simulator: RunningSimulator,
    full_token: str,
    storage_connection: str,
    storage_prefix: str,
) -> None:
    pairs = [(device, sha1) for device in DEVICES for sha1 in FILES[:8]]
    burst = _write_burst(tmp_path / "burst.json", pairs)
    environment = _environment(
        burst_simulator, full_token, storage_connection, storage_prefix
    )

    processes = [
        subprocess.Popen(
            _replay_command(burst),
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], outputs
    outcomes = [
        json.loads(line) for stdout, _ in outputs for line in stdout.splitlines()
    ]
    posts = quarantine_posts(burst_simulator)
    assert len(posts) == len(pairs)
    assert set(posts) == set(pairs)
    verdicts = Counter((o["verdict"], o["submission"] or o["reason"]) for o in outcomes)
    assert verdicts[("submit", "created")] == len(pairs)
    # The other process's view of each target: done already, or in flight (then
    # kept on the backlog, where it will find the action recorded).
    assert set(verdicts) <= {
        ("submit", "created"),
        ("skip", "duplicate"),
        ("defer", "claimed_elsewhere"),
    }
    assert sum(verdicts.values()) == 2 * len(pairs)


class _ProcessDied(BaseException):
    """Stands for the process ending: nothing after it runs, nothing catches it."""


class _DiesBeforeRecording:
    """A ledger whose process dies right after Defender answered the submission."""

    def __init__(self, state: State) -> None:
        self._ledger = state.ledger

    def __getattr__(self, name: str) -> object:
        return getattr(self._ledger, name)

    def record_submission(self, claim: Claim, **_: object) -> LedgerEntry:
        raise _ProcessDied


def test_a_crash_between_submitting_and_recording_leads_to_no_second_submission(
    burst_simulator: RunningSimulator,
    full_token: str,
    storage_connection: str,
    storage_prefix: str,
) -> None:
    state = durable_state(storage_connection, storage_prefix)
    alert: list[Message] = burst_alerts([(DEVICES[1], FILES[1])])
    dying = State(
        ledger=_DiesBeforeRecording(state),  # type: ignore[arg-type]
        backlog=state.backlog,
        budget=state.budget,
        facts_store=state.facts_store,
        where=state.where,
    )
    with pytest.raises(_ProcessDied):
        pipeline_on(dying, burst_simulator, full_token).run(alert)

    # Redelivered at once, to another instance: the claim still stands.
    [soon] = pipeline_on(
        durable_state(storage_connection, storage_prefix), burst_simulator, full_token
    ).run(alert)
    # Redelivered after the claim expired: Defender is asked, not told again.
    [after] = pipeline_on(
        durable_state(storage_connection, storage_prefix),
        burst_simulator,
        full_token,
        now=later(CLAIM_SECONDS + 5),
    ).run(alert)

    created = [
        logged.action_id
        for logged in burst_simulator.request_log()
        if logged.path.endswith("/StopAndQuarantineFile")
    ]
    assert len(created) == 1
    assert (soon.verdict, soon.reason, soon.backlog) == (
        "defer",
        "claimed_elsewhere",
        "queued",
    )
    assert (after.verdict, after.submission) == ("submit", "recovered_after_unknown")
    entry = state.ledger.find(DEVICES[1], FILES[1])
    assert entry is not None
    assert entry.action_id == after.action_id == created[0]
    assert entry.submissions == 1
