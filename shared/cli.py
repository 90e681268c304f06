"""The ``defender-quarantine`` command line.

Each subcommand is a thin shell over the same code the functions run: it reads its
inputs, calls into ``shared``, and prints JSON on standard output. Exit codes: 0 when
the inputs could be read (even if some records were rejected), 2 on a usage error,
1 when the work itself failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from shared import PRODUCT, __version__, telemetry
from shared.alert_formats import extract
from shared.errors import ApiError, SettingsError
from shared.ledger import LedgerEntry
from shared.pipeline import Message, Outcome
from shared.playbook import State, build_pipeline, build_state
from shared.settings import Settings, load_settings
from simulator.cli import register as register_simulator

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one subcommand; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)

    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    _start_telemetry()
    try:
        code: int = args.run(args)
    finally:
        # The exporters batch in the background; what is not flushed now is lost.
        telemetry.flush_telemetry()
    return code


def _start_telemetry() -> None:
    try:
        settings = load_settings()
    except SettingsError:
        # The commands that need settings report the problem themselves, with
        # their own exit code; ``extract`` needs none.
        return
    telemetry.configure_for_command_line(settings)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PRODUCT,
        description="Stop and quarantine files that Defender for Endpoint alerts on.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    extract_parser = commands.add_parser(
        "extract",
        help="print the targets that alert messages name (no network calls)",
        description=(
            "Read each file as one message body (an Event Hubs message, a Graph or "
            "Defender alert, a Sentinel SecurityAlert row) and print one JSON "
            "document with the targets found and the records rejected."
        ),
    )
    extract_parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="a message body; '-' reads stdin"
    )
    extract_parser.set_defaults(run=_run_extract)

    replay_parser = commands.add_parser(
        "replay",
        help="run alerts through the pipeline and print one JSON outcome per line",
        description=(
            "Judge (and, with --enforce, submit) every target of the given message "
            "bodies or Defender alert ids. Uses the app settings from the "
            "environment; DEFENDER_API_URL and DEFENDER_TOKEN point it at any server "
            "that speaks the Defender API. A summary goes to standard error."
        ),
    )
    replay_parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="a message body; '-' reads stdin"
    )
    replay_parser.add_argument(
        "--alert-id",
        action="append",
        default=[],
        metavar="ID",
        help="fetch this alert with its evidence from Defender (repeatable)",
    )
    mode = replay_parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        dest="dry_run",
        action="store_const",
        const=True,
        help="judge only, submit nothing (default: QUARANTINE_MODE)",
    )
    mode.add_argument(
        "--enforce",
        dest="dry_run",
        action="store_const",
        const=False,
        help="submit eligible targets, whatever QUARANTINE_MODE says",
    )
    replay_parser.set_defaults(run=_run_replay)

    actions_parser = commands.add_parser(
        "actions",
        help="list the ledger: targets, their machine actions and verdicts",
        description=(
            "Print one JSON document per target in the ledger (the storage account "
            "of AzureWebJobsStorage): its machine action and status, submissions, "
            "the alerts that named it and its latest verdict."
        ),
    )
    actions_parser.add_argument(
        "--open",
        action="store_true",
        help="only targets whose machine action is still Pending or InProgress",
    )
    actions_parser.set_defaults(run=_run_actions)

    backlog_parser = commands.add_parser(
        "backlog",
        help="show how many targets wait in the backlog, and for how long",
        description=(
            "Print the backlog queue's depth (delayed messages included), the age "
            "of its oldest visible message, and the poison queue's depth."
        ),
    )
    backlog_parser.set_defaults(run=_run_backlog)

    # The simulator lives outside ``shared`` (it is not deployed), so its command
    # registers itself from there.
    register_simulator(commands)

    return parser


def _run_extract(args: argparse.Namespace) -> int:
    targets: list[dict[str, object]] = []
    rejected: list[dict[str, str]] = []

    for path in args.paths:
        source = "stdin" if path == "-" else path
        try:
            body = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            print(
                f"{PRODUCT} extract: cannot read {path}: {exc.strerror}",
                file=sys.stderr,
            )
            return EXIT_USAGE

        extraction = extract(body, source=source)
        targets.extend(target.to_json() for target in extraction.targets)
        rejected.extend(rejection.to_json() for rejection in extraction.rejections)

    json.dump({"targets": targets, "rejected": rejected}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


def _run_replay(args: argparse.Namespace) -> int:
    if not args.paths and not args.alert_id:
        print(f"{PRODUCT} replay: give a PATH or --alert-id", file=sys.stderr)
        return EXIT_USAGE

    messages: list[Message] = []
    for path in args.paths:
        try:
            body = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            print(
                f"{PRODUCT} replay: cannot read {path}: {exc.strerror}", file=sys.stderr
            )
            return EXIT_USAGE
        messages.append(Message(body=body, source="stdin" if path == "-" else path))

    try:
        settings = load_settings()
        pipeline = build_pipeline(settings, state=_state(settings, "replay"))
    except SettingsError as exc:
        print(f"{PRODUCT} replay: {exc}", file=sys.stderr)
        return EXIT_USAGE

    outcomes = pipeline.run(messages, dry_run=args.dry_run)
    for alert_id in args.alert_id:
        try:
            outcomes.extend(pipeline.run_alert(alert_id, dry_run=args.dry_run))
        except (ApiError, ValueError) as exc:
            print(f"{PRODUCT} replay: alert {alert_id}: {exc}", file=sys.stderr)
            return EXIT_FAILED

    for outcome in outcomes:
        print(json.dumps(outcome.to_json(), sort_keys=True))
    print(_summary(outcomes), file=sys.stderr)
    return EXIT_OK


def _run_actions(args: argparse.Namespace) -> int:
    state = _configured_state("actions")
    if state is None:
        return EXIT_USAGE

    entries = state.ledger.entries(open_only=args.open)
    for entry in sorted(entries, key=lambda e: (e.submitted_at is None, e.sha1)):
        print(json.dumps(_entry_json(entry), sort_keys=True))
    print(f"{len(entries)} targets", file=sys.stderr)
    return EXIT_OK


def _run_backlog(args: argparse.Namespace) -> int:
    state = _configured_state("backlog")
    if state is None:
        return EXIT_USAGE

    print(json.dumps(state.backlog.depth().to_json(), sort_keys=True))
    return EXIT_OK


def _configured_state(command: str) -> State | None:
    """The state the app settings name, or None once the problem is printed."""
    try:
        return _state(load_settings(), command)
    except SettingsError as exc:
        print(f"{PRODUCT} {command}: {exc}", file=sys.stderr)
        return None


def _state(settings: Settings, command: str) -> State:
    """The configured state; said on standard error when it is only in memory."""
    state = build_state(settings)
    if not state.durable:
        print(f"{PRODUCT} {command}: state kept in {state.where}", file=sys.stderr)
    return state


def _entry_json(entry: LedgerEntry) -> dict[str, object]:
    latest = entry.verdicts[-1] if entry.verdicts else None
    return {
        "device_id": entry.device_id,
        "sha1": entry.sha1,
        "action_id": entry.action_id,
        "action_status": entry.action_status,
        "submitted_at": entry.submitted_at.isoformat() if entry.submitted_at else None,
        "submissions": entry.submissions,
        "alert_ids": entry.alert_ids,
        "last_verdict": latest.verdict if latest else None,
        "last_reason": latest.reason if latest else None,
        "last_seen": entry.last_seen.isoformat() if entry.last_seen else None,
        "last_error": entry.last_error,
    }


def _summary(outcomes: list[Outcome]) -> str:
    counts = Counter(
        f"{outcome.verdict}/{outcome.submission or outcome.reason}"
        for outcome in outcomes
    )
    parts = [f"{count} {key}" for key, count in sorted(counts.items())]
    return f"{len(outcomes)} outcomes: " + (", ".join(parts) if parts else "none")


if __name__ == "__main__":
    sys.exit(main())
