"""CSVLogger: stream each epoch's logs to a CSV file."""
from __future__ import annotations

import collections.abc
import csv
import os
from typing import Any

import numpy as np

from pynn.callbacks.callback import Callback


class CSVLogger(Callback):
    """Writes one CSV row per epoch: the epoch index (0-based) then every logged quantity.

    Columns are "epoch" followed by the first epoch's log keys in sorted order; when that epoch
    has no validation entries, matching "val_<name>" columns are added anyway (filled with
    "NA") so files from runs with and without validation line up, as in Keras.

    Args:
        filename: path of the CSV file.
        separator: one character separating fields. Defaults to ",".
        append: append to an existing file (writing the header only if the file is empty)
            instead of overwriting it.

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[pynn.callbacks.CSVLogger("training.log")])
    ```
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError("CSVLogger: expected filename to be a str or path-like object. "
                            f"Received: filename={filename!r}")
        if not isinstance(separator, str) or len(separator) != 1 or separator in "\"\r\n":
            raise ValueError("CSVLogger: expected separator to be a single character other "
                             f"than a quote or newline. Received: separator={separator!r}")
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self.writer = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.append:
            mode = "a"
            if os.path.exists(self.filename):
                with open(self.filename, encoding="utf-8") as f:
                    self.append_header = not f.readline()
        else:
            mode = "w"
            self.append_header = True
        self._close()
        self.csv_file = open(self.filename, mode, newline="", encoding="utf-8")
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
        if self.writer is None:
            sep = self.sep

            class _Dialect(csv.excel):
                delimiter = sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys,
                                         dialect=_Dialect, extrasaction="ignore")
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((k, _cell(logs.get(k, "NA"))) for k in self.keys)
        self.writer.writerow(row)
        # Flush each row so the file is useful while training runs (and after a crash).
        self.csv_file.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._close()
        self.writer = None

    def _close(self):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()


def _cell(value):
    if isinstance(value, str):
        return value
    if isinstance(value, collections.abc.Iterable) and not (
            isinstance(value, np.ndarray) and value.ndim == 0):
        return f'"[{", ".join(map(str, value))}]"'
    return value
