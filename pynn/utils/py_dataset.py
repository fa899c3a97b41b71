"""`PyDataset`: Keras 3's base class for data served batch by batch from Python code."""
from __future__ import annotations

import numbers
from typing import Any

__all__ = ["PyDataset"]


class PyDataset:
    """Base class for a dataset that builds each batch on request (Keras's `PyDataset`).

    Subclass it and define `__len__` (batches per epoch) and `__getitem__(index)` returning
    batch `index` as `(x, y)` or `(x, y, sample_weight)` (or `x` alone for `predict`);
    optionally `on_epoch_end` (e.g. to reshuffle) and `on_epoch_begin`. Pass an instance to
    `fit`, `evaluate` or `predict` instead of arrays: only one batch is in memory at a time.

    With fit's ``shuffle=True`` (the default) the batches of a dataset with a length are
    requested in a new order each epoch (``random.Random(epoch)``), as Keras does; pass
    ``shuffle=False`` to get them in index order.

    Args:
        workers, use_multiprocessing, max_queue_size: accepted for Keras compatibility. pynn
            requests the batches one after another in the calling thread (each training step
            already uses every core), so these have no effect.

    Call ``super().__init__(**kwargs)`` from your `__init__`, as in Keras.

    Example:

    ```python
    class Squares(pynn.utils.PyDataset):
        def __init__(self, n, batch_size, **kwargs):
            super().__init__(**kwargs)
            self.n, self.batch_size = n, batch_size

        def __len__(self):
            return math.ceil(self.n / self.batch_size)

        def __getitem__(self, i):
            x = np.arange(i * self.batch_size, min(self.n, (i + 1) * self.batch_size),
                          dtype="float32")[:, None]
            return x, x ** 2

    model.fit(Squares(1000, 32), epochs=5)
    ```
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False,
                 max_queue_size: int = 10):
        for value, name in ((workers, "workers"), (max_queue_size, "max_queue_size")):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        self._workers = int(workers)
        self._use_multiprocessing = bool(use_multiprocessing)
        self._max_queue_size = int(max_queue_size)

    @property
    def workers(self) -> int:
        return getattr(self, "_workers", 1)

    @property
    def use_multiprocessing(self) -> bool:
        return getattr(self, "_use_multiprocessing", False)

    @property
    def max_queue_size(self) -> int:
        return getattr(self, "_max_queue_size", 10)

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index), "
                                  f"returning batch `index`")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__, the number of "
                                  f"batches per epoch")

    @property
    def num_batches(self) -> int | None:
        """Batches per epoch (`len(self)`), or None when `__len__` is not defined."""
        try:
            return len(self)
        except NotImplementedError:
            return None

    def on_epoch_begin(self) -> None:
        """Called at the start of each epoch."""

    def on_epoch_end(self) -> None:
        """Called at the end of each epoch (reshuffle here)."""
