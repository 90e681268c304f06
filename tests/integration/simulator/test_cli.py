"""The ``simulator`` command: options, serving, and a clean stop on a signal."""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from shared.cli import main
from simulator import PLAYBOOK_ROLES, demo_tenant, make_token
from simulator.cli import DEFAULT_PORT, register
from simulator.demo import DEVICE_WIN10

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="defender-quarantine")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_register_adds_simulator_with_documented_defaults() -> None:
    args = _parser().parse_args(["simulator"])

    assert args.host == "127.0.0.1"
    assert args.port == DEFAULT_PORT == 8650
    assert args.tenant is None
    assert args.time_scale == 1.0
    assert args.accept_any_token is False
    assert (args.latency_ms, args.error_rate, args.drop_rate) == (0, 0.0, 0.0)
    assert callable(args.run)


def test_register_reads_every_option() -> None:
    args = _parser().parse_args(
        [
            "simulator",
            "--host=0.0.0.0",
            "--port=0",
            "--tenant=seed.json",
            "--time-scale=60",
            "--accept-any-token",
            "--latency-ms=20",
            "--error-rate=0.1",
            "--drop-rate=0.2",
            "--drop-mode=after",
            "--fault-seed=7",
        ]
    )

    assert (args.host, args.port, args.tenant) == ("0.0.0.0", 0, "seed.json")
    assert (args.time_scale, args.accept_any_token) == (60.0, True)
    assert (args.latency_ms, args.error_rate, args.drop_rate) == (20, 0.1, 0.2)
    assert (args.drop_mode, args.fault_seed) == ("after", 7)


@pytest.mark.parametrize(
    "option",
    ["--port=70000", "--port=-1", "--time-scale=0", "--error-rate=2", "--latency-ms=x"],
)
def test_register_refuses_out_of_range_options(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["simulator", option])

    assert exit_info.value.code == 2


def test_help_describes_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["simulator", "--help"])

    assert exit_info.value.code == 0
    assert "--accept-any-token" in capsys.readouterr().out


def test_run_with_unreadable_tenant_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = tmp_path / "tenant.json"
    seed.write_text('{"name": "x"}', encoding="utf-8")
    args = _parser().parse_args(["simulator", "--port=0", f"--tenant={seed}"])

    code = args.run(args)

    assert code == 2
    assert "tenantId" in capsys.readouterr().err


def test_run_on_a_port_in_use_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = _parser().parse_args(["simulator", f"--port={port}"])

        code = args.run(args)

    assert code == 1
    assert "cannot listen" in capsys.readouterr().err


def _start(*options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port=0", *options],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        # A guard against a hang, not a measurement: startup takes well under this.
        if not selector.select(timeout=30):
            process.kill()
            pytest.fail("the simulator printed nothing")
    return process.stdout.readline()


@pytest.fixture(name="served")
def _served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    seed = demo_tenant().to_json() | {"name": "From a file"}
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(seed), encoding="utf-8")

    process = _start(f"--tenant={path}")
    line = _first_line(process)
    try:
        yield process, line
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_module_serves_the_tenant_file_and_stops_cleanly_on_signal(
    served: tuple[subprocess.Popen[str], str], signal_number: int
) -> None:
    process, line = served
    base_url = line.removeprefix("listening on ").strip()
    token = make_token(PLAYBOOK_ROLES)

    machine = requests.get(
        f"{base_url}/api/machines/{DEVICE_WIN10}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    tenant = requests.get(f"{base_url}/_control/tenant", timeout=10)
    process.send_signal(signal_number)
    code = process.wait(timeout=30)

    assert line.startswith("listening on http://127.0.0.1:")
    assert line.endswith("\n")
    assert machine.status_code == 200
    assert tenant.json()["name"] == "From a file"
    assert code == 0


def test_product_command_line_offers_the_simulator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulator", "--help"])

    assert exit_info.value.code == 0
    assert "defender-quarantine simulator" in capsys.readouterr().out
