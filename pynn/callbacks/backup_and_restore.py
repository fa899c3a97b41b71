"""BackupAndRestore: resume an interrupted `fit` where it stopped."""
from __future__ import annotations

import json
import numbers
import os
import shutil
import sys
from typing import Any

from pynn.callbacks.callback import Callback

_WEIGHT = "weights/"   # weight i of get_weights()
_SLOT = "optimizer/"   # slot k of engine parameter pid: "optimizer/<pid>/<k>"


class BackupAndRestore(Callback):
    """Backs up the training state so that a `fit` interrupted by an error, a kill or Ctrl-C
    resumes where it stopped when the same `fit` is run again (Keras 3's callback).

    The backup is one file, `backup_dir/latest.safetensors`, written atomically: the
    weights, the optimizer's state (step count, learning rate, moments) and the epoch to
    resume at. At the start of `fit`, an existing backup is loaded into the model and
    training continues from that epoch; the epochs already done are not repeated. With
    ``save_freq=N`` the backup is also taken every N batches; a resumed run then restarts the
    epoch during which the last backup was taken, from the weights of that backup.

    Args:
        backup_dir: folder for the backup files (created when needed). Use one folder per
            training job.
        save_freq: "epoch" (back up after every epoch) or a positive integer N (every N
            batches, counted across epochs).
        double_checkpoint: keep the previous backup too (`*.bkp`), and fall back to it when
            the latest one cannot be read (e.g. the machine died while writing it).
        delete_checkpoint: delete `backup_dir` once `fit` finishes normally (it is always
            kept when `fit` is interrupted).

    Example:

    ```python
    backup = pynn.callbacks.BackupAndRestore(backup_dir="/tmp/backup")
    model.fit(x, y, epochs=10, callbacks=[backup])   # interrupted at epoch 4 ...
    model.fit(x, y, epochs=10, callbacks=[backup])   # ... resumes at epoch 4
    ```
    """

    def __init__(self, backup_dir: str | os.PathLike[str], save_freq: str | int = "epoch",
                 double_checkpoint: bool = False, delete_checkpoint: bool = True):
        super().__init__()
        if not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir):
            raise ValueError(f"BackupAndRestore: expected backup_dir to be a non-empty path. "
                             f"Received: backup_dir={backup_dir!r}")
        if save_freq != "epoch" and (isinstance(save_freq, bool)
                                     or not isinstance(save_freq, numbers.Integral)
                                     or save_freq < 1):
            raise ValueError(f"BackupAndRestore: expected save_freq to be 'epoch' or a positive "
                             f"integer number of batches. Received: save_freq={save_freq!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self._every: int | None = None if save_freq == "epoch" else int(save_freq)
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._weights_path = os.path.join(self.backup_dir, "latest.safetensors")
        self._batches_since_save = 0
        self._last_batch = 0
        self._current_epoch = 0

    # --- restoring --------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._batches_since_save = 0
        self._last_batch = 0
        try:
            self._restore(self._weights_path)
        except (ValueError, OSError):
            if not (self.double_checkpoint and os.path.exists(self._weights_path + ".bkp")):
                raise
            self._restore(self._weights_path + ".bkp")

    def _restore(self, weights_path: str) -> None:
        import numpy as np

        from pynn.models import _safetensors

        if not os.path.exists(weights_path):
            return
        tensors, meta = _safetensors.read(weights_path)
        model = self.model
        n_weights = len(model.get_weights())
        try:
            # by position, as Keras's weight files: layer names may differ between processes
            model.set_weights([tensors[f"{_WEIGHT}{i}"] for i in range(n_weights)])
        except KeyError:
            raise ValueError(f"{weights_path}: the backup does not hold the {n_weights} weights "
                             f"of this model") from None
        opt = _safetensors.parse_json(meta.get("optimizer", "null"),
                                      f"{weights_path}: metadata 'optimizer'")
        if opt is not None and model.optimizer is not None:
            counts = opt.pop("slots")
            names = model.optimizer._slot_names(model._ensure_graph())
            if not isinstance(counts, list) or len(counts) != len(names):
                raise ValueError(f"{weights_path}: the optimizer state does not fit this model")
            slots = {name: [np.asarray(tensors[f"{_SLOT}{pid}/{k}"]) for k in range(count)]
                     for pid, (name, count) in enumerate(zip(names, counts))}
            model.optimizer.set_state({**opt, "slots": slots})
        info = _safetensors.parse_json(meta.get("training", "null"),
                                       f"{weights_path}: metadata 'training'")
        epoch = info.get("epoch") if isinstance(info, dict) else None
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"{weights_path}: expected training metadata {{'epoch': "
                             f"<non-negative int>, ...}}, got {info!r}")
        self._current_epoch = epoch
        self.model._initial_epoch = epoch

    # --- backing up -------------------------------------------------------------------------
    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._current_epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._current_epoch = epoch + 1
        self._last_batch = 0
        if self.save_freq == "epoch":
            self._save()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._every is None:
            return
        # batch indices restart at 0 each epoch: count batches, not indices
        added = batch + 1 if batch <= self._last_batch else batch - self._last_batch
        self._batches_since_save += added
        self._last_batch = batch
        if self._batches_since_save >= self._every:
            self._batches_since_save = 0
            self._save(batch)

    def _save(self, batch: int | None = None) -> None:
        from pynn.models import _safetensors

        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._weights_path):
            shutil.copyfile(self._weights_path, self._weights_path + ".bkp")
        tensors = {f"{_WEIGHT}{i}": w for i, w in enumerate(self.model.get_weights())}
        opt_meta = None
        if self.model.optimizer is not None and self.model.compiled:
            opt = self.model.optimizer.get_state()
            slots = list(opt.pop("slots").values())   # in engine parameter order
            for pid, arrays in enumerate(slots):
                for k, arr in enumerate(arrays):
                    tensors[f"{_SLOT}{pid}/{k}"] = arr
            opt_meta = {**opt, "slots": [len(a) for a in slots]}
        training = {"epoch": self._current_epoch,
                    "batch": self._last_batch if batch is None else batch}
        # atomic (temporary file, then rename): a kill mid-write leaves the previous backup
        _safetensors.write(self._weights_path, tensors, {"optimizer": json.dumps(opt_meta),
                                                         "training": json.dumps(training)})

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # fit calls on_train_end on Ctrl-C too, while the KeyboardInterrupt is being handled:
        # the backup is exactly what the next run needs then, so keep it
        interrupted = sys.exc_info()[0] is not None
        if self.delete_checkpoint and not interrupted and os.path.isdir(self.backup_dir):
            shutil.rmtree(self.backup_dir)
