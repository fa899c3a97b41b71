"""ReduceLROnPlateau: lower the learning rate when a monitored quantity stalls."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from pynn.callbacks.callback import print_msg
from pynn.callbacks.monitor_callback import MonitorCallback, check_count, check_real


class ReduceLROnPlateau(MonitorCallback):
    """Multiplies the learning rate by `factor` after `patience` epochs without improvement.

    Args:
        monitor: logged quantity to watch. Defaults to "val_loss".
        factor: multiplier applied to the learning rate, 0 < factor < 1. Defaults to 0.1.
        patience: epochs without improvement before reducing. Defaults to 10.
        verbose: 0 silent, 1 prints a message at each reduction.
        mode: "auto", "min" or "max".
        min_delta: smallest absolute change that counts as an improvement. Defaults to 1e-4.
        cooldown: epochs after a reduction during which no further reduction happens and the
            patience counter stays at zero.
        min_lr: lower bound on the learning rate. Defaults to 0.

    The current learning rate is written into the epoch's logs as "learning_rate".

    Example:

    ```python
    reduce_lr = pynn.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.2, patience=5,
                                                 min_lr=1e-5)
    model.fit(x, y, validation_split=0.1, epochs=50, callbacks=[reduce_lr])
    ```
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta=min_delta)
        owner = "ReduceLROnPlateau"
        factor = check_real(factor, "factor", owner)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"{owner}: expected 0 < factor < 1 (a factor >= 1 would not reduce "
                             f"the learning rate). Received: factor={factor!r}")
        self.factor = factor
        self.patience = check_count(patience, "patience", owner)
        self.verbose = check_count(verbose, "verbose", owner)
        self.cooldown = check_count(cooldown, "cooldown", owner)
        self.min_lr = check_real(min_lr, "min_lr", owner, minimum=0.0)
        self.cooldown_counter = 0
        self.wait = 0

    def _reset(self):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn("Learning rate reduction is conditioned on metric "
                          f"`{self.monitor}` which is not available. Available metrics are: "
                          f"{','.join(logs)}.", stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and self._reduce_lr(epoch):
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def _reduce_lr(self, epoch) -> bool:
        optimizer = self.model.optimizer
        old_lr = float(optimizer.learning_rate)
        # Compare in float32: an optimizer that stores the rate in float32 may hold min_lr as
        # a value a hair below or above the Python float.
        if old_lr <= np.float32(self.min_lr):
            return False
        new_lr = max(old_lr * self.factor, self.min_lr)
        optimizer.learning_rate = new_lr
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                      f"{new_lr}.")
        return True
