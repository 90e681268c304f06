"""``defender-quarantine replay`` against the simulator: one JSON outcome per line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import playbook
from shared.cli import main
from simulator import RunningSimulator
from simulator.demo import ALERT_UNSIGNED, DEVICE_WIN10, FILE_UNSIGNED
from tests.integration.functions.conftest import streaming_message

pytestmark = pytest.mark.integration


@pytest.fixture(name="environment")
def _environment(
    monkeypatch: pytest.MonkeyPatch, simulator: RunningSimulator, full_token: str
) -> None:
    monkeypatch.setenv("DEFENDER_API_URL", simulator.base_url)
    monkeypatch.setenv("DEFENDER_TOKEN", full_token)
    monkeypatch.setenv("MIN_ALERT_SEVERITY", "medium")
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    playbook.reset()


def _posts(simulator: RunningSimulator) -> int:
    return sum(1 for logged in simulator.request_log() if logged.method == "POST")


@pytest.mark.usefixtures("environment")
def test_replay_prints_one_outcome_per_line_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], simulator: RunningSimulator
) -> None:
    message = tmp_path / "message.json"
    message.write_bytes(streaming_message((DEVICE_WIN10, FILE_UNSIGNED)))

    code = main(["replay", str(message), "--alert-id", ALERT_UNSIGNED])

    out, err = capsys.readouterr()
    outcomes = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert len(outcomes) >= 2
    assert {o["reason"] for o in outcomes} == {"dry_run"}, "QUARANTINE_MODE defaults"
    assert outcomes[0]["source"] == str(message)
    notice, summary = err.splitlines()
    assert notice == (
        "defender-quarantine replay: state kept in memory (this run only: "
        "AzureWebJobsStorage is not set)"
    )
    assert summary.startswith(f"{len(outcomes)} outcomes: ")
    assert _posts(simulator) == 0


@pytest.mark.usefixtures("environment")
def test_replay_enforce_submits_and_reports_the_machine_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], simulator: RunningSimulator
) -> None:
    message = tmp_path / "message.json"
    message.write_bytes(streaming_message((DEVICE_WIN10, FILE_UNSIGNED)))

    code = main(["replay", str(message), "--enforce"])

    outcome = json.loads(capsys.readouterr().out)
    assert code == 0
    assert outcome["verdict"] == "submit"
    assert outcome["action_id"]
    assert _posts(simulator) == 1


def test_replay_without_input_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["replay"]) == 2
    assert "give a PATH or --alert-id" in capsys.readouterr().err


def test_replay_refuses_a_fixed_token_for_a_remote_api(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEFENDER_API_URL", "https://api.security.microsoft.com")
    monkeypatch.setenv("DEFENDER_TOKEN", "not-for-production")
    message = tmp_path / "message.json"
    message.write_bytes(b"{}")

    code = main(["replay", str(message)])

    err = capsys.readouterr().err
    assert code == 2
    assert "loopback" in err
    assert "not-for-production" not in err
