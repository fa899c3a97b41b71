"""`python -m pynn.cli`, the same as `python -m pynn`."""
from __future__ import annotations

import sys

from pynn.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
