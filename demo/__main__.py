"""Run the demo: ``python -m demo``.

The simulator runs as a separate process on a free loopback port, with its clock
sped up so that machine actions reach their final status (even the 3-day timeout of
an inactive device) within seconds. The stream goes through the Event Hub handler
exactly as the Functions host would call it, in batches.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import IO

import azure.functions as func
from azure.functions import meta

from demo.stream import StreamEvent, build_stream
from functions.alert_stream import handle_alert_events
from shared import playbook, telemetry
from shared.defender_client import DefenderClient
from shared.machine_actions import MachineAction
from shared.pipeline import Outcome
from shared.settings import load_settings
from simulator import PLAYBOOK_ROLES, demo_tenant, make_token
from simulator import demo as ids

# 3 days of Defender time pass in about 13 seconds, so the inactive device's action
# reaches TimeOut while the demo watches.
TIME_SCALE = 20_000
BATCH_SIZE = 10
FOLLOW_SECONDS = 60.0


def main() -> int:
    """Start the simulator, run the stream, follow the actions, print, stop."""
    # The pipeline's warnings (rejected events, refused submissions) are part of
    # the show; its one-record-per-target INFO lines are summarised in the tables.
    logging.basicConfig(level=logging.WARNING, format="log: %(levelname)s %(message)s")

    simulator, url = _start_simulator()
    try:
        _configure(url)
        outcomes = _run_stream(build_stream(demo_tenant()))
        actions = _follow_actions(outcomes)
        _print_report(outcomes, actions)
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    return 0


def _start_simulator() -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "shared.cli",
        "simulator",
        "--port",
        "0",
        "--time-scale",
        str(TIME_SCALE),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603
    url = _listening_url(process.stdout)
    print(f"simulator: {url} (clock x{TIME_SCALE})")
    return process, url


def _listening_url(stdout: IO[str] | None) -> str:
    line = stdout.readline().strip() if stdout else ""
    prefix = "listening on "
    if not line.startswith(prefix):
        raise SystemExit(f"the simulator did not start: {line!r}")
    return line.removeprefix(prefix)


def _configure(url: str) -> None:
    """App settings for this process, as an operator would set them."""
    os.environ.update(
        {
            "QUARANTINE_MODE": "enforce",
            "DEFENDER_API_URL": url,
            "DEFENDER_TOKEN": make_token(PLAYBOOK_ROLES),
            "MIN_ALERT_SEVERITY": "medium",
            "TRUSTED_PUBLISHERS": ids.TRUSTED_PUBLISHER,
            "EXCLUDED_DEVICE_IDS": ids.DEVICE_WIN10_AV_UNREPORTED,
            "MAX_DEVICES_PER_FILE_PER_HOUR": "5",
        }
    )
    playbook.reset()


def _run_stream(stream: list[StreamEvent]) -> list[Outcome]:
    events = [_event(index, item) for index, item in enumerate(stream)]
    print(f"stream: {len(events)} events, {_record_count(stream)} records")

    outcomes: list[Outcome] = []
    for start in range(0, len(events), BATCH_SIZE):
        outcomes.extend(handle_alert_events(events[start : start + BATCH_SIZE]))
    return outcomes


def _record_count(stream: list[StreamEvent]) -> int:
    count = 0
    for item in stream:
        try:
            count += len(json.loads(item.body)["records"])
        except (ValueError, KeyError, TypeError):
            count += 1
    return count


def _event(index: int, item: StreamEvent) -> func.EventHubEvent:
    context = {"EventHubName": "defender-alerts", "PartitionId": str(index % 4)}
    return func.EventHubEvent(
        body=item.body,
        sequence_number=index,
        enqueued_time=datetime.now(UTC),
        trigger_metadata={"PartitionContext": meta.Datum(json.dumps(context), "json")},
    )


def _follow_actions(outcomes: list[Outcome]) -> dict[str, MachineAction]:
    """Poll each machine action until it is final, as the action tracker will."""
    client = DefenderClient.from_settings(load_settings())
    action_ids = {
        o.action_id for o in outcomes if o.action_id and o.verdict == "submit"
    }
    final: dict[str, MachineAction] = {}
    deadline = time.monotonic() + FOLLOW_SECONDS

    print(f"following {len(action_ids)} machine actions", end="", flush=True)
    while action_ids - set(final) and time.monotonic() < deadline:
        for action_id in sorted(action_ids - set(final)):
            action = client.get_machine_action(action_id)
            if action.status.is_final:
                final[action_id] = action
                telemetry.record_machine_action_outcome(str(action.status))
        print(".", end="", flush=True)
        time.sleep(0.5)
    print()

    for action_id in action_ids - set(final):
        final[action_id] = client.get_machine_action(action_id)
    return final


def _print_report(outcomes: list[Outcome], actions: dict[str, MachineAction]) -> None:
    tenant = demo_tenant()
    names = {
        device.id: device.computer_dns_name.split(".")[0] for device in tenant.devices
    }
    files = {record.sha1: record.file_name or "?" for record in tenant.files}

    print("\nVerdicts")
    counts = Counter((o.verdict, o.submission or o.reason) for o in outcomes)
    _table(
        ["verdict", "reason / submission", "count"],
        [[verdict, reason, str(n)] for (verdict, reason), n in sorted(counts.items())],
    )

    print("\nTargets")
    rows = []
    for o in outcomes:
        if o.verdict == "rejected":
            continue
        action = actions.get(o.action_id or "")
        rows.append(
            [
                names.get(o.device_id or "", o.device_id or ""),
                files.get(o.sha1 or "", o.sha1 or ""),
                o.verdict,
                o.reason if o.verdict != "submit" else (o.submission or ""),
                action.raw_status if action else (o.error or "")[:40],
            ]
        )
    _table(["device", "file", "verdict", "reason", "machine action"], sorted(rows))

    print("\nRejected input")
    _table(
        ["source", "reason", "position"],
        [[o.source, o.reason, o.position] for o in outcomes if o.verdict == "rejected"],
    )

    statuses = Counter(action.raw_status for action in actions.values())
    summary = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    print(f"\n{len(outcomes)} outcomes; machine actions: {summary or 'none'}")


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [
        max([len(header[i]), *(len(row[i]) for row in rows)])
        for i in range(len(header))
    ]
    line = "  ".join(f"{{:<{width}}}" for width in widths)
    print(line.format(*header))
    print(line.format(*("-" * width for width in widths)))
    for row in rows:
        print(line.format(*row))


if __name__ == "__main__":
    sys.exit(main())
