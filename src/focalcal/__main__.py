"""``python -m focalcal``: the command line."""

import sys

from focalcal.cli import main

sys.exit(main())
