"""``python -m perf``: the same as ``calf-perf``."""

import sys

from perf.cli import main

sys.exit(main())
