"""Models for the commands: building the MLP, loading a saved one with the preprocessing
file beside it, and the callbacks `train` adds."""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pynn.cli.common import CliError, one_line
from pynn.cli.preprocess import Preprocessor, Task, preprocessor_from_dict

if TYPE_CHECKING:
    from pynn.callbacks import Callback
    from pynn.models import Model

MODEL_FILE = "model.safetensors"
PREP_FILE = "preprocessing.json"


def build_model(input_shape: Sequence[int], hidden: Sequence[int], activation: str,
                dropout: float, outputs: int, task: Task, optimizer: str,
                learning_rate: float | None) -> Model:
    """A compiled Sequential MLP: softmax + sparse cross-entropy for classification, one
    linear output + MSE for regression."""
    import pynn

    layers: list[Any] = [pynn.Input(tuple(input_shape))]
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


def build_cnn(input_shape: Sequence[int], outputs: int, optimizer: str,
              learning_rate: float | None) -> Model:
    """A compiled convnet for grey images (height, width) classified into `outputs` classes:
    the keras.io "Simple MNIST convnet" (Conv2D 32 3x3, 2x2 max pooling, Conv2D 64 3x3, 2x2
    max pooling, dropout 0.5) with a Dense(128) layer before the softmax."""
    import pynn

    if len(input_shape) != 2:
        raise CliError(f"--model cnn: expected grey images (height, width), got samples of "
                       f"shape {tuple(input_shape)}")
    layers = pynn.layers
    model = pynn.Sequential([
        pynn.Input(tuple(input_shape)),
        layers.Reshape(tuple(input_shape) + (1,)),   # a channel axis for Conv2D
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dropout(0.5),
        layers.Dense(128, activation="relu"),
        layers.Dense(outputs, activation="softmax"),
    ])
    opt = pynn.optimizers.get(optimizer)
    if learning_rate is not None:
        opt.learning_rate = learning_rate
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def load_model(path: str) -> tuple[Model, str]:
    """The model in `path` (a file, or a folder holding MODEL_FILE) and the file's path."""
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
        raise CliError(f"{path}: not a usable pynn model ({one_line(exc)})") from None


def preprocessing_path(model_path: str) -> str:
    """Where the preprocessing record of the model in `model_path` lives."""
    return os.path.join(os.path.dirname(model_path), PREP_FILE)


def load_preprocessing(model_path: str) -> Preprocessor | None:
    """The preprocessing saved beside the model, or None when there is no such file."""
    path = preprocessing_path(model_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise CliError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") not in ("images", "table"):
        raise CliError(f"{path}: not a pynn preprocessing file")
    try:
        return preprocessor_from_dict(data)
    except (ValueError, TypeError) as exc:
        raise CliError(f"{path}: damaged preprocessing file ({one_line(exc)})") from None


def save_preprocessing(model_path: str, pre: Preprocessor) -> str:
    """Writes `pre` beside the model in `model_path`; returns the file's path."""
    path = preprocessing_path(model_path)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(pre.to_dict(), f, indent=1)
    return path


def task_of(model: Model, pre: Preprocessor | None) -> Task:
    """The preprocessing's task or, without one, the task the model's loss implies."""
    if pre is not None:
        return pre.task
    kind = getattr(model.loss, "kind", "")
    return "classification" if kind.endswith("crossentropy") else "regression"


def epoch_timer() -> tuple[Callback, list[float]]:
    """A callback timing each epoch, and the list it appends the seconds to."""
    from pynn.callbacks import Callback

    times: list[float] = []

    class EpochTimer(Callback):
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            times.append(time.perf_counter() - self._start)

    return EpochTimer(), times


def cosine_schedule(base_lr: float, epochs: int) -> Callback:
    """Epoch e (from 0) trains at base_lr * (1 + cos(pi * e / epochs)) / 2."""
    from pynn.callbacks import LearningRateScheduler

    # The full rate first, a small one last: averaging out the last epochs' noise is what
    # lifts test accuracy.
    return LearningRateScheduler(
        lambda epoch: base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)))
