"""The `pynn` command: train, evaluate, predict and inspect models from the shell.

    pynn                                   # = pynn train: an MLP on Fashion-MNIST, end to end
    pynn train --data mnist --hidden 512,256 --epochs 5
    pynn train --data houses.csv --target price
    pynn evaluate pynn-output/model.safetensors fashion_mnist
    pynn predict pynn-output/model.safetensors images.npy --output predictions.csv
    pynn info pynn-output/model.safetensors

`train` writes into its output folder the model (`model.safetensors`), how its inputs were
prepared (`preprocessing.json`: pixel scaling, or the CSV columns with their encodings and
statistics), and, when matplotlib is installed, PNGs of the training curves and the confusion
matrix. `evaluate` and `predict` read `preprocessing.json` from beside the model, so they take
raw data exactly like the data `train` was given.

Every error (a missing file, a bad option, a corrupt model) ends the command with a one-line
message on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np

# With these defaults, `pynn` on the full Fashion-MNIST reaches about 0.89 test accuracy in
# 10 epochs (measured on 2 cores; see the README).
DEFAULT_HIDDEN = "256,128"
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 128
# Tables are usually small: smaller batches and as many epochs as it takes to make about
# CSV_STEPS gradient steps, so a few hundred rows train as well as a few hundred thousand.
CSV_BATCH_SIZE = 32
CSV_STEPS = 2000
CSV_MIN_EPOCHS, CSV_MAX_EPOCHS = 10, 200
DEFAULT_SEED = 42
DEFAULT_OUTPUT = "pynn-output"
MODEL_FILE = "model.safetensors"
PREP_FILE = "preprocessing.json"
IMAGE_SETS = ("fashion_mnist", "mnist")
# Cells read as "no value" in a CSV file.
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
# A numeric target with at most this many distinct integer values is taken as class labels.
MAX_INTEGER_CLASSES = 10


class CliError(Exception):
    """A problem the user can fix; main() prints it on one line and exits with status 2."""


# ---------------------------------------------------------------------------------------------
# Argument parsing

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage + message
        raise CliError(f"{message} (see {self.prog} --help)")


def _number(convert, what, ok):
    """An argparse type: `convert` the text, and accept it only when `ok(value)`."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, "a positive integer", lambda v: v >= 1)
_non_negative_int = _number(int, "a non-negative integer", lambda v: v >= 0)
_positive_float = _number(float, "a positive number", lambda v: math.isfinite(v) and v > 0)
_fraction = _number(float, "a number in [0, 1)", lambda v: 0 <= v < 1)


def _hidden(text):
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


def _add_threads(p):
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="threads for pynn's kernels (default: OMP_NUM_THREADS or all cores)")


def build_parser() -> argparse.ArgumentParser:
    from pynn import activations, optimizers

    parser = _Parser(prog="pynn", description="Train, evaluate and use pynn neural networks. "
                     "With no command, runs `pynn train` on Fashion-MNIST.")
    parser.add_argument("--version", action="version", version=f"pynn {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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
    t.add_argument("--test-split", type=_fraction, default=0.2, metavar="FRACTION",
                   help="CSV only: fraction of rows held out for the test (default 0.2)")
    t.add_argument("--hidden", type=_hidden, default=_hidden(DEFAULT_HIDDEN), metavar="SIZES",
                   help=f"hidden layer sizes, comma-separated (default {DEFAULT_HIDDEN})")
    t.add_argument("--activation", default="relu", choices=sorted(activations.names()),
                   metavar="NAME", help="hidden-layer activation (default relu)")
    t.add_argument("--optimizer", default="adam", choices=optimizers.names(),
                   metavar="NAME", help="adam (default), sgd, rmsprop, adamw, nadam, ...")
    t.add_argument("--learning-rate", type=_positive_float, metavar="LR",
                   help="initial learning rate (default: the optimizer's, 0.001 for adam)")
    t.add_argument("--schedule", choices=("cosine", "constant"), default="cosine",
                   help="learning-rate schedule over the epochs (default cosine: decays to "
                        "zero by the last epoch)")
    t.add_argument("--epochs", type=_positive_int,
                   help=f"passes over the training data (default {DEFAULT_EPOCHS} for images; "
                        f"for CSV, enough for about {CSV_STEPS} steps, {CSV_MIN_EPOCHS} to "
                        f"{CSV_MAX_EPOCHS} epochs)")
    t.add_argument("--batch-size", type=_positive_int,
                   help=f"samples per gradient step (default {DEFAULT_BATCH_SIZE} for images, "
                        f"{CSV_BATCH_SIZE} for CSV)")
    t.add_argument("--dropout", type=_fraction, default=0.0, metavar="RATE",
                   help="dropout after each hidden layer (default 0)")
    t.add_argument("--validation-split", type=_fraction, default=0.1, metavar="FRACTION",
                   help="fraction of the training data used to monitor validation loss "
                        "(default 0.1)")
    t.add_argument("--seed", type=_non_negative_int, default=DEFAULT_SEED,
                   help=f"random seed: same seed, same result (default {DEFAULT_SEED})")
    _add_threads(t)
    t.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR",
                   help=f"folder for the model and plots (default ./{DEFAULT_OUTPUT})")
    t.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                   help="progress: 0 silent, 1 progress bar, 2 one line per epoch (default: "
                        "1 on a terminal, else 2)")

    e = sub.add_parser("evaluate", help="evaluate a saved model on a data set",
                       description="Evaluate a saved model on the test split of fashion_mnist "
                       "or mnist, or on every row of a CSV file.")
    e.add_argument("model", metavar="MODEL", help="a model file written by pynn train")
    e.add_argument("data", metavar="DATA", help="fashion_mnist, mnist or FILE.csv")
    e.add_argument("--target", metavar="COLUMN",
                   help="the target column of a CSV file (default: the one the model was "
                        "trained on)")
    e.add_argument("--batch-size", type=_positive_int, default=1000)
    _add_threads(e)

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
    _add_threads(pr)

    i = sub.add_parser("info", help="describe a saved model",
                       description="Print a model's layers, compile configuration, file size "
                       "and preprocessing.")
    i.add_argument("model", metavar="MODEL")
    return parser


def _version():
    try:
        from pynn import __version__
        return __version__
    except Exception:  # pragma: no cover - only if the package is half installed
        return "unknown"


# ---------------------------------------------------------------------------------------------
# Entry point

def main(argv=None) -> int:
    """Runs the command line; returns the exit status (0 success, 2 error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # `pynn` alone, or `pynn --epochs 3`, means `pynn train ...`.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["train"] + argv
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "threads", None):
            import pynn
            pynn.set_num_threads(args.threads)
        return {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
                "info": cmd_info}[args.command](args)
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
        sys.stderr.write(f"pynn: error: {_one_line(exc)}\n")
        return 2


def _one_line(exc) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and exc.args:
        text = f"missing key {exc.args[0]!r}"
    if isinstance(exc, OSError) and exc.filename and exc.strerror and str(exc.filename) not in text:
        text = f"{exc.filename}: {exc.strerror}"
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _say(*parts):
    print(*parts, flush=True)


def _note(text):
    sys.stderr.write(f"pynn: {text}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Data: image sets

def _load_images(name, quiet=False):
    """((x_train, y_train), (x_test, y_test)) with float32 pixels in [0, 1], and the spec."""
    from pynn.datasets import fashion_mnist, mnist

    if name == "fashion_mnist":
        (data, is_subset) = fashion_mnist.load_data_or_subset(quiet=quiet)
        names = fashion_mnist.class_names
    else:
        data, is_subset = mnist.load_data(), False
        names = mnist.class_names
    (x_train, y_train), (x_test, y_test) = data
    prep = {"kind": "images", "dataset": name, "task": "classification", "scale": 1 / 255,
            "image_shape": list(x_train.shape[1:]), "class_names": list(names),
            "subset": bool(is_subset)}
    scale = np.float32(prep["scale"])
    return ((x_train.astype(np.float32) * scale, y_train.astype(np.int64)),
            (x_test.astype(np.float32) * scale, y_test.astype(np.int64)), prep)


# ---------------------------------------------------------------------------------------------
# Data: CSV files (NumPy and the csv module only)

def read_csv(path):
    """(header, rows) of a CSV file with a header row; cells are stripped strings."""
    if not os.path.isfile(path):
        raise CliError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(1 << 14)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        try:
            rows = [[cell.strip() for cell in row] for row in csv.reader(f, dialect)]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CliError(f"{path}: not a readable CSV file ({exc})") from None
    rows = [r for r in rows if any(r)]
    if len(rows) < 2:
        raise CliError(f"{path}: expected a header row and at least one data row")
    header, rows = rows[0], rows[1:]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise CliError(f"{path}: the header row must name every column, each once")
    for k, row in enumerate(rows):
        if len(row) != len(header):
            raise CliError(f"{path}: data row {k + 1} has {len(row)} cells, the header has "
                           f"{len(header)}")
    return header, rows


def _is_missing(cell):
    return cell.lower() in MISSING


def _as_float(cell):
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _numeric_column(values):
    present = [v for v in values if not _is_missing(v)]
    return bool(present) and all(_as_float(v) is not None for v in present)


def _label_text(value):
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def fit_table(header, rows, target, task="auto"):
    """Learns how to turn CSV rows into model inputs (from the training rows only).

    Numeric feature columns are standardised with the training mean and standard deviation
    (missing cells become the mean, i.e. 0); text columns are one-hot encoded over the values
    seen in training (an unseen value encodes as all zeros). A text column with nearly one
    value per row (an identifier) carries nothing to learn from and is dropped.
    """
    if target not in header:
        raise CliError(f"--target: no column {target!r}; the columns are {', '.join(header)}")
    ti = header.index(target)
    rows = [r for r in rows if not _is_missing(r[ti])]
    if len(rows) < 2:
        raise CliError(f"--target {target}: fewer than two rows have a value")
    ys = [r[ti] for r in rows]
    numeric_target = _numeric_column(ys)
    if task == "auto":
        if not numeric_target:
            task = "classification"
        else:
            values = {float(v) for v in ys}
            integral = all(v.is_integer() for v in values)
            task = "classification" if integral and len(values) <= MAX_INTEGER_CLASSES \
                else "regression"
    if task == "regression" and not numeric_target:
        raise CliError(f"--task regression: the target column {target!r} is not numeric")
    prep = {"kind": "table", "target": target, "task": task, "columns": [], "dropped": []}
    if task == "classification":
        if numeric_target:
            values = sorted({float(v) for v in ys})
            prep["class_values"] = values
            prep["class_names"] = [_label_text(v) for v in values]
        else:
            prep["class_names"] = sorted(set(ys))
        if len(prep["class_names"]) < 2:
            raise CliError(f"--target {target}: only one class "
                           f"({prep['class_names'][0]!r}) in the training rows")
    else:
        y = np.array([float(v) for v in ys])
        prep["target_mean"] = float(y.mean())
        prep["target_std"] = float(y.std()) or 1.0
    for j, name in enumerate(header):
        if j == ti:
            continue
        col = [r[j] for r in rows]
        if _numeric_column(col):
            vals = np.array([_as_float(v) for v in col if not _is_missing(v)])
            prep["columns"].append({"name": name, "type": "numeric", "mean": float(vals.mean()),
                                    "std": float(vals.std()) or 1.0})
        else:
            cats = sorted({v for v in col if not _is_missing(v)})
            if len(cats) > 20 and len(cats) > 0.5 * len(rows):
                prep["dropped"].append(name)
                continue
            prep["columns"].append({"name": name, "type": "categorical", "categories": cats})
    if not prep["columns"]:
        raise CliError(f"{target}: no feature columns left to learn from")
    prep["n_features"] = sum(1 if c["type"] == "numeric" else len(c["categories"])
                             for c in prep["columns"])
    return prep


def table_features(prep, header, rows, where):
    """The float32 feature matrix for `rows` (columns found by name in `header`)."""
    blocks = []
    for col in prep["columns"]:
        name = col["name"]
        if name not in header:
            raise CliError(f"{where}: missing column {name!r} that the model was trained on")
        j = header.index(name)
        cells = [r[j] for r in rows]
        if col["type"] == "numeric":
            out = np.zeros(len(rows), dtype=np.float64)
            for k, cell in enumerate(cells):
                if _is_missing(cell):
                    continue  # the training mean: 0 after standardising
                value = _as_float(cell)
                if value is None:
                    raise CliError(f"{where}: column {name!r}, data row {k + 1}: expected a "
                                   f"number, got {cell!r}")
                out[k] = (value - col["mean"]) / col["std"]
            blocks.append(out[:, None])
        else:
            index = {c: i for i, c in enumerate(col["categories"])}
            out = np.zeros((len(rows), len(index)), dtype=np.float64)
            for k, cell in enumerate(cells):
                i = index.get(cell)
                if i is not None:
                    out[k, i] = 1.0
            blocks.append(out)
    return np.ascontiguousarray(np.hstack(blocks), dtype=np.float32)


def table_targets(prep, header, rows, where, target=None):
    """Class indices (int64) or standardised values (float32) of the target column."""
    target = target or prep["target"]
    if target not in header:
        raise CliError(f"{where}: no target column {target!r}")
    ti = header.index(target)
    cells = [r[ti] for r in rows]
    if prep["task"] == "classification":
        if "class_values" in prep:
            index = {v: i for i, v in enumerate(prep["class_values"])}
            keys = [_as_float(c) for c in cells]
        else:
            index = {v: i for i, v in enumerate(prep["class_names"])}
            keys = cells
        out = np.empty(len(cells), dtype=np.int64)
        for k, key in enumerate(keys):
            if key not in index:
                raise CliError(f"{where}: data row {k + 1}: class {cells[k]!r} of {target!r} "
                               f"was not seen in training")
            out[k] = index[key]
        return out
    values = [_as_float(c) for c in cells]
    bad = [k for k, v in enumerate(values) if v is None]
    if bad:
        raise CliError(f"{where}: data row {bad[0] + 1}: target {target!r} is not a number "
                       f"({cells[bad[0]]!r})")
    y = (np.array(values) - prep["target_mean"]) / prep["target_std"]
    return y.astype(np.float32)


def _rows_with_target(header, rows, target):
    ti = header.index(target)
    return [r for r in rows if not _is_missing(r[ti])]


# ---------------------------------------------------------------------------------------------
# Model

def build_model(input_shape, hidden, activation, dropout, outputs, task, optimizer,
                learning_rate):
    import pynn

    layers = [pynn.Input(tuple(input_shape))]
    if len(input_shape) > 1:
        layers.append(pynn.layers.Flatten())
    for size in hidden:
        layers.append(pynn.layers.Dense(size, activation=activation))
        if dropout > 0:
            layers.append(pynn.layers.Dropout(dropout))
    if task == "classification":
        layers.append(pynn.layers.Dense(outputs, activation="softmax"))
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    else:
        layers.append(pynn.layers.Dense(1))
        loss, metrics = "mse", ["mae"]
    model = pynn.Sequential(layers)
    opt = pynn.optimizers.get(optimizer)
    if learning_rate is not None:
        opt.learning_rate = learning_rate
    model.compile(optimizer=opt, loss=loss, metrics=metrics)
    return model


def _epoch_timer():
    from pynn.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._start)

    return EpochTimer()


def _cosine(base_lr, epochs):
    from pynn.callbacks import LearningRateScheduler

    # Epoch e (0-based) trains at base * (1 + cos(pi * e / epochs)) / 2: the full rate first,
    # a small one last. Averaging over the last epochs' noise is what lifts test accuracy.
    return LearningRateScheduler(
        lambda epoch: base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)))


def _duration(seconds):
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def _prep_path(model_path):
    return os.path.join(os.path.dirname(model_path), PREP_FILE)


def _load_prep(model_path):
    path = _prep_path(model_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            prep = json.load(f)
    except (OSError, ValueError) as exc:
        raise CliError(f"{path}: unreadable ({exc})") from None
    if not isinstance(prep, dict) or prep.get("kind") not in ("images", "table"):
        raise CliError(f"{path}: not a pynn preprocessing file")
    return prep


def _load_model(path):
    import pynn

    if not os.path.exists(path):
        raise CliError(f"{path}: no such model file")
    if os.path.isdir(path):
        candidate = os.path.join(path, MODEL_FILE)
        if not os.path.isfile(candidate):
            raise CliError(f"{path}: a folder without {MODEL_FILE}")
        path = candidate
    try:
        return pynn.load_model(path), path
    except (ValueError, TypeError, KeyError) as exc:
        raise CliError(f"{path}: not a usable pynn model ({_one_line(exc)})") from None


def _task_of(model, prep):
    if prep is not None:
        return prep["task"]
    kind = getattr(model.loss, "kind", "")
    return "classification" if kind.endswith("crossentropy") else "regression"


# ---------------------------------------------------------------------------------------------
# Reports

def _regression_report(y_true, y_pred):
    err = y_pred - y_true
    mse = float(np.mean(err ** 2))
    var = float(np.var(y_true))
    r2 = 1.0 - mse / var if var > 0 else float("nan")
    mae = float(np.mean(np.abs(err)))
    return (f"test MSE {mse:.6g}   RMSE {math.sqrt(mse):.6g}   MAE {mae:.6g}   R^2 {r2:.4f}")


def _class_names(prep, width):
    if prep is not None and prep.get("class_names") and len(prep["class_names"]) == width:
        return list(prep["class_names"])
    return [str(i) for i in range(width)]


def _report(model, prep, x, y, batch_size):
    """Prints the test metrics; returns (y_pred, text of the headline)."""
    from pynn import metrics

    out = model.predict(x, batch_size=batch_size, verbose=0)
    if _task_of(model, prep) == "classification":
        y_pred = np.argmax(out, axis=1)
        names = _class_names(prep, out.shape[1])
        acc = float(np.mean(y_pred == y))
        _say(f"\ntest accuracy: {acc:.4f}  ({int(np.sum(y_pred == y))} of {len(y)} correct)\n")
        _say(metrics.classification_report(y, y_pred, class_names=names))
        return y_pred, acc
    pred = out[:, 0].astype(np.float64)
    mean, std = (prep["target_mean"], prep["target_std"]) if prep else (0.0, 1.0)
    y_true = y.astype(np.float64) * std + mean
    y_hat = pred * std + mean
    _say("\n" + _regression_report(y_true, y_hat) + "\n")
    return y_hat, None


def _save_plots(out_dir, history, y_true, y_pred, class_names):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        _say("plots need matplotlib: pip install pynn[plot]")
        return []
    from pynn import plot

    written = []
    path = os.path.join(out_dir, "training_curves.png")
    fig = plot.history(history)
    fig.savefig(path, dpi=100)
    written.append(path)
    if class_names is not None:
        path = os.path.join(out_dir, "confusion_matrix.png")
        fig = plot.confusion_matrix(y_true, y_pred, class_names=class_names)
        fig.savefig(path, dpi=100)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# Commands

def _data_name(text):
    """'Fashion-MNIST' and 'fashion_mnist' name the same set; anything else is a path."""
    key = text.lower().replace("-", "_")
    return key if key in IMAGE_SETS else text


def _training_data(args):
    """(x_train, y_train, x_test, y_test, prep, description)."""
    data = _data_name(args.data)
    if data in IMAGE_SETS:
        if args.target:
            raise CliError(f"--target applies to CSV data, not {data}")
        (x_train, y_train), (x_test, y_test), prep = _load_images(data)
        what = "the shipped Fashion-MNIST subset" if prep["subset"] else data
        return x_train, y_train, x_test, y_test, prep, what
    if not data.lower().endswith(".csv"):
        raise CliError(f"--data: expected fashion_mnist, mnist or a .csv file, got {data!r}")
    if not args.target:
        raise CliError("--target: required with CSV data (the column to predict)")
    header, rows = read_csv(data)
    if args.target not in header:
        raise CliError(f"--target: no column {args.target!r} in {data}; the columns are "
                       f"{', '.join(header)}")
    rows = _rows_with_target(header, rows, args.target)
    n_test = int(round(len(rows) * args.test_split))
    if n_test < 1 or n_test >= len(rows):
        raise CliError(f"{data}: {len(rows)} rows are too few to hold out a test split of "
                       f"{args.test_split}")
    order = np.random.default_rng(args.seed).permutation(len(rows))
    train_rows = [rows[i] for i in order[n_test:]]
    test_rows = [rows[i] for i in order[:n_test]]
    prep = fit_table(header, train_rows, args.target, args.task)
    if prep["dropped"]:
        _note(f"ignoring identifier-like column(s) {', '.join(prep['dropped'])}")
    x_train = table_features(prep, header, train_rows, data)
    x_test = table_features(prep, header, test_rows, data)
    y_train = table_targets(prep, header, train_rows, data)
    y_test = table_targets(prep, header, test_rows, data)
    kinds = [c["type"] for c in prep["columns"]]
    what = (f"{data}: {len(train_rows)} training / {len(test_rows)} test rows, "
            f"{kinds.count('numeric')} numeric and {kinds.count('categorical')} categorical "
            f"columns -> {prep['n_features']} features; {prep['task']} of {args.target!r}")
    return x_train, y_train, x_test, y_test, prep, what


def cmd_train(args) -> int:
    import pynn

    out_dir = args.output
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CliError(f"--output: {out_dir} exists and is not a folder")
    x_train, y_train, x_test, y_test, prep, what = _training_data(args)
    _say(f"data: {what}")
    pynn.utils.set_random_seed(args.seed)
    classification = prep["task"] == "classification"
    outputs = len(prep["class_names"]) if classification else 1
    model = build_model(x_train.shape[1:], args.hidden, args.activation, args.dropout, outputs,
                        prep["task"], args.optimizer, args.learning_rate)
    model.summary()
    image_data = prep["kind"] == "images"
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
    timer = _epoch_timer()
    callbacks = [timer]
    if args.schedule == "cosine":
        callbacks.append(_cosine(model.optimizer.learning_rate, args.epochs))
    _say(f"training {args.epochs} epochs, batch size {args.batch_size}, "
         f"{model.optimizer.name} lr {model.optimizer.learning_rate:g} ({args.schedule}), "
         f"{pynn.get_num_threads()} threads")
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=args.validation_split, callbacks=callbacks,
                        verbose="auto" if args.verbose is None else args.verbose)
    y_pred, _ = _report(model, prep, x_test, y_test, 1000)
    times = timer.times
    if times:
        _say(f"time per epoch: {_duration(float(np.mean(times)))} (mean of {len(times)}; "
             f"total {_duration(sum(times))} on {pynn.get_num_threads()} threads)")
    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, MODEL_FILE)
    model.save(model_path)
    with open(_prep_path(model_path), "w", encoding="utf-8") as f:
        json.dump(prep, f, indent=1)
    written = [model_path, _prep_path(model_path)]
    if not args.no_plots:
        if classification:
            written += _save_plots(out_dir, history, y_test, y_pred, prep["class_names"])
        else:
            written += _save_plots(out_dir, history, None, None, None)
    _say("saved: " + ", ".join(written))
    return 0


def _evaluation_data(args, model, prep):
    data = _data_name(args.data)
    if data in IMAGE_SETS:
        _, (x, y), data_prep = _load_images(data)
        if prep is not None and prep["kind"] != "images":
            raise CliError(f"{args.model} was trained on CSV data, not on {data}")
        return x, y, prep or data_prep
    if not data.lower().endswith(".csv"):
        raise CliError(f"DATA: expected fashion_mnist, mnist or a .csv file, got {data!r}")
    header, rows = read_csv(data)
    if prep is None:
        # No preprocessing record: the model takes the numeric columns as they are.
        target = args.target
        if not target:
            raise CliError(f"--target: required for {data} (no {PREP_FILE} beside the model)")
        if target not in header:
            raise CliError(f"--target: no column {target!r} in {data}")
        rows = _rows_with_target(header, rows, target)
        ti = header.index(target)
        try:
            x = np.array([[float(c) for j, c in enumerate(r) if j != ti] for r in rows],
                         dtype=np.float32)
            y = np.array([float(r[ti]) for r in rows])
        except ValueError:
            raise CliError(f"{data}: without {PREP_FILE} beside the model, every column must "
                           f"be numeric") from None
        if _task_of(model, None) == "classification":
            y = y.astype(np.int64)
        return x, y, None
    if prep["kind"] != "table":
        raise CliError(f"{args.model} was trained on images; give fashion_mnist or mnist")
    if args.target and args.target != prep["target"]:
        raise CliError(f"--target: the model predicts {prep['target']!r}, not {args.target!r}")
    rows = _rows_with_target(header, rows, prep["target"]) if prep["target"] in header else rows
    return (table_features(prep, header, rows, data), table_targets(prep, header, rows, data),
            prep)


def cmd_evaluate(args) -> int:
    model, path = _load_model(args.model)
    prep = _load_prep(path)
    if not model.compiled:
        raise CliError(f"{path}: the model was saved without a compile configuration")
    x, y, prep = _evaluation_data(args, model, prep)
    _say(f"evaluating {path} on {args.data} ({x.shape[0]} samples)")
    _report(model, prep, x, y, args.batch_size)
    return 0


def _prediction_inputs(args, model, prep):
    path = args.input
    if not os.path.isfile(path):
        raise CliError(f"{path}: no such file")
    lower = path.lower()
    if lower.endswith(".npy"):
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise CliError(f"{path}: not a readable .npy file ({_one_line(exc)})") from None
        if x.dtype.kind not in "fiub":
            raise CliError(f"{path}: expected numbers, got dtype {x.dtype}")
        x = x.astype(np.float64)
        if prep is not None and prep["kind"] == "images":
            x = x.astype(np.float32) * np.float32(prep["scale"])
        elif prep is not None:
            cols = prep["columns"]
            if any(c["type"] != "numeric" for c in cols):
                raise CliError(f"{path}: the model has categorical columns; give its rows as "
                               f"a .csv file with column names")
            if x.ndim != 2 or x.shape[1] != len(cols):
                raise CliError(f"{path}: expected rows of {len(cols)} numbers (columns "
                               f"{', '.join(c['name'] for c in cols)}), got shape {x.shape}")
            mean = np.array([c["mean"] for c in cols])
            std = np.array([c["std"] for c in cols])
            x = (x - mean) / std
        return x.astype(np.float32)
    if lower.endswith(".csv"):
        header, rows = read_csv(path)
        if prep is not None and prep["kind"] == "table":
            return table_features(prep, header, rows, path)
        # Images or a model without preprocessing: all-numeric rows, minus any label column.
        keep = [j for j, h in enumerate(header) if h.lower() not in ("label", "target", "class")]
        try:
            x = np.array([[float(r[j]) for j in keep] for r in rows])
        except ValueError:
            raise CliError(f"{path}: expected numeric columns only") from None
        if prep is not None:
            x = x.astype(np.float32) * np.float32(prep["scale"])
        return x.astype(np.float32)
    raise CliError(f"INPUT: expected a .npy or .csv file, got {path!r}")


def cmd_predict(args) -> int:
    model, path = _load_model(args.model)
    prep = _load_prep(path)
    x = _prediction_inputs(args, model, prep)
    expected = int(np.prod(model.input_shape[1:]))
    if x.size == expected and (x.ndim == 1 or x.shape[0] != 1):
        x = x.reshape((1,) + tuple(model.input_shape[1:]))  # a single sample
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != expected:
        raise CliError(f"{args.input}: the model takes samples of {expected} values "
                       f"(shape {model.input_shape[1:]}), got an array of shape {x.shape}")
    if x.ndim == 2 and len(model.input_shape) > 2:
        x = x.reshape((x.shape[0],) + tuple(model.input_shape[1:]))
    out = model.predict(x, batch_size=1000, verbose=0)
    task = _task_of(model, prep)
    if task == "classification":
        classes = np.argmax(out, axis=1)
        names = _class_names(prep, out.shape[1])
        labels = [names[c] for c in classes]
        values = classes
    else:
        mean, std = (prep["target_mean"], prep["target_std"]) if prep else (0.0, 1.0)
        values = out[:, 0].astype(np.float64) * std + mean
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
        _say(f"wrote {len(labels)} predictions to {dest}")
    else:
        for label in labels:
            print(label)
    return 0


def _size(nbytes):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


def cmd_info(args) -> int:
    model, path = _load_model(args.model)
    prep = _load_prep(path)
    _say(f"file: {path} ({_size(os.path.getsize(path))})")
    model.summary(print_fn=_say)
    cfg = model.get_compile_config()
    if cfg is None:
        _say("compile: none (weights and architecture only)")
    else:
        opt = cfg["optimizer"]
        opt_cfg = opt.get("config", {})
        lr = model.optimizer.learning_rate
        loss = cfg["loss"]
        loss_name = loss if isinstance(loss, str) else (
            loss.get("config", {}).get("name") or loss.get("class_name") if isinstance(
                loss, dict) else str(loss))
        _say(f"compile: optimizer {opt.get('class_name')} (current learning rate {lr:.6g}), "
             f"loss {loss_name}, metrics {', '.join(cfg.get('metrics') or []) or 'none'}")
        _say(f"optimizer steps taken: {model.optimizer.iterations}")
    if prep is None:
        _say(f"preprocessing: none recorded ({PREP_FILE} not beside the model)")
    elif prep["kind"] == "images":
        _say(f"preprocessing: {prep['dataset']} images {prep['image_shape']}, pixels x "
             f"{prep['scale']:.6g}; classes: {', '.join(prep['class_names'])}")
    else:
        parts = [f"{c['name']} (one-hot, {len(c['categories'])} values)"
                 if c["type"] == "categorical" else f"{c['name']} (standardised)"
                 for c in prep["columns"]]
        _say(f"preprocessing: CSV, {prep['task']} of {prep['target']!r} from "
             f"{', '.join(parts)}")
        if prep["task"] == "classification":
            _say(f"classes: {', '.join(prep['class_names'])}")
    return 0
