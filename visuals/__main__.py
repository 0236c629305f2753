"""``python -m visuals``: the same as ``calf-train``."""

import sys

from visuals.app import main

sys.exit(main())
