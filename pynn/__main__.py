"""`python -m pynn` and the `pynn` console script: see `pynn.cli`."""
from __future__ import annotations

import sys
from collections.abc import Sequence

from pynn import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
