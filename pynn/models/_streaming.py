"""fit / evaluate / predict on data that arrives batch by batch: a `pynn.utils.Dataset`, a
`PyDataset` (or any object with `__len__`, `__getitem__` and `on_epoch_end`, such as a Keras
`PyDataset`), or a Python generator / iterator.

The in-memory path of `Trainer.fit` (arrays, shuffled by index inside the engine) is not used
here and is unchanged. Each batch is converted and checked the way arrays are, then runs as
one engine step on exactly that batch. Only one batch is held at a time.

Keras's rules: each batch is `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)` (a list counts
as a tuple); `y` and `sample_weight` must not be passed to fit/evaluate alongside such data;
a generator is drawn from across epochs, `steps_per_epoch` batches per epoch (all of them
when None), and training stops with a warning when it runs out.
"""
from __future__ import annotations

import itertools
import math
import random
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pynn.models.trainer import Trainer


def is_stream(x: Any) -> bool:
    """True for data the streaming path serves (not arrays, lists, tuples or dicts)."""
    if x is None or isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)):
        return False
    if hasattr(x, "__array__") or hasattr(x, "dtype"):
        return False   # array-likes (pandas, torch tensors) take the in-memory path
    if _is_sequence(x):
        return True
    return isinstance(x, Iterator) or hasattr(x, "__iter__")


def _is_sequence(x: Any) -> bool:
    from pynn.utils.py_dataset import PyDataset

    return isinstance(x, PyDataset) or (hasattr(x, "__getitem__") and hasattr(x, "__len__")
                                        and hasattr(x, "on_epoch_end"))


def unpack(batch: Any, what: str) -> tuple[Any, Any, Any]:
    """(x, y, sample_weight) of one batch."""
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        return batch, None, None
    if not 1 <= len(batch) <= 3:
        raise ValueError(f"{what}: a batch must be x, (x,), (x, y) or (x, y, sample_weight); "
                         f"got a tuple of {len(batch)}")
    x, y, sw = batch + (None,) * (3 - len(batch))
    return x, y, sw


class Source:
    """The batches of one `fit`/`evaluate`/`predict` input, epoch by epoch."""

    kind: str              # "dataset", "sequence" (PyDataset-like) or "iterator"
    length: int | None     # batches per pass, None when unknown

    def __init__(self, data: Any, what: str, shuffle: bool = False):
        from pynn.utils.dataset import Dataset

        self.data, self.what = data, what
        self.ran_out = False
        if isinstance(data, Dataset):
            if data.batch_size is None:
                raise ValueError(f"{what}: the Dataset is unbatched (batch_size=None); call "
                                 f".batch(n) on it first")
            self.kind, self.length = "dataset", len(data)
        elif _is_sequence(data):
            self.kind = "sequence"
            # num_batches is None for an endless PyDataset (no __len__)
            self.length = data.num_batches if hasattr(data, "num_batches") else len(data)
            self.shuffle = bool(shuffle) and self.length is not None
        else:
            self.kind, self.length = "iterator", None
            self._it: Iterator[Any] = iter(data)

    def peek(self) -> Any:
        """The first batch, without using it up (to build the model before training)."""
        if self.kind == "dataset":
            ds = self.data
            return ds._element(np.arange(min(ds.batch_size, ds.num_samples)), True)
        if self.kind == "sequence":
            return self.data[0]
        try:
            first = next(self._it)
        except StopIteration:
            raise ValueError(f"{self.what}: the generator yielded no batch") from None
        self._it = itertools.chain([first], self._it)
        return first

    def steps(self, requested: int | None) -> int | None:
        """Batches per epoch: `requested` (capped at the length when known), else the length
        (None: until a generator runs out)."""
        if requested is None:
            if self.length is None and self.kind == "sequence":
                raise ValueError(f"{self.what}: a PyDataset without __len__ needs "
                                 f"steps_per_epoch (or steps)")
            return self.length
        return requested if self.length is None else min(requested, self.length)

    def batches(self, epoch: int, steps: int | None) -> Iterator[Any]:
        """Up to `steps` batches of one epoch; sets `ran_out` when a generator ends early."""
        if self.kind == "dataset":
            yield from itertools.islice(iter(self.data), steps)
        elif self.kind == "sequence":
            seq = self.data
            if hasattr(seq, "on_epoch_begin"):
                seq.on_epoch_begin()
            order = list(range(self.length)) if self.length is not None else None
            if order is not None and self.shuffle:
                # Keras shuffles the order of a PyDataset's batches when fit's shuffle=True
                random.Random(epoch).shuffle(order)
            count = itertools.count() if steps is None else range(steps)
            for i in count:
                yield seq[order[i] if order is not None else i]
        else:
            taken = 0
            while steps is None or taken < steps:
                try:
                    batch = next(self._it)
                except StopIteration:
                    if steps is not None or taken == 0:
                        self.ran_out = True
                    return
                taken += 1
                yield batch

    def end_epoch(self) -> None:
        if self.kind == "sequence":
            self.data.on_epoch_end()


def _batch_arrays(model: Trainer, batch: Any, what: str, class_weight: Any = None,
                  need_targets: bool = True) -> tuple[list, list, Any, int]:
    x, y, sw = unpack(batch, what)
    xs = model._prepare_inputs(x, f"{what} (x of a batch)")
    n = xs[0].shape[0]
    if not need_targets:
        return xs, [], None, n
    if y is None:
        raise ValueError(f"{what}: a batch has no targets; yield (x, y) or "
                         f"(x, y, sample_weight)")
    ys = model._prepare_targets(y, n, f"{what} (y of a batch)")
    if class_weight is not None and sw is not None:
        raise ValueError("class_weight: cannot be combined with batches that carry their own "
                         "sample_weight")
    return xs, ys, model._prepare_sample_weight(sw, class_weight, ys, n), n


def _check_no_arrays(y: Any, sample_weight: Any, what: str) -> None:
    if y is not None:
        raise ValueError(f"y: not allowed when {what} is a dataset, PyDataset or generator "
                         f"(its batches carry the targets)")
    if sample_weight is not None:
        raise ValueError(f"sample_weight: not allowed when {what} is a dataset, PyDataset or "
                         f"generator (yield (x, y, sample_weight) batches instead)")


def _ensure_ready(model: Trainer, source: Source, what: str, class_weight: Any = None) -> None:
    """Builds the model (and its compiled graph) from the first batch when needed."""
    if model._inputs is None:
        _batch_arrays(model, source.peek(), what, class_weight)
    model._ready_to_step(what)


def run_evaluation(model: Trainer, source: Source, steps: int | None, cbl: Any = None,
                   epoch: int = 0) -> dict[str, float]:
    from pynn.layers.layer import _TRAINABLE_GENERATION
    from pynn.models.trainer import _Logs

    run = _Logs(model)
    need_out = run.needs_output
    for step, batch in enumerate(source.batches(epoch, steps)):
        if cbl is not None:
            cbl.on_test_batch_begin(step)
        xs, ys, sw, n = _batch_arrays(model, batch, source.what)
        if model._gen_seen != _TRAINABLE_GENERATION[0]:
            model._sync_trainable()
        total, losses, correct, outs = model._step(False, xs, ys, sw, None, need_out)
        run.update(total, losses, correct, n, outs, ys)
        if cbl is not None:
            cbl.on_test_batch_end(step, run.results())
    source.end_epoch()
    if run.rows == 0:
        if cbl is not None:
            raise ValueError(f"{source.what}: the data yielded no batch to evaluate on")
        return {}   # validation data that has run dry: no val_ entries this epoch
    return run.results(final=True)


def evaluate(model: Trainer, x: Any, y: Any, verbose: int, sample_weight: Any,
             steps: int | None, callbacks: Any) -> dict[str, float]:
    from pynn.callbacks import CallbackList

    _check_no_arrays(y, sample_weight, "x")
    source = Source(x, "x")
    _ensure_ready(model, source, "evaluate")
    nsteps = source.steps(steps)
    cbl = CallbackList(callbacks, add_progbar=verbose != 0, model=model, verbose=verbose,
                       epochs=1, steps=nsteps)
    cbl.on_test_begin()
    logs = run_evaluation(model, source, nsteps, cbl)
    cbl.on_test_end(logs)
    return logs


def predict(model: Trainer, x: Any, verbose: int, steps: int | None, callbacks: Any) -> Any:
    from pynn.callbacks import CallbackList

    source = Source(x, "x")
    if model._inputs is None:
        _batch_arrays(model, source.peek(), "x", need_targets=False)
    graph = model._predict_graph()
    nsteps = source.steps(steps)
    cbl = CallbackList(callbacks, add_progbar=verbose != 0, model=model, verbose=verbose,
                       epochs=1, steps=nsteps)
    cbl.on_predict_begin()
    parts: list[list[np.ndarray]] = [[] for _ in model._outputs]
    for step, batch in enumerate(source.batches(0, nsteps)):
        cbl.on_predict_batch_begin(step)
        xs, _, _, n = _batch_arrays(model, batch, "x", need_targets=False)
        outs = model._new_outputs(n)
        graph.predict(xs, outs, n)
        for acc, o in zip(parts, outs):
            acc.append(o)
        cbl.on_predict_batch_end(step, {"outputs": model._structure_outputs(outs)})
    source.end_epoch()
    cbl.on_predict_end()
    if not parts[0]:
        raise ValueError("x: the data yielded no batch to predict on")
    return model._structure_outputs([np.concatenate(p, axis=0) for p in parts])


def _validation(model: Trainer, validation_data: Any, validation_steps: int | None) -> Any:
    """("stream", Source, steps) or ("arrays", xs, ys, sw) or None."""
    if validation_data is None:
        return None
    if is_stream(validation_data):
        src = Source(validation_data, "validation_data")
        return ("stream", src, src.steps(validation_steps))
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("validation_data: expected (x_val, y_val), (x_val, y_val, "
                         "sample_weight_val), a Dataset, a PyDataset or a generator")
    xv = model._prepare_inputs(validation_data[0], "validation_data[0]")
    yv = model._prepare_targets(validation_data[1], xv[0].shape[0], "validation_data[1]")
    swv = None
    if len(validation_data) == 3 and validation_data[2] is not None:
        swv = model._prepare_sample_weight(validation_data[2], None, yv, xv[0].shape[0])
    return ("arrays", xv, yv, swv)


def _arrays_as_dataset(x: Any, y: Any, sample_weight: Any, batch_size: int,
                       shuffle: bool) -> Any:
    """Training arrays as a Dataset, for a fit whose validation data streams."""
    from pynn import _random
    from pynn.utils.dataset import Dataset

    if not isinstance(x, np.ndarray) or isinstance(y, (list, tuple, dict)):
        raise ValueError("validation_data: a dataset, PyDataset or generator for validation "
                         "needs x and y as single arrays, or x as a dataset too")
    parts = (x, y) if sample_weight is None else (x, y, sample_weight)
    seed = int(_random.generator().integers(2**32)) if shuffle else None
    return Dataset.from_arrays(parts, batch_size, shuffle, seed)


def fit(model: Trainer, x: Any, y: Any, batch_size: int, epochs: int, verbose: int,
        callbacks: Any, validation_split: float, validation_data: Any, shuffle: bool,
        class_weight: Any, sample_weight: Any, initial_epoch: int,
        steps_per_epoch: int | None, validation_steps: int | None,
        validation_batch_size: int | None, validation_freq: int) -> Any:
    """`Trainer.fit` for a Dataset, PyDataset or generator `x` (arguments already checked)."""
    from pynn.callbacks import CallbackList
    from pynn.layers.layer import _TRAINABLE_GENERATION
    from pynn.models.trainer import _Logs

    if not is_stream(x):
        x = _arrays_as_dataset(x, y, sample_weight, batch_size, shuffle)
    else:
        _check_no_arrays(y, sample_weight, "x")
    if validation_split:
        raise ValueError("validation_split: only supported for arrays; with a dataset, "
                         "PyDataset or generator pass validation_data")
    if class_weight is not None and not isinstance(class_weight, dict):
        raise TypeError(f"class_weight: expected a dict {{class: weight}}, got "
                        f"{type(class_weight).__name__}")
    from pynn.models.trainer import _positive_int

    steps_per_epoch = _positive_int(steps_per_epoch, "steps_per_epoch", allow_none=True)
    validation_steps = _positive_int(validation_steps, "validation_steps", allow_none=True)
    source = Source(x, "x", shuffle=shuffle)
    _ensure_ready(model, source, "fit", class_weight)
    val = _validation(model, validation_data, validation_steps)
    steps = source.steps(steps_per_epoch)
    cbl = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=model,
                       verbose=verbose, epochs=epochs, steps=steps)
    model.stop_training = False
    model._initial_epoch = None
    logs: dict[str, float] = {}
    warned = False
    cbl.on_train_begin()
    initial_epoch = model._initial_epoch or initial_epoch
    try:
        for epoch in range(initial_epoch, epochs):
            cbl.on_epoch_begin(epoch)
            run = _Logs(model)
            need_out = run.needs_output
            for step, batch in enumerate(source.batches(epoch, steps)):
                cbl.on_train_batch_begin(step)
                xs, ys, sw, n = _batch_arrays(model, batch, "x", class_weight)
                if model._gen_seen != _TRAINABLE_GENERATION[0]:
                    model._sync_trainable()
                total, losses, correct, outs = model._step(True, xs, ys, sw, None, need_out)
                run.update(total, losses, correct, n, outs, ys)
                logs = run.results()
                cbl.on_train_batch_end(step, logs)
                if model.stop_training:
                    break
            source.end_epoch()
            if run.rows == 0 and epoch == initial_epoch:
                raise ValueError("x: the data yielded no batch to train on")
            if source.ran_out:
                warnings.warn("x: the generator ran out of data; training stops here. Give "
                              "steps_per_epoch * epochs batches at least (or a generator that "
                              "repeats)", UserWarning, stacklevel=3)
                model.stop_training = True
                if run.rows == 0:
                    break
            epoch_logs = run.results(final=True)
            if not math.isfinite(epoch_logs.get("loss", 0.0)) and not warned:
                warned = True
                warnings.warn(f"training diverged: the loss is {epoch_logs['loss']} at epoch "
                              f"{epoch + 1}; lower the learning rate, or use "
                              f"pynn.callbacks.TerminateOnNaN", RuntimeWarning, stacklevel=3)
            if val is not None and (epoch + 1) % validation_freq == 0:
                if val[0] == "stream":
                    vlogs = run_evaluation(model, val[1], val[2], epoch=epoch)
                else:
                    vlogs = model._run_evaluation(val[1], val[2], val[3],
                                                  validation_batch_size or batch_size)
                epoch_logs.update({"val_" + k: v for k, v in vlogs.items()})
            cbl.on_epoch_end(epoch, epoch_logs)
            logs = epoch_logs
            if model.stop_training:
                break
    except KeyboardInterrupt:
        model.stop_training = True
        cbl.on_train_end(logs)
        raise
    cbl.on_train_end(logs)
    model.history = cbl.history
    return cbl.history
