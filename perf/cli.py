"""``calf-perf``: headless performance runs of the visual trainer."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("calf-perf: not implemented yet (issue 8)", file=sys.stderr)
    return 2
