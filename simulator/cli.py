"""The ``simulator`` subcommand: serve a local Defender API until interrupted."""

from __future__ import annotations

__all__ = ["register"]

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from simulator.demo import demo_tenant
from simulator.faults import DropMode, Faults, FaultsError
from simulator.server import start_simulator
from simulator.tenant import TenantError, load_tenant

DEFAULT_PORT = 8650

_SignalHandler = Callable[[int, FrameType | None], Any] | int | None

_EXIT_OK = 0
_EXIT_FAILED = 1
_EXIT_USAGE = 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulator`` subcommand to a parent command line."""
    parser = commands.add_parser(
        "simulator",
        help="serve a local Defender for Endpoint API (docs/simulator.md)",
        description=(
            "Serve a local Defender for Endpoint API that keeps the documented "
            "contract: the endpoints the playbook calls, their permissions, rate "
            "limits, errors and the machine-action lifecycle, with faults on demand. "
            "Serves until interrupted (Ctrl+C or SIGTERM)."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port to bind (default {DEFAULT_PORT}; 0 picks a free port)",
    )
    parser.add_argument(
        "--tenant",
        metavar="FILE",
        help="a JSON tenant seed (default: the built-in demo tenant)",
    )
    parser.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        metavar="X",
        help="run the simulator's clock X times faster (limit windows, actions)",
    )
    parser.add_argument(
        "--accept-any-token",
        action="store_true",
        help="accept any bearer token as holding every permission",
    )

    faults = parser.add_argument_group("faults")
    faults.add_argument(
        "--latency-ms", type=_whole, default=0, help="delay every API answer"
    )
    faults.add_argument(
        "--error-rate",
        type=_share,
        default=0.0,
        help="share of API calls answered 500 (0 to 1)",
    )
    faults.add_argument(
        "--drop-rate",
        type=_share,
        default=0.0,
        help="share of API calls whose connection is dropped (0 to 1)",
    )
    faults.add_argument(
        "--drop-mode",
        choices=[mode.value for mode in DropMode],
        default=DropMode.BEFORE.value,
        help="drop before the call takes effect, or after (outcome unknown)",
    )
    faults.add_argument(
        "--fault-seed", type=_whole, default=0, help="seed of the random faults"
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; returns the exit code."""
    try:
        tenant = load_tenant(args.tenant) if args.tenant else demo_tenant()
        faults = Faults(
            latency_ms=args.latency_ms,
            error_rate=args.error_rate,
            drop_rate=args.drop_rate,
            drop_mode=DropMode(args.drop_mode),
            seed=args.fault_seed,
        )
    except (TenantError, FaultsError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return _EXIT_USAGE

    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {
        number: signal.signal(number, _stop)
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        simulator = start_simulator(
            tenant=tenant,
            host=args.host,
            port=args.port,
            time_scale=args.time_scale,
            accept_any_token=args.accept_any_token,
            faults=faults,
        )
    except OSError as exc:
        print(
            f"simulator: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        _restore(previous)
        return _EXIT_FAILED

    try:
        print(f"listening on {simulator.base_url}", flush=True)
        # A timed wait lets the signal handler run promptly on every platform.
        while not stopping.wait(0.2):
            pass
    finally:
        simulator.stop()
        _restore(previous)
    return _EXIT_OK


def _restore(previous: Mapping[signal.Signals, _SignalHandler]) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)


def _port(text: str) -> int:
    value = _whole(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number")
    return value


def _whole(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 0")
    return int(text)


def _positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def _share(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a number") from None
