"""`pynn predict`: a saved model's predictions for the rows of a .npy or .csv file."""
from __future__ import annotations

import argparse
import csv
import os
from typing import TYPE_CHECKING

import numpy as np

from pynn.cli.arguments import add_threads_option
from pynn.cli.common import CliError, one_line, say
from pynn.cli.data import read_csv
from pynn.cli.model import load_model, load_preprocessing, task_of
from pynn.cli.preprocess import (
    ImagePreprocessor,
    NumericColumn,
    Preprocessor,
    TabularPreprocessor,
)
from pynn.cli.report import class_names, target_values

if TYPE_CHECKING:
    from pynn.cli.arguments import Subcommands

# Column names that mark a label column in a CSV of images or raw features; it is skipped.
LABEL_COLUMNS = ("label", "target", "class")


def add_parser(sub: Subcommands) -> None:
    """Registers `predict` and its options."""
    pr = sub.add_parser("predict", help="predict with a saved model",
                        description="Predict for every row of INPUT: a .npy array (images, "
                        "or rows of numeric features as in the training data) or a .csv file "
                        "with the training columns (the target column, if present, is ignored).")
    pr.add_argument("model", metavar="MODEL", help="a model file written by pynn train")
    pr.add_argument("input", metavar="INPUT", help="a .npy or .csv file")
    pr.add_argument("--output", metavar="FILE",
                    help="write the predictions to FILE (.csv: prediction and class "
                         "probabilities; .npy: the array of predicted classes or values) "
                         "instead of printing them")
    add_threads_option(pr)


def prediction_inputs(path: str, pre: Preprocessor | None) -> np.ndarray:
    """The float32 model inputs in the file at `path`, prepared as in training."""
    if not os.path.isfile(path):
        raise CliError(f"{path}: no such file")
    lower = path.lower()
    if lower.endswith(".npy"):
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise CliError(f"{path}: not a readable .npy file ({one_line(exc)})") from None
        if x.dtype.kind not in "fiub":
            raise CliError(f"{path}: expected numbers, got dtype {x.dtype}")
        x = x.astype(np.float64)
        if isinstance(pre, ImagePreprocessor):
            x = pre.transform(x)
        elif isinstance(pre, TabularPreprocessor):
            if not all(isinstance(c, NumericColumn) for c in pre.columns):
                raise CliError(f"{path}: the model has categorical columns; give its rows as "
                               f"a .csv file with column names")
            x = pre.transform_array(x, path)
        return x.astype(np.float32)
    if lower.endswith(".csv"):
        table = read_csv(path)
        if isinstance(pre, TabularPreprocessor):
            return pre.transform(table, path)
        # Images or a model without preprocessing: all-numeric rows, minus any label column.
        keep = [j for j, h in enumerate(table.header) if h.lower() not in LABEL_COLUMNS]
        try:
            x = np.array([[float(r[j]) for j in keep] for r in table.rows])
        except ValueError:
            raise CliError(f"{path}: expected numeric columns only") from None
        if pre is not None:
            x = pre.transform(x)
        return x.astype(np.float32)
    raise CliError(f"INPUT: expected a .npy or .csv file, got {path!r}")


def run(args: argparse.Namespace) -> int:
    """Prints one prediction per line, or writes them to `--output` (.csv or .npy)."""
    model, path = load_model(args.model)
    pre = load_preprocessing(path)
    x = prediction_inputs(args.input, pre)
    sample_shape = tuple(model.input_shape[1:])
    expected = int(np.prod(sample_shape))
    if x.size == expected and (x.ndim == 1 or x.shape[0] != 1):
        x = x.reshape((1,) + sample_shape)  # a single sample
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != expected:
        raise CliError(f"{args.input}: the model takes samples of {expected} values "
                       f"(shape {model.input_shape[1:]}), got an array of shape {x.shape}")
    if x.ndim == 2 and len(model.input_shape) > 2:
        x = x.reshape((x.shape[0],) + sample_shape)
    out = model.predict(x, batch_size=1000, verbose=0)
    task = task_of(model, pre)
    names: list[str] = []
    if task == "classification":
        classes = np.argmax(out, axis=1)
        names = class_names(pre, out.shape[1])
        labels = [names[c] for c in classes]
        values = classes
    else:
        values = target_values(pre, out[:, 0])
        labels = [f"{v:.6g}" for v in values]
    if args.output:
        dest = args.output
        folder = os.path.dirname(os.path.abspath(dest))
        if not os.path.isdir(folder):
            raise CliError(f"--output: folder {folder} does not exist")
        if dest.lower().endswith(".npy"):
            np.save(dest, values)
        else:
            with open(dest, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                if task == "classification":
                    w.writerow(["prediction"] + [f"p({n})" for n in names])
                    for label, probs in zip(labels, out):
                        w.writerow([label] + [f"{p:.6f}" for p in probs])
                else:
                    w.writerow(["prediction"])
                    w.writerows([v] for v in labels)
        say(f"wrote {len(labels)} predictions to {dest}")
    else:
        for label in labels:
            print(label)
    return 0
