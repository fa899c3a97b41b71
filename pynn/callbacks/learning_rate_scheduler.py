"""LearningRateScheduler: set the learning rate from a function of the epoch."""
from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

from pynn.callbacks.callback import Callback, print_msg
from pynn.callbacks.monitor_callback import check_count


def _takes_two_args(fn) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: assume the Keras API
        return True
    positional = [p for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    has_varargs = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
    return has_varargs or len(positional) >= 2


class LearningRateScheduler(Callback):
    """At the start of every epoch, sets the learning rate to `schedule(epoch, lr)`.

    Args:
        schedule: function of the epoch index (0-based) and the current learning rate
            (a float) returning the new learning rate; a one-argument `schedule(epoch)` is
            accepted too.
        verbose: 0 silent, 1 prints the rate set at each epoch.

    The learning rate in force is written into the epoch's logs as "learning_rate".

    Example:

    ```python
    def schedule(epoch, lr):
        return lr if epoch < 10 else lr * 0.9

    model.fit(x, y, epochs=15, callbacks=[pynn.callbacks.LearningRateScheduler(schedule)])
    ```
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError("LearningRateScheduler: expected schedule to be a function "
                            f"(epoch, lr) -> lr. Received: schedule={schedule!r}")
        self.schedule = schedule
        self.verbose = check_count(verbose, "verbose", "LearningRateScheduler")
        self._two_args = _takes_two_args(schedule)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or not hasattr(optimizer, "learning_rate"):
            raise ValueError("LearningRateScheduler: the model's optimizer must have a "
                             "`learning_rate` attribute (is the model compiled?)")
        lr = float(optimizer.learning_rate)
        new_lr = self.schedule(epoch, lr) if self._two_args else self.schedule(epoch)
        if isinstance(new_lr, bool) or not isinstance(new_lr, numbers.Real) \
                or not math.isfinite(new_lr) or new_lr < 0:
            raise ValueError("LearningRateScheduler: the schedule must return a finite, "
                             f"non-negative float. Received: {new_lr!r} at epoch {epoch}")
        optimizer.learning_rate = float(new_lr)
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                      f"{float(new_lr)}.")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)
