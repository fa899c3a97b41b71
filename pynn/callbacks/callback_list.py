"""CallbackList: the single object the training loop calls, fanning each event out."""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from pynn.callbacks.callback import Callback
from pynn.callbacks.history import History
from pynn.callbacks.progbar_logger import ProgbarLogger

if TYPE_CHECKING:
    from pynn.models.model import Model


def pythonify_logs(logs) -> dict:
    """Returns a fresh dict with the keys sorted and scalar values as Python floats.

    A copy per event keeps callbacks that add entries (e.g. "learning_rate") from writing into
    the caller's dict; the same copy is shared by all callbacks of that event, as in Keras, so
    later callbacks (History, the progress bar) see what earlier ones added.
    """
    result = {}
    for key, value in sorted((logs or {}).items()):
        if isinstance(value, np.ndarray) and value.size == 1:
            value = float(value.reshape(()))
        elif isinstance(value, (numbers.Real, np.generic)) and not isinstance(value, bool):
            try:
                value = float(value)
            except (TypeError, ValueError):
                pass
        result[key] = value
    return result


class CallbackList(Callback):
    """Holds the callbacks of one `fit`/`evaluate`/`predict` call and forwards every hook.

    Args:
        callbacks: None, a `Callback`, or a list/tuple of them.
        add_history: append a `History` unless the list already holds one.
        add_progbar: append a `ProgbarLogger` unless the list already holds one.
        model: the model, given to every callback through `set_model` (and `model.history`
            is pointed at the `History`).
        **params: run parameters (`verbose`, `epochs`, `steps`) given to every callback
            through `set_params`.
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None,
                 **params):
        super().__init__()
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, Callback):
            callbacks = [callbacks]
        elif not isinstance(callbacks, (list, tuple)):
            raise TypeError("callbacks: expected None, a Callback or a list of Callback "
                            f"objects. Received: {type(callbacks).__name__}")
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks[{i}]: expected an instance of "
                                f"pynn.callbacks.Callback. Received: {cb!r} "
                                f"({type(cb).__name__})")
        self.callbacks = list(callbacks)
        self._history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        self._progbar = next((cb for cb in self.callbacks if isinstance(cb, ProgbarLogger)),
                             None)
        # Defaults go last so user callbacks that edit logs (learning_rate, ...) run first.
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)
        self.set_model(model)
        self.set_params(params)

    @property
    def history(self) -> History | None:
        """The `History` callback in the list (None if there is none); what `fit` returns."""
        return self._history

    def append(self, callback: Callback) -> None:
        if not isinstance(callback, Callback):
            raise TypeError("callback: expected an instance of pynn.callbacks.Callback. "
                            f"Received: {type(callback).__name__}")
        self.callbacks.append(callback)

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params
        if params:
            for cb in self.callbacks:
                cb.set_params(params)

    def set_model(self, model: Model | None) -> None:
        if model is None:
            return
        super().set_model(model)
        if self._history is not None:
            model.history = self._history
        for cb in self.callbacks:
            cb.set_model(model)

    def _call(self, hook, *args, logs=None):
        logs = pythonify_logs(logs)
        for cb in self.callbacks:
            getattr(cb, hook)(*args, logs)

    def on_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_batch_begin", batch, logs=logs)

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_batch_end", batch, logs=logs)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_train_batch_begin", batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_train_batch_end", batch, logs=logs)

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_test_batch_begin", batch, logs=logs)

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_test_batch_end", batch, logs=logs)

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_predict_batch_begin", batch, logs=logs)

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_predict_batch_end", batch, logs=logs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._call("on_epoch_end", epoch, logs=logs)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._call("on_train_begin", logs=logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._call("on_train_end", logs=logs)

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._call("on_test_begin", logs=logs)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self._call("on_test_end", logs=logs)

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._call("on_predict_begin", logs=logs)

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        self._call("on_predict_end", logs=logs)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)
