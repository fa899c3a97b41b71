"""`python -m pynn` and the `pynn` console script: see `pynn.cli`."""
from __future__ import annotations

import sys

from pynn import cli


def main(argv=None) -> int:
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
