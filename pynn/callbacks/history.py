"""History: the record of every epoch's logs that `fit` returns."""
from __future__ import annotations

from typing import Any

from pynn.callbacks.callback import Callback


class History(Callback):
    """Records the logs of every epoch; `fit` adds one automatically and returns it.

    Attributes:
        history: dict mapping each logged name ("loss", "val_accuracy", ...) to the list of its
            values, one per epoch. Kept across several `fit` calls with the same object.
        epoch: list of the epoch indices (0-based) seen in the latest `fit`.
        params: the run's parameters (`verbose`, `epochs`, `steps`).
        model: the model trained.

    Example:

    ```python
    history = model.fit(x, y, epochs=5, validation_split=0.2)
    best = min(history.history["val_loss"])
    ```
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.epoch = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        # Point the model at the latest record so `model.history` is current even mid-fit.
        if self.model is not None:
            self.model.history = self
