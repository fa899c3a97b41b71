"""ProgbarLogger: drives the progress bar from the training loop's events."""
from __future__ import annotations

import sys
from typing import Any, TextIO

from pynn.callbacks.callback import Callback
from pynn.utils.progbar import Progbar, resolve_verbose


class ProgbarLogger(Callback):
    """Prints progress of `fit`, `evaluate` and `predict` with a `Progbar`.

    `fit` adds one when `verbose != 0`. It reads `verbose` ("auto", 0, 1, 2), `epochs` and
    `steps` (batches per epoch, or None if unknown) from the run's parameters. During `fit` it
    prints "Epoch i/n" (when n > 1) and one bar per epoch whose final line shows the epoch's
    logs, validation included; the validation pass inside `fit` draws no bar of its own.

    Batch logs are expected to be running averages over the epoch (as in Keras 3), so they are
    shown as given rather than averaged again.

    Args:
        stream: text stream written to; None means the current sys.stdout.
    """

    def __init__(self, stream=None):
        super().__init__()
        self._stream = stream
        self.seen = 0
        self.progbar = None
        self.target = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    @property
    def stream(self) -> TextIO:
        return sys.stdout if self._stream is None else self._stream

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self.verbose = resolve_verbose(params.get("verbose", 1), self.stream)
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Validation inside fit is silent: its results appear on the epoch's line.
        self._called_in_fit = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._called_in_fit = False
        if self.progbar is not None and self.progbar.line_open:
            # Training ended mid-epoch (stop_training at a batch, Ctrl-C): end the live line
            # so whatever is printed next starts on a line of its own.
            stream = self.stream
            stream.write("\n")
            stream.flush()
            self.progbar.line_open = False

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self._called_in_fit:
            self._reset_progbar()
            self._maybe_init_progbar()

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset_progbar()
        self._maybe_init_progbar()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._reset_progbar()
        self._maybe_init_progbar()
        if self.verbose and self.epochs > 1:
            stream = self.stream
            stream.write(f"Epoch {epoch + 1}/{self.epochs}\n")
            stream.flush()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._update_progbar(batch, None)  # predictions are not metrics

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._finalize_progbar(logs)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        self._finalize_progbar(logs)

    def _reset_progbar(self):
        self.seen = 0
        self.progbar = None

    def _maybe_init_progbar(self):
        if self.progbar is None:
            self.progbar = Progbar(target=self.target, verbose=self.verbose,
                                   unit_name="step", stateless_metrics=set(),
                                   stream=self._stream)

    def _update_progbar(self, batch, logs):
        self._maybe_init_progbar()
        self.seen = batch + 1
        if self.verbose == 1:
            self.progbar.update(self.seen, list((logs or {}).items()), finalize=False)

    def _finalize_progbar(self, logs):
        self._maybe_init_progbar()
        if self.target is None:
            # Unknown length (first epoch of a generator): the count seen is the length.
            self.target = self.seen
            self.progbar.target = self.target
        self.progbar.update(self.target, list((logs or {}).items()), finalize=True)
