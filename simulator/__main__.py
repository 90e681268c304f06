"""``python -m simulator``: the same command as ``defender-quarantine simulator``."""

from __future__ import annotations

import argparse
import sys

from simulator.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Serve a local Defender for Endpoint API until interrupted.",
    )
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
