"""What every command shares: the user-error type and how messages are printed."""
from __future__ import annotations

import sys


class CliError(Exception):
    """A problem the user can fix; `main` prints it on one line and exits with status 2."""


def one_line(exc: BaseException) -> str:
    """`exc` as a single line of text, for `pynn: error: ...`."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and exc.args:
        text = f"missing key {exc.args[0]!r}"
    if isinstance(exc, OSError) and exc.filename and exc.strerror and str(exc.filename) not in text:
        text = f"{exc.filename}: {exc.strerror}"
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def say(*parts: object) -> None:
    """Prints to stdout and flushes, so progress shows up in pipes and logs at once."""
    print(*parts, flush=True)


def note(text: str) -> None:
    """A `pynn: ...` remark on stderr."""
    sys.stderr.write(f"pynn: {text}\n")
    sys.stderr.flush()
