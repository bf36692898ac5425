"""``python -m firmware_sim``: the same as ``linli sim``."""

import sys

from firmware_sim.cli import main

sys.exit(main())
