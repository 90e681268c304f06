"""Run the demo: ``python -m demo``.

The simulator runs as a separate process on a free loopback port, with its clock
sped up so that machine actions reach their final status (even the 3-day timeout of
an inactive device) within seconds. Azurite, the storage emulator, holds the
ledger, the API budget and the backlog queue, as the function app's storage
account does in Azure. Every function runs as the host would call it:

- the stream goes through the Event Hub function, in batches; the simulator
  throttles a few calls on purpose, so some targets wait in the backlog;
- the backlog function takes each waiting target once its delay has passed;
- the action tracker (timer) follows every machine action to its final status.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from typing import IO

import azure.functions as func
from azure.functions import meta
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from demo.stream import StreamEvent, build_stream
from functions.action_tracker import handle_tracker_tick
from functions.alert_stream import handle_alert_events
from functions.backlog import handle_backlog
from local_storage import RunningAzurite, start_azurite
from shared import playbook
from shared.ledger import LedgerEntry
from shared.pipeline import Outcome
from shared.storage import StorageAccount
from simulator import PLAYBOOK_ROLES, demo_tenant, make_token
from simulator import demo as ids

# 3 days of Defender time pass in about 13 seconds, so the inactive device's action
# reaches TimeOut while the demo watches.
TIME_SCALE = 20_000
BATCH_SIZE = 10
FOLLOW_SECONDS = 60.0
BACKLOG_SECONDS = 30.0
# Before the last batch, the simulator answers the next call with 429 and
# "Retry-After: 1": every instance then holds that API for the second asked, and
# the targets that needed it wait in the backlog.
THROTTLED_BATCH = 2


def main() -> int:
    """Start the simulator and Azurite, run the functions, print, stop."""
    # The pipeline's warnings (rejected events, refused submissions) are part of
    # the show; its one-record-per-target INFO lines are summarised in the tables.
    logging.basicConfig(level=logging.WARNING, format="log: %(levelname)s %(message)s")

    azurite = _start_azurite()
    simulator, url = _start_simulator()
    try:
        _configure(url, azurite)
        outcomes = _run_stream(build_stream(demo_tenant()), url)
        later = _drain_backlog()
        entries = _follow_actions()
        _print_report(outcomes, later, entries)
    finally:
        playbook.reset()
        simulator.terminate()
        simulator.wait(timeout=10)
        azurite.stop()
    return 0


def _start_azurite() -> RunningAzurite:
    azurite = start_azurite()
    endpoints = azurite.endpoints
    print(f"azurite: tables {endpoints['Table']}, queues {endpoints['Queue']}")
    return azurite


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


def _configure(url: str, azurite: RunningAzurite) -> None:
    """App settings for this process, as an operator would set them."""
    os.environ.update(
        {
            "AzureWebJobsStorage": azurite.connection_string,
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


def _throttle_next_call(url: str) -> None:
    """Ask the simulator to answer the next call with 429, as a busy tenant would."""
    print("simulator: the next call will be answered 429, Retry-After 1 s")
    request = urllib.request.Request(  # noqa: S310 - the simulator, on loopback
        f"{url}/_control/faults",
        data=json.dumps({"throttle_next": 1, "throttle_retry_after": 1}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


def _run_stream(stream: list[StreamEvent], url: str) -> list[Outcome]:
    events = [_event(index, item) for index, item in enumerate(stream)]
    print(f"stream: {len(events)} events, {_record_count(stream)} records")

    outcomes: list[Outcome] = []
    for batch, start in enumerate(range(0, len(events), BATCH_SIZE)):
        if batch == THROTTLED_BATCH:
            _throttle_next_call(url)
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


def _drain_backlog() -> list[Outcome]:
    """Hand each backlog message to the backlog function once it is visible."""
    settings = playbook.get_settings()
    account = StorageAccount.from_settings(settings)
    assert account is not None, "the demo configures Azurite"
    queue = account.queue(settings.backlog_queue_name)
    backlog = playbook.get_backlog()

    waiting = backlog.depth().messages
    print(f"backlog: {waiting} targets waiting", end="", flush=True)
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + BACKLOG_SECONDS
    while backlog.depth().messages and time.monotonic() < deadline:
        for received in queue.receive_messages(max_messages=16, visibility_timeout=60):
            message = QueueMessage(  # type: ignore[no-untyped-call]
                id=received.id,
                body=received.content.encode(),
                dequeue_count=received.dequeue_count,
                pop_receipt=received.pop_receipt,
            )
            outcome = handle_backlog(message)
            queue.delete_message(received)  # what the host does once it returned
            if outcome is not None:
                outcomes.append(outcome)
        print(".", end="", flush=True)
        time.sleep(0.5)
    print()
    return outcomes


def _follow_actions() -> list[LedgerEntry]:
    """Run the action tracker, as its timer would, until no action is open."""
    ledger = playbook.get_pipeline().ledger
    deadline = time.monotonic() + FOLLOW_SECONDS

    print("action tracker", end="", flush=True)
    runs = 0
    while time.monotonic() < deadline:
        report = handle_tracker_tick(TimerRequest())
        runs += 1
        print(".", end="", flush=True)
        if report.open and not report.still_open:
            break
        time.sleep(0.5)
    print(f" {runs} runs")
    return ledger.entries()


def _print_report(
    outcomes: list[Outcome], later: list[Outcome], entries: list[LedgerEntry]
) -> None:
    tenant = demo_tenant()
    names = {
        device.id: device.computer_dns_name.split(".")[0] for device in tenant.devices
    }
    files = {record.sha1: record.file_name or "?" for record in tenant.files}
    statuses = {(e.device_id, e.sha1): e.action_status or "" for e in entries}

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
        key = (o.device_id or "", o.sha1 or "")
        rows.append(
            [
                names.get(key[0], key[0]),
                files.get(key[1], key[1]),
                o.verdict,
                o.reason if o.verdict != "submit" else (o.submission or ""),
                statuses.get(key, "") if o.verdict != "skip" else "",
            ]
        )
    _table(["device", "file", "verdict", "reason", "machine action"], sorted(rows))

    print("\nBacklog: deferred targets, judged again when their wait was over")
    _table(
        ["device", "file", "verdict", "submission / reason"],
        sorted(
            [
                names.get(o.device_id or "", o.device_id or ""),
                files.get(o.sha1 or "", o.sha1 or ""),
                o.verdict,
                o.submission or o.reason,
            ]
            for o in later
            if o.verdict != "defer"
        ),
    )

    print("\nRejected input")
    _table(
        ["source", "reason", "position"],
        [[o.source, o.reason, o.position] for o in outcomes if o.verdict == "rejected"],
    )

    final = Counter(e.action_status for e in entries if e.action_id)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(final.items()))
    deferred_again = sum(1 for o in later if o.verdict == "defer")
    print(
        f"\n{len(outcomes)} outcomes from the stream; {len(later)} from the backlog "
        f"({deferred_again} deferred again while the API was held); "
        f"machine actions in the ledger: {summary or 'none'}"
    )


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
