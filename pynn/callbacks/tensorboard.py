"""TensorBoard: write training curves (and weight histograms) for TensorBoard to display."""
from __future__ import annotations

import numbers
import os
import time
from typing import Any

import numpy as np

from pynn.callbacks.callback import Callback
from pynn.callbacks.monitor_callback import check_count


def _tensorboard_modules():
    """The `tensorboard` package's event writer and protocol buffers (imported lazily)."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as exc:
        raise ImportError("pynn.callbacks.TensorBoard writes its event files with the "
                          "`tensorboard` package, which is not installed: "
                          "pip install 'pynn[tensorboard]' (or pip install tensorboard)"
                          ) from exc
    return Event, Summary, HistogramProto, EventFileWriter


class _Writer:
    """Scalars and histograms into one run folder's event file."""

    def __init__(self, logdir: str):
        self._Event, self._Summary, self._Histogram, writer_cls = _tensorboard_modules()
        self._writer = writer_cls(logdir)

    def _add(self, value: Any, step: int) -> None:
        summary = self._Summary(value=[value])
        self._writer.add_event(self._Event(wall_time=time.time(), step=int(step),
                                           summary=summary))

    def scalar(self, tag: str, value: Any, step: int) -> None:
        self._add(self._Summary.Value(tag=tag, simple_value=float(value)), step)

    def histogram(self, tag: str, values: np.ndarray, step: int, buckets: int = 30) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            return
        counts, edges = np.histogram(v, bins=buckets)
        histo = self._Histogram(min=float(v.min()), max=float(v.max()), num=float(v.size),
                                sum=float(v.sum()), sum_squares=float(np.dot(v, v)),
                                bucket_limit=[float(e) for e in edges[1:]],
                                bucket=[float(c) for c in counts])
        self._add(self._Summary.Value(tag=tag, histo=histo), step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class TensorBoard(Callback):
    """Writes logs for TensorBoard (Keras 3's callback): per-epoch loss, metrics and learning
    rate, optionally per-batch values and weight histograms. View them with
    ``tensorboard --logdir <log_dir>``.

    Training values go to `log_dir/train`, validation values to `log_dir/validation`, under
    Keras's tags: `epoch_loss`, `epoch_<metric>`, `epoch_learning_rate` (step = epoch index),
    `batch_<name>` (step = global batch count) and `evaluation_<name>_vs_iterations` after
    `evaluate(..., callbacks=[tb])` (step = optimizer iterations). Histograms are tagged
    `<weight path>/histogram`.

    The event files are written with the `tensorboard` package's event-file writer; install
    it with ``pip install 'pynn[tensorboard]'`` (an ImportError says so when it is missing).

    Args:
        log_dir: the folder of the run's logs.
        histogram_freq: write a histogram of every weight each `histogram_freq` epochs
            (0: never).
        update_freq: "epoch" (scalars once per epoch), "batch" or an integer N (also write
            the running `batch_*` values every N batches).
        write_steps_per_second: also log `epoch_steps_per_second`.
        write_graph, write_images, profile_batch, embeddings_freq, embeddings_metadata:
            accepted for Keras compatibility and not used (pynn has no TensorFlow graph,
            profiler or embedding projector to write); profile_batch must stay 0.

    Example:

    ```python
    model.fit(x, y, epochs=10, validation_split=0.1,
              callbacks=[pynn.callbacks.TensorBoard("logs/run1", histogram_freq=1)])
    ```
    """

    def __init__(self, log_dir: str | os.PathLike[str] = "logs", histogram_freq: int = 0,
                 write_graph: bool = True, write_images: bool = False,
                 write_steps_per_second: bool = False, update_freq: str | int = "epoch",
                 profile_batch: int = 0, embeddings_freq: int = 0,
                 embeddings_metadata: Any = None):
        super().__init__()
        _tensorboard_modules()   # fail now, with the install hint, rather than mid-fit
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"TensorBoard: expected log_dir to be a path. Received: "
                            f"log_dir={log_dir!r}")
        histogram_freq = check_count(histogram_freq, "histogram_freq", "TensorBoard")
        check_count(embeddings_freq, "embeddings_freq", "TensorBoard")
        if update_freq not in ("epoch", "batch") and (
                isinstance(update_freq, bool) or not isinstance(update_freq, numbers.Integral)
                or update_freq < 1):
            raise ValueError(f"TensorBoard: expected update_freq to be 'epoch', 'batch' or a "
                             f"positive integer. Received: update_freq={update_freq!r}")
        if profile_batch:
            raise ValueError(f"TensorBoard: profiling is not available in pynn; "
                             f"profile_batch must be 0. Received: profile_batch={profile_batch!r}")
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = int(histogram_freq)
        self.update_freq = 1 if update_freq == "batch" else update_freq
        # batches between batch_* values; None: per epoch only
        self._every: int | None = None if update_freq == "epoch" else int(self.update_freq)
        self.write_steps_per_second = bool(write_steps_per_second)
        self.write_graph, self.write_images = write_graph, write_images
        self.embeddings_freq, self.embeddings_metadata = embeddings_freq, embeddings_metadata
        self._writers: dict[str, _Writer] = {}
        self._global_train_batch = 0
        self._epoch_start = 0.0
        self._epoch_start_iterations = 0
        self._in_fit = False

    def _writer(self, run: str) -> _Writer:
        if run not in self._writers:
            self._writers[run] = _Writer(os.path.join(self.log_dir, run))
        return self._writers[run]

    def _iterations(self) -> int:
        opt = getattr(self.model, "optimizer", None)
        return int(opt.iterations) if opt is not None else 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._global_train_batch = 0
        self._in_fit = True

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._global_train_batch += 1
        if self._every is None or self._global_train_batch % self._every:
            return
        writer = self._writer("train")
        for name, value in (logs or {}).items():
            if isinstance(value, numbers.Real):
                writer.scalar(f"batch_{name}", value, self._global_train_batch)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_start_iterations = self._iterations()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        opt = getattr(self.model, "optimizer", None)
        if opt is not None:
            train["learning_rate"] = float(opt.learning_rate)
        if self.write_steps_per_second:
            elapsed = max(time.perf_counter() - self._epoch_start, 1e-12)
            train["steps_per_second"] = (self._iterations() - self._epoch_start_iterations) \
                / elapsed
        for run, values in (("train", train), ("validation", val)):
            if not values:
                continue
            writer = self._writer(run)
            for name, value in values.items():
                if isinstance(value, numbers.Real):
                    writer.scalar(f"epoch_{name}", value, epoch)
            writer.flush()
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._log_weights(epoch)

    def _log_weights(self, epoch: int) -> None:
        from pynn.models.state import get_weights_by_path

        writer = self._writer("train")
        for path, value in get_weights_by_path(self.model).items():
            writer.histogram(f"{path}/histogram", value, epoch)
        writer.flush()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if not logs:
            return
        writer = self._writer("validation")
        step = self._iterations()
        for name, value in logs.items():
            if isinstance(value, numbers.Real):
                writer.scalar(f"evaluation_{name}_vs_iterations", value, step)
        writer.flush()
        if not self._in_fit:   # a standalone evaluate: nothing more will be written
            self._close()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = False
        self._close()

    def _close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
