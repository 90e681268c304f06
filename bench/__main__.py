"""Run every benchmark: ``python -m bench``."""

from __future__ import annotations

import sys

from bench import extraction, state


def main() -> int:
    extraction.run()
    state.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
