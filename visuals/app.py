"""``calf-train``: the visual trainer."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print(
        "calf-train: not implemented yet (issue 7); `python -m calf` trains without graphics",
        file=sys.stderr,
    )
    return 2
