"""LambdaCallback: build a callback from plain functions."""
from __future__ import annotations

from pynn.callbacks.callback import Callback


class LambdaCallback(Callback):
    """A callback whose hooks are the functions given.

    Args:
        on_epoch_begin, on_epoch_end: called with `(epoch, logs)`.
        on_train_begin, on_train_end: called with `(logs)`.
        on_train_batch_begin, on_train_batch_end: called with `(batch, logs)`.
        **kwargs: any other hook (e.g. `on_test_end=...`, `on_predict_batch_end=...`) or
            attribute to set on the callback.

    Example:

    ```python
    print_batch = pynn.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: print(batch))
    model.fit(x, y, callbacks=[print_batch])
    ```
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        given = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end)
        for name in kwargs:
            if name.startswith("on_") and not callable(getattr(Callback, name, None)):
                raise TypeError(f"LambdaCallback: unknown hook {name!r}. Hooks are the "
                                "on_* methods of pynn.callbacks.Callback")
        given.update(kwargs)
        for name, fn in given.items():
            if fn is None:
                continue
            if name.startswith("on_") and not callable(fn):
                raise TypeError(f"LambdaCallback: expected {name} to be a function. "
                                f"Received: {name}={fn!r}")
            # An instance attribute shadows the empty method of the base class.
            setattr(self, name, fn)
