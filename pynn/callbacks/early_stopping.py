"""EarlyStopping: stop `fit` once a monitored quantity stops improving."""
from __future__ import annotations

import warnings
from typing import Any

from pynn.callbacks.callback import print_msg
from pynn.callbacks.monitor_callback import MonitorCallback, check_count, check_real


class EarlyStopping(MonitorCallback):
    """Stops training when a monitored quantity has stopped improving.

    At the end of each epoch the monitored value is compared with the best so far; after
    `patience` epochs without an improvement of at least `min_delta`, `model.stop_training` is
    set and `fit` ends after that epoch.

    Args:
        monitor: logged quantity to watch. Defaults to "val_loss".
        min_delta: smallest absolute change that counts as an improvement. Defaults to 0.
        patience: epochs without improvement before stopping. Defaults to 0.
        verbose: 0 silent, 1 prints a message when stopping or restoring weights.
        mode: "auto", "min" or "max". "auto" maximises accuracy-like names and minimises
            loss-like names.
        baseline: if given, training stops unless the quantity beats it within `patience`
            epochs; the epoch counter only resets on epochs that beat both the best value and
            the baseline.
        restore_best_weights: at the end of training, set the model's weights back to those
            of the best epoch (whether or not training stopped early).
        start_from_epoch: number of warm-up epochs not monitored at all.

    Example:

    ```python
    stop = pynn.callbacks.EarlyStopping(monitor="loss", patience=3)
    history = model.fit(x, y, epochs=100, callbacks=[stop], verbose=0)
    ```
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta=min_delta)
        owner = "EarlyStopping"
        self.patience = check_count(patience, "patience", owner)
        self.verbose = check_count(verbose, "verbose", owner)
        self.baseline = check_real(baseline, "baseline", owner, allow_none=True)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = check_count(start_from_epoch, "start_from_epoch", owner)
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # Something to restore even if no epoch ever improves (e.g. against a baseline).
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch

        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # The wait restarts only on an epoch that beats the baseline too; an improving
            # epoch never stops training, even short of the baseline (Keras 3).
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return

        # epoch > 0: the first monitored epoch is never a reason to stop (Keras 3).
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print_msg(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print_msg("Restoring model weights from the end of the best epoch: "
                          f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs: dict[str, Any] | None) -> Any:
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs)}",
                          stacklevel=3)
        return value
