"""The base class every callback derives from: one empty hook per event of fit/evaluate/predict."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pynn.models.model import Model


class Callback:
    """Base class for objects that react to events of `fit`, `evaluate` and `predict`.

    Subclass it and override the hooks you need; every hook does nothing by default. The
    training loop hands each callback the model (`set_model`) and the run's parameters
    (`set_params`: `verbose`, `epochs`, `steps`) before `on_train_begin`.

    `logs` are dicts of Python floats. In `on_train_batch_end` they hold the running averages of
    the loss and metrics over the epoch so far; in `on_epoch_end` they hold the epoch's values,
    plus `val_<name>` entries when there is validation data.

    Attributes:
        model: the model being trained (set by `set_model`).
        params: dict of the run's parameters (set by `set_params`).

    Example:

    ```python
    class PrintLoss(pynn.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            print(epoch, logs["loss"])

    model.fit(x, y, epochs=3, callbacks=[PrintLoss()])
    ```
    """

    def __init__(self):
        self.params = None
        self._model = None

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def set_model(self, model: Model) -> None:
        self._model = model

    @property
    def model(self) -> Any:
        # (Any: the model being trained, None before set_model; hooks use it without a check)
        return self._model

    # Batch hooks. The generic `on_batch_*` pair is what `on_train_batch_*` forwards to, so a
    # callback written against the older names still sees training batches (as in Keras).
    def on_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    # Epoch hooks (fit only).
    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    # Run hooks.
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        pass


def print_msg(message: str) -> None:
    """Prints a callback's message to the current sys.stdout (looked up late so capture works)."""
    stream = sys.stdout
    stream.write(message + "\n")
    stream.flush()
