"""The parser of all commands, and `main`, which runs one and turns errors into exit codes."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from pynn.cli import evaluate, info, monitor, predict, serve, train
from pynn.cli.arguments import CliParser
from pynn.cli.common import CliError, one_line

# Each command module registers its subparser and runs the parsed arguments.
COMMANDS = {"train": train, "evaluate": evaluate, "predict": predict, "info": info,
            "serve": serve, "monitor": monitor}
RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    name: module.run for name, module in COMMANDS.items()}


def version() -> str:
    """pynn's version, or 'unknown' for a half-installed package."""
    try:
        from pynn import __version__
        return __version__
    except ImportError:  # pragma: no cover - only if the package is half installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The `pynn` parser with every command's subparser."""
    parser = CliParser(prog="pynn", description="Train, evaluate and use pynn neural networks. "
                       "With no command, runs `pynn train` on Fashion-MNIST.")
    parser.add_argument("--version", action="version", version=f"pynn {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0 success, 2 error, 130 interrupted)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `pynn` alone, or `pynn --epochs 3`, means `pynn train ...`.
    if not args_list or (args_list[0].startswith("-")
                         and args_list[0] not in ("-h", "--help", "--version")):
        args_list = ["train"] + args_list
    try:
        args = build_parser().parse_args(args_list)
        if getattr(args, "threads", None):
            import pynn
            pynn.set_num_threads(args.threads)
        return RUNNERS[args.command](args)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        sys.stderr.write("pynn: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`pynn predict ... | head`): stop quietly, as Unix tools do.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except (CliError, OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        sys.stderr.write(f"pynn: error: {one_line(exc)}\n")
        return 2
