"""A stand-in model and a scripted training loop for the callback tests.

The fake offers exactly the protocol pynn's model gives callbacks (stop_training, get/set
weights, save/save_weights, optimizer.learning_rate), and `run_fit` calls the CallbackList
hooks in the order `Sequential.fit` does, with logs supplied by the test instead of computed.
"""
from __future__ import annotations

import json
import os

import numpy as np

from pynn.callbacks import CallbackList


class FakeOptimizer:
    def __init__(self, learning_rate):
        self.learning_rate = learning_rate


class FakeModel:
    def __init__(self, learning_rate=0.01):
        self.stop_training = False
        self.optimizer = FakeOptimizer(learning_rate)
        self.weights = [np.zeros(2), np.zeros(1)]
        self.saves = []  # (method name, path) in call order

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w, copy=True) for w in weights]

    def _write(self, kind, filepath):
        self.saves.append((kind, filepath))
        tmp = filepath + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"kind": kind, "weights": [w.tolist() for w in self.weights]}, f)
        os.replace(tmp, filepath)

    def save(self, filepath):
        self._write("save", filepath)

    def save_weights(self, filepath):
        self._write("save_weights", filepath)


def read_saved(filepath):
    with open(filepath) as f:
        return json.load(f)


def run_fit(model, callbacks, epoch_logs, steps=2, batch_logs=None, verbose=0,
            add_learning_rate=True):
    """Runs len(epoch_logs) epochs of `steps` batches, calling the hooks as fit does.

    "Training" sets every weight to the epoch index + 1 during the epoch, so a test can tell
    which epoch's weights a model holds. batch_logs(epoch, batch) gives each batch's logs.
    Returns (history, number of epochs run).
    """
    cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=model,
                       verbose=verbose, epochs=len(epoch_logs), steps=steps)
    model.stop_training = False
    cbs.on_train_begin()
    epochs_run = 0
    for epoch, logs in enumerate(epoch_logs):
        cbs.on_epoch_begin(epoch)
        for batch in range(steps):
            cbs.on_train_batch_begin(batch)
            model.weights = [np.full_like(w, epoch + 1) for w in model.weights]
            blogs = batch_logs(epoch, batch) if batch_logs else {"loss": logs.get("loss", 0.0)}
            cbs.on_train_batch_end(batch, blogs)
            if model.stop_training:
                break
        logs = dict(logs)
        if add_learning_rate:
            logs["learning_rate"] = float(model.optimizer.learning_rate)
        cbs.on_epoch_end(epoch, logs)
        epochs_run += 1
        if model.stop_training:
            break
    cbs.on_train_end()
    return cbs.history, epochs_run


def losses(values, key="loss"):
    """Epoch logs holding one monitored quantity."""
    return [{key: float(v)} for v in values]
