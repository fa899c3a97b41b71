"""`pynn train`: fit an MLP on an image set or a CSV file, report, and save it."""
from __future__ import annotations

import argparse
import math
import os
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from pynn.cli.arguments import (
    add_threads_option,
    fraction,
    hidden_sizes,
    non_negative_int,
    positive_float,
    positive_int,
)
from pynn.cli.common import CliError, note, say
from pynn.cli.data import IMAGE_SETS, data_name, load_images, read_csv, rows_with_target
from pynn.cli.model import (
    MODEL_FILE,
    build_cnn,
    build_model,
    cosine_schedule,
    epoch_timer,
    save_preprocessing,
)
from pynn.cli.preprocess import (
    MAX_INTEGER_CLASSES,
    NumericColumn,
    Preprocessor,
    Table,
    TabularPreprocessor,
)
from pynn.cli.report import duration, report, save_plots
from pynn.serve.stats import save_stats

if TYPE_CHECKING:
    from pynn.cli.arguments import Subcommands

# With these defaults, `pynn` on the full Fashion-MNIST reaches about 0.89 test accuracy in
# 10 epochs (measured on 2 cores; see the README).
DEFAULT_HIDDEN = "256,128"
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 128
# Tables are usually small: smaller batches, and as many epochs as it takes to make about
# CSV_STEPS gradient steps, so a few hundred rows train as well as a few hundred thousand.
CSV_BATCH_SIZE = 32
CSV_STEPS = 2000
CSV_MIN_EPOCHS, CSV_MAX_EPOCHS = 10, 200
DEFAULT_SEED = 42
DEFAULT_OUTPUT = "pynn-output"


def add_parser(sub: Subcommands) -> None:
    """Registers `train` and its options."""
    from pynn import activations, optimizers

    t = sub.add_parser("train", help="train a network and save it (the default command)",
                       description="Train an MLP on Fashion-MNIST, MNIST or a CSV file; print "
                       "test accuracy, a per-class report and the time per epoch; save the "
                       "model and plots.")
    t.add_argument("--data", default="fashion_mnist", metavar="fashion_mnist|mnist|FILE.csv",
                   help="data set (default: fashion_mnist, or the subset shipped with pynn "
                        "when the full set is not installed)")
    t.add_argument("--target", metavar="COLUMN", help="the column to predict (CSV data)")
    t.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                   help="CSV only: auto (default) picks classification for a text target or "
                        f"one with at most {MAX_INTEGER_CLASSES} integer values")
    t.add_argument("--test-split", type=fraction, default=0.2, metavar="FRACTION",
                   help="CSV only: fraction of rows held out for the test (default 0.2)")
    t.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                   help="mlp (default): Dense layers of --hidden sizes; cnn: the keras.io "
                        "convnet (two Conv2D + max pooling, dropout, Dense 128), for image "
                        "data (--hidden, --activation and --dropout apply to the MLP)")
    t.add_argument("--hidden", type=hidden_sizes, default=hidden_sizes(DEFAULT_HIDDEN),
                   metavar="SIZES",
                   help=f"hidden layer sizes, comma-separated (default {DEFAULT_HIDDEN})")
    t.add_argument("--activation", default="relu", choices=sorted(activations.names()),
                   metavar="NAME", help="hidden-layer activation (default relu)")
    t.add_argument("--optimizer", default="adam", choices=optimizers.names(),
                   metavar="NAME", help="adam (default), sgd, rmsprop, adamw, nadam, ...")
    t.add_argument("--learning-rate", type=positive_float, metavar="LR",
                   help="initial learning rate (default: the optimizer's, 0.001 for adam)")
    t.add_argument("--schedule", choices=("cosine", "constant"), default="cosine",
                   help="learning-rate schedule over the epochs (default cosine: decays to "
                        "zero by the last epoch)")
    t.add_argument("--epochs", type=positive_int,
                   help=f"passes over the training data (default {DEFAULT_EPOCHS} for images; "
                        f"for CSV, enough for about {CSV_STEPS} steps, {CSV_MIN_EPOCHS} to "
                        f"{CSV_MAX_EPOCHS} epochs)")
    t.add_argument("--batch-size", type=positive_int,
                   help=f"samples per gradient step (default {DEFAULT_BATCH_SIZE} for images, "
                        f"{CSV_BATCH_SIZE} for CSV)")
    t.add_argument("--dropout", type=fraction, default=0.0, metavar="RATE",
                   help="dropout after each hidden layer (default 0)")
    t.add_argument("--validation-split", type=fraction, default=0.1, metavar="FRACTION",
                   help="fraction of the training data used to monitor validation loss "
                        "(default 0.1)")
    t.add_argument("--seed", type=non_negative_int, default=DEFAULT_SEED,
                   help=f"random seed: same seed, same result (default {DEFAULT_SEED})")
    add_threads_option(t)
    t.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR",
                   help=f"folder for the model and plots (default ./{DEFAULT_OUTPUT})")
    t.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                   help="progress: 0 silent, 1 progress bar, 2 one line per epoch (default: "
                        "1 on a terminal, else 2)")


class TrainingData(NamedTuple):
    """Both splits, ready for the model, with the preprocessing that made them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessor: Preprocessor
    description: str


def training_data(args: argparse.Namespace) -> TrainingData:
    """Loads `--data`; a CSV file is split by `--test-split` and its preprocessing fitted on
    the training rows."""
    data = data_name(args.data)
    if data in IMAGE_SETS:
        if args.target:
            raise CliError(f"--target applies to CSV data, not {data}")
        images = load_images(data)
        pre_images = images.preprocessor
        what = "the shipped Fashion-MNIST subset" if pre_images.subset else data
        return TrainingData(images.x_train, images.y_train, images.x_test, images.y_test,
                            pre_images, what)
    if not data.lower().endswith(".csv"):
        raise CliError(f"--data: expected fashion_mnist, mnist or a .csv file, got {data!r}")
    if not args.target:
        raise CliError("--target: required with CSV data (the column to predict)")
    table = read_csv(data)
    if args.target not in table.header:
        raise CliError(f"--target: no column {args.target!r} in {data}; the columns are "
                       f"{', '.join(table.header)}")
    table = rows_with_target(table, args.target)
    n_rows = len(table.rows)
    n_test = round(n_rows * args.test_split)
    if n_test < 1 or n_test >= n_rows:
        raise CliError(f"{data}: {n_rows} rows are too few to hold out a test split of "
                       f"{args.test_split}")
    order = np.random.default_rng(args.seed).permutation(n_rows)
    train = Table(table.header, [table.rows[i] for i in order[n_test:]])
    test = Table(table.header, [table.rows[i] for i in order[:n_test]])
    pre = TabularPreprocessor.fit(train, args.target, args.task)
    if pre.dropped:
        note(f"ignoring identifier-like column(s) {', '.join(pre.dropped)}")
    n_numeric = sum(isinstance(c, NumericColumn) for c in pre.columns)
    what = (f"{data}: {len(train.rows)} training / {len(test.rows)} test rows, "
            f"{n_numeric} numeric and {len(pre.columns) - n_numeric} categorical "
            f"columns -> {pre.n_features} features; {pre.task} of {args.target!r}")
    return TrainingData(pre.transform(train, data), pre.transform_target(train, data),
                        pre.transform(test, data), pre.transform_target(test, data), pre, what)


def run(args: argparse.Namespace) -> int:
    """Trains, prints the test report and the time per epoch, saves model, preprocessing and
    plots into `--output`."""
    import pynn

    out_dir = args.output
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CliError(f"--output: {out_dir} exists and is not a folder")
    x_train, y_train, x_test, y_test, pre, what = training_data(args)
    say(f"data: {what}")
    pynn.utils.set_random_seed(args.seed)
    classification = pre.task == "classification"
    outputs = len(pre.class_names) if classification else 1
    if getattr(args, "model", "mlp") == "cnn":
        if pre.kind != "images":
            raise CliError("--model cnn: needs image data (fashion_mnist or mnist), not a CSV "
                           "file")
        model = build_cnn(x_train.shape[1:], outputs, args.optimizer, args.learning_rate)
    else:
        model = build_model(x_train.shape[1:], args.hidden, args.activation, args.dropout,
                            outputs, pre.task, args.optimizer, args.learning_rate)
    model.summary()
    image_data = pre.kind == "images"
    if args.batch_size is None:
        args.batch_size = DEFAULT_BATCH_SIZE if image_data else CSV_BATCH_SIZE
    if args.epochs is None:
        steps = math.ceil(x_train.shape[0] * (1 - args.validation_split) / args.batch_size)
        args.epochs = DEFAULT_EPOCHS if image_data else int(
            min(CSV_MAX_EPOCHS, max(CSV_MIN_EPOCHS, math.ceil(CSV_STEPS / max(steps, 1)))))
    n_val = int(x_train.shape[0] * args.validation_split)
    if args.validation_split > 0 and not 1 <= n_val < x_train.shape[0]:
        raise CliError(f"--validation-split {args.validation_split} leaves no "
                       f"{'validation' if n_val < 1 else 'training'} samples out of "
                       f"{x_train.shape[0]}")
    timer, times = epoch_timer()
    callbacks = [timer]
    if args.schedule == "cosine":
        callbacks.append(cosine_schedule(model.optimizer.learning_rate, args.epochs))
    say(f"training {args.epochs} epochs, batch size {args.batch_size}, "
        f"{model.optimizer.name} lr {model.optimizer.learning_rate:g} ({args.schedule}), "
        f"{pynn.get_num_threads()} threads")
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=args.validation_split, callbacks=callbacks,
                        verbose="auto" if args.verbose is None else args.verbose)
    y_pred, _ = report(model, pre, x_test, y_test, 1000)
    if times:
        say(f"time per epoch: {duration(float(np.mean(times)))} (mean of {len(times)}; "
            f"total {duration(sum(times))} on {pynn.get_num_threads()} threads)")
    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, MODEL_FILE)
    model.save(model_path)
    written = [model_path, save_preprocessing(model_path, pre)]
    # The inputs' training statistics, for the drift gauges of `pynn serve`.
    written.append(save_stats(model_path, x_train))
    if not args.no_plots:
        if classification:
            written += save_plots(out_dir, history, y_test, y_pred, list(pre.class_names))
        else:
            written += save_plots(out_dir, history, None, None, None)
    say("saved: " + ", ".join(written))
    return 0
