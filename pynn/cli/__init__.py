"""The `pynn` command: train, evaluate, predict and inspect models from the shell.

    pynn                                   # = pynn train: an MLP on Fashion-MNIST, end to end
    pynn train --data mnist --hidden 512,256 --epochs 5
    pynn train --data houses.csv --target price
    pynn evaluate pynn-output/model.safetensors fashion_mnist
    pynn predict pynn-output/model.safetensors images.npy --output predictions.csv
    pynn info pynn-output/model.safetensors
    pynn serve pynn-output/model.safetensors --port 8080   # HTTP predictions + /metrics
    pynn monitor http://127.0.0.1:8080                      # its metrics, live

`train` writes into its output folder the model (`model.safetensors`), how its inputs were
prepared (`preprocessing.json`: pixel scaling, or the CSV columns with their encodings and
statistics), the training inputs' statistics (`model.stats.json`, for the drift gauges of
`pynn serve`), and, when matplotlib is installed, PNGs of the training curves and the confusion
matrix. `evaluate` and `predict` read `preprocessing.json` from beside the model, so they take
raw data exactly like the data `train` was given.

Every error (a missing file, a bad option, a corrupt model) ends the command with a one-line
message on stderr and exit status 2.

Modules: `app` (parser and `main`), one per command (`train`, `evaluate`, `predict`,
`info`, `serve`, `monitor`), `arguments` (parser class and option types), `preprocess` (the typed
`TabularPreprocessor` and `ImagePreprocessor`), `data`, `model`, `report` and `common`.
"""
from __future__ import annotations

from pynn.cli import evaluate, info, predict, train
from pynn.cli.app import build_parser, main
from pynn.cli.common import CliError
from pynn.cli.data import IMAGE_SETS, read_csv
from pynn.cli.model import MODEL_FILE, PREP_FILE, build_model
from pynn.cli.preprocess import (
                                 MAX_INTEGER_CLASSES,
                                 MISSING,
                                 CategoricalColumn,
                                 ClassTarget,
                                 ImagePreprocessor,
                                 NumericColumn,
                                 RegressionTarget,
                                 Table,
                                 TabularPreprocessor,
                                 fit_table,
                                 preprocessor_from_dict,
                                 table_features,
                                 table_targets,
)
from pynn.cli.train import (
                                 CSV_BATCH_SIZE,
                                 CSV_MAX_EPOCHS,
                                 CSV_MIN_EPOCHS,
                                 CSV_STEPS,
                                 DEFAULT_BATCH_SIZE,
                                 DEFAULT_EPOCHS,
                                 DEFAULT_HIDDEN,
                                 DEFAULT_OUTPUT,
                                 DEFAULT_SEED,
)

# The command functions under their earlier names.
cmd_train = train.run
cmd_evaluate = evaluate.run
cmd_predict = predict.run
cmd_info = info.run

__all__ = [
    "CSV_BATCH_SIZE", "CSV_MAX_EPOCHS", "CSV_MIN_EPOCHS", "CSV_STEPS", "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS", "DEFAULT_HIDDEN", "DEFAULT_OUTPUT", "DEFAULT_SEED", "IMAGE_SETS",
    "MAX_INTEGER_CLASSES", "MISSING", "MODEL_FILE", "PREP_FILE", "CategoricalColumn",
    "ClassTarget", "CliError", "ImagePreprocessor", "NumericColumn", "RegressionTarget",
    "Table", "TabularPreprocessor", "build_model", "build_parser", "cmd_evaluate", "cmd_info",
    "cmd_predict", "cmd_train", "fit_table", "main", "preprocessor_from_dict", "read_csv",
    "table_features", "table_targets",
]
