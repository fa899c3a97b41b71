"""Argument-parsing helpers shared by the commands: the parser class and option types."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

from pynn.cli.common import CliError

T = TypeVar("T")


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one-line CliErrors rather than usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see {self.prog} --help)")


def number(convert: Callable[[str], T], what: str,
           ok: Callable[[T], bool]) -> Callable[[str], T]:
    """An argparse type: `convert` the text, and accept the value only when `ok(value)`."""
    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = number(int, "a positive integer", lambda v: v >= 1)
non_negative_int = number(int, "a non-negative integer", lambda v: v >= 0)
positive_float = number(float, "a positive number", lambda v: math.isfinite(v) and v > 0)
fraction = number(float, "a number in [0, 1)", lambda v: 0 <= v < 1)


def hidden_sizes(text: str) -> list[int]:
    """'256,128' -> [256, 128]; '' or 'none' -> [] (no hidden layer: a linear model)."""
    if text.strip().lower() in ("", "none"):
        return []
    sizes = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            size = 0
        if size < 1:
            raise argparse.ArgumentTypeError(f"expected comma-separated positive layer sizes "
                                             f"such as 256,128, got {text!r}")
        sizes.append(size)
    return sizes


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """--threads N, applied by `main` before the command runs."""
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="threads for pynn's kernels (default: OMP_NUM_THREADS or all "
                             "cores)")


if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]
