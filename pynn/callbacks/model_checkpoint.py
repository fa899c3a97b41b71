"""ModelCheckpoint: save the model or its weights during training."""
from __future__ import annotations

import numbers
import os
import warnings
from typing import Any

from pynn.callbacks.callback import print_msg
from pynn.callbacks.monitor_callback import MonitorCallback, check_count, check_real


class ModelCheckpoint(MonitorCallback):
    """Saves the model (`model.save`) or its weights (`model.save_weights`) during `fit`.

    Args:
        filepath: str or path-like. May hold `str.format` fields filled at save time:
            `{epoch}` (1-based, so the first file is epoch 1; format specs such as
            `{epoch:02d}` work), `{batch}` (1-based, when saving every `save_freq` batches)
            and any key of the logs, e.g. `"ckpt-{epoch:02d}-{val_loss:.3f}.safetensors"`.
        monitor: logged quantity compared when `save_best_only=True`. Defaults to "val_loss".
        verbose: 0 silent, 1 prints a message at each save decision.
        save_best_only: save only when the monitored quantity improves on the best so far
            (a filepath without fields then always holds the best model).
        save_weights_only: save with `model.save_weights` instead of `model.save`.
            The path's suffix picks the format: `.keras` (Keras 3's archive) or
            `.safetensors` for the model, `.weights.h5` or `.safetensors` for weights.
        mode: "auto", "min" or "max", the direction of improvement for `save_best_only`.
        save_freq: "epoch" to save at the end of every epoch, or a positive integer N to save
            every N training batches (counted across epochs).
        initial_value_threshold: a value the monitored quantity must beat before the first
            save when `save_best_only=True`.

    The model's save methods write atomically, so an interrupted run never leaves a truncated
    checkpoint behind.

    Example:

    ```python
    ckpt = pynn.callbacks.ModelCheckpoint("best.keras", monitor="val_accuracy",
                                          save_best_only=True)
    model.fit(x, y, epochs=10, validation_split=0.1, callbacks=[ckpt])
    ```
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        owner = "ModelCheckpoint"
        check_real(initial_value_threshold, "initial_value_threshold", owner, allow_none=True)
        super().__init__(monitor, mode, initial_value_threshold)
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"{owner}: expected filepath to be a str or path-like object. "
                            f"Received: filepath={filepath!r}")
        self.filepath = os.fspath(filepath)
        if isinstance(self.filepath, bytes) or not self.filepath:
            raise ValueError(f"{owner}: expected filepath to be a non-empty text path. "
                             f"Received: filepath={filepath!r}")
        if save_freq != "epoch" and (isinstance(save_freq, bool)
                                     or not isinstance(save_freq, numbers.Integral)
                                     or save_freq < 1):
            raise ValueError(f"{owner}: expected save_freq to be 'epoch' or a positive integer "
                             f"number of batches. Received: save_freq={save_freq!r}")
        self.verbose = check_count(verbose, "verbose", owner)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.save_freq = save_freq
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = None
        self._current_epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._current_epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._should_save_on_batch(batch):
            self._save_model(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs)

    def _should_save_on_batch(self, batch) -> bool:
        if self.save_freq == "epoch":
            return False
        # Batch indices restart at 0 each epoch; count batches, not indices.
        if self._last_batch_seen is None or batch <= self._last_batch_seen:
            added = batch + 1
        else:
            added = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += added
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _get_file_path(self, epoch, batch, logs) -> str:
        fields = dict(logs or {})
        fields["epoch"] = epoch + 1
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as exc:
            raise KeyError(f'ModelCheckpoint: failed to format filepath "{self.filepath}": '
                           f"{exc} is not a logged quantity. Available: "
                           f"{', '.join(sorted(fields))}") from None
        except (ValueError, IndexError) as exc:
            raise ValueError(f'ModelCheckpoint: failed to format filepath "{self.filepath}": '
                             f"{exc}") from None

    def _should_save(self, epoch, logs, filepath) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                print_msg(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.",
                          stacklevel=4)
            return True
        best_str = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print_msg(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_str} to "
                          f"{current:.5f}, saving model to {filepath}")
            self.best = current
            return True
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_str}")
        return False

    def _save_model(self, epoch, batch, logs):
        if self.save_best_only and self.monitor_op is None:
            self._set_monitor_op()  # fail on the first save, not on the first improvement
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save(epoch, logs, filepath):
            return
        if os.path.isdir(filepath):
            raise IsADirectoryError(f"ModelCheckpoint: filepath {filepath!r} is an existing "
                                    "directory; give the path of a file to write")
        dirname = os.path.dirname(filepath)
        if dirname:
            os.makedirs(dirname, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(filepath)
        else:
            self.model.save(filepath)
