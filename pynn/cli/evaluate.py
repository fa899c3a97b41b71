"""`pynn evaluate`: a saved model's metrics on an image set's test split or a CSV file."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np

from pynn.cli.arguments import add_threads_option, positive_int
from pynn.cli.common import CliError, say
from pynn.cli.data import IMAGE_SETS, data_name, load_images, read_csv, rows_with_target
from pynn.cli.model import PREP_FILE, load_model, load_preprocessing, task_of
from pynn.cli.preprocess import Preprocessor, TabularPreprocessor
from pynn.cli.report import report

if TYPE_CHECKING:
    from pynn.cli.arguments import Subcommands
    from pynn.models import Model


def add_parser(sub: Subcommands) -> None:
    """Registers `evaluate` and its options."""
    e = sub.add_parser("evaluate", help="evaluate a saved model on a data set",
                       description="Evaluate a saved model on the test split of fashion_mnist "
                       "or mnist, or on every row of a CSV file.")
    e.add_argument("model", metavar="MODEL", help="a model file written by pynn train")
    e.add_argument("data", metavar="DATA", help="fashion_mnist, mnist or FILE.csv")
    e.add_argument("--target", metavar="COLUMN",
                   help="the target column of a CSV file (default: the one the model was "
                        "trained on)")
    e.add_argument("--batch-size", type=positive_int, default=1000)
    add_threads_option(e)


def evaluation_data(args: argparse.Namespace, model: Model, pre: Preprocessor | None
                    ) -> tuple[np.ndarray, np.ndarray, Preprocessor | None]:
    """(x, y, preprocessing) for `args.data`, prepared the way the model was trained."""
    data = data_name(args.data)
    if data in IMAGE_SETS:
        images = load_images(data)
        if pre is not None and pre.kind != "images":
            raise CliError(f"{args.model} was trained on CSV data, not on {data}")
        return images.x_test, images.y_test, pre or images.preprocessor
    if not data.lower().endswith(".csv"):
        raise CliError(f"DATA: expected fashion_mnist, mnist or a .csv file, got {data!r}")
    table = read_csv(data)
    if pre is None:
        # No preprocessing record: the model takes the numeric columns as they are.
        target = args.target
        if not target:
            raise CliError(f"--target: required for {data} (no {PREP_FILE} beside the model)")
        if target not in table.header:
            raise CliError(f"--target: no column {target!r} in {data}")
        rows = rows_with_target(table, target).rows
        ti = list(table.header).index(target)
        try:
            x = np.array([[float(c) for j, c in enumerate(r) if j != ti] for r in rows],
                         dtype=np.float32)
            y = np.array([float(r[ti]) for r in rows])
        except ValueError:
            raise CliError(f"{data}: without {PREP_FILE} beside the model, every column must "
                           f"be numeric") from None
        if task_of(model, None) == "classification":
            y = y.astype(np.int64)
        return x, y, None
    if not isinstance(pre, TabularPreprocessor):
        raise CliError(f"{args.model} was trained on images; give fashion_mnist or mnist")
    if args.target and args.target != pre.target:
        raise CliError(f"--target: the model predicts {pre.target!r}, not {args.target!r}")
    if pre.target in table.header:
        table = rows_with_target(table, pre.target)
    return pre.transform(table, data), pre.transform_target(table, data), pre


def run(args: argparse.Namespace) -> int:
    """Prints the model's test metrics on `args.data`."""
    model, path = load_model(args.model)
    pre = load_preprocessing(path)
    if not model.compiled:
        raise CliError(f"{path}: the model was saved without a compile configuration")
    x, y, pre = evaluation_data(args, model, pre)
    say(f"evaluating {path} on {args.data} ({x.shape[0]} samples)")
    report(model, pre, x, y, args.batch_size)
    return 0
