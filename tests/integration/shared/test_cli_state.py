"""``actions`` and ``backlog`` on the command line, with and without storage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import playbook
from shared.cli import main
from simulator import RunningSimulator, start_simulator
from simulator.demo import DEVICE_WIN10, FILE_UNSIGNED
from tests.integration.functions.conftest import streaming_message

pytestmark = pytest.mark.integration


@pytest.fixture(name="durable")
def _durable(
    monkeypatch: pytest.MonkeyPatch,
    simulator: RunningSimulator,
    full_token: str,
    storage_connection: str,
    storage_prefix: str,
) -> None:
    monkeypatch.setenv("DEFENDER_API_URL", simulator.base_url)
    monkeypatch.setenv("DEFENDER_TOKEN", full_token)
    monkeypatch.setenv("AzureWebJobsStorage", storage_connection)
    monkeypatch.setenv("STATE_TABLE_PREFIX", storage_prefix)
    monkeypatch.setenv("BACKLOG_QUEUE_NAME", f"{storage_prefix}-backlog")
    playbook.reset()


@pytest.fixture(name="simulator")
def _wall_clock_simulator() -> Iterator[RunningSimulator]:
    """Submissions need Defender's clock to agree with ours (see the functions'
    conftest)."""
    running = start_simulator()
    yield running
    running.stop()


@pytest.mark.usefixtures("durable")
def test_actions_lists_what_replay_submitted_and_backlog_measures_the_queue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tmp_path / "alert.json"
    message.write_bytes(streaming_message((DEVICE_WIN10, FILE_UNSIGNED)))
    assert main(["replay", "--enforce", str(message)]) == 0
    capsys.readouterr()

    assert main(["actions", "--open"]) == 0
    listed = capsys.readouterr()
    assert main(["backlog"]) == 0
    depth = json.loads(capsys.readouterr().out)

    [entry] = [json.loads(line) for line in listed.out.splitlines()]
    assert (entry["device_id"], entry["sha1"]) == (DEVICE_WIN10, FILE_UNSIGNED)
    assert entry["action_status"] == "Pending"
    assert entry["submissions"] == 1
    assert entry["last_verdict"] == "submit"
    assert listed.err == "1 targets\n"
    assert depth["messages"] == 0
    assert depth["poisoned"] == 0


def test_without_storage_the_command_line_says_its_state_is_in_memory(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)

    assert main(["actions"]) == 0
    captured = capsys.readouterr()

    assert captured.out == ""
    assert "state kept in memory (this run only" in captured.err
    assert captured.err.endswith("0 targets\n")
