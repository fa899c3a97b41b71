"""Sequential: a linear stack of layers, compiled to one C++ network."""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from pynn import _core, _random, layers as layers_mod, losses as losses_mod
from pynn import optimizers as optimizers_mod
from pynn.layers.layer import Layer, shape_tuple, unique_name
from pynn.layers.reshaping import InputLayer
from pynn.models._metrics import CLASSIFICATION_LOSSES, MetricSet


def _positive_int(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _verbose(value, resolve_auto):
    if value == "auto":
        from pynn.utils.progbar import resolve_verbose

        return resolve_verbose("auto") if resolve_auto else 0
    if isinstance(value, bool) or value not in (0, 1, 2):
        raise ValueError(f"verbose: expected 'auto', 0, 1 or 2, got {value!r}")
    return int(value)


class Sequential:
    """A linear stack of layers with Keras's training API.

    Example:
        >>> model = Sequential([Input((784,)), Dense(128, activation="relu"),
        ...                     Dense(10, activation="softmax")])
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...               metrics=["accuracy"])
        >>> history = model.fit(x_train, y_train, epochs=5, batch_size=128)
    """

    def __init__(self, layers=None, name=None, trainable=True):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name: expected a string, got {name!r}")
        self.name = name or unique_name("sequential")
        # False freezes every layer (as Keras's Model.trainable); takes effect at compile
        self.trainable = bool(trainable)
        self._layers: list[Layer] = []
        self._input_shape = None
        self._net = None
        self.optimizer = None
        self.loss = None
        self._metric_names_arg = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        if layers is not None:
            if isinstance(layers, Layer):
                layers = [layers]
            if not isinstance(layers, (list, tuple)):
                raise TypeError(f"layers: expected a list of layers, got {type(layers).__name__}")
            for layer in layers:
                self.add(layer)

    # --- structure --------------------------------------------------------------------------
    def add(self, layer):
        """Appends a layer (or an `Input`) to the stack."""
        if not isinstance(layer, Layer):
            raise TypeError(f"layer: expected a pynn.layers.Layer, got {layer!r}")
        if isinstance(layer, InputLayer):
            if self._layers or self._input_shape is not None:
                raise ValueError("Input must come first in a Sequential model")
            self._input_shape = layer.shape
            return
        owner = getattr(layer, "_owner", None)
        if (owner is not None and owner is not self) or any(layer is o for o in self._layers):
            # a layer's weights live in one model's compiled network: sharing it would
            # silently train one model and save the other
            raise ValueError(f"layer {layer.name!r} already belongs to a model; create a new "
                             f"layer (or copy its config with from_config)")
        layer._owner = self
        if not self._layers and self._input_shape is None and layer._input_shape_arg is not None:
            self._input_shape = layer._input_shape_arg
        if self._net is not None:
            # Adding to a built model rebuilds its network, keeping the existing weights.
            kept = self.get_weights()
            self._layers.append(layer)
            self._rebuild(kept)
        else:
            self._layers.append(layer)

    def pop(self):
        """Removes the last layer and returns it."""
        if not self._layers:
            raise TypeError("There are no layers in the model.")
        if self._net is None:
            layer = self._layers.pop()
            layer._owner = None
            return layer
        layer = self._layers.pop()
        layer._owner = None
        kept = [w for lay in self._layers for w in lay.get_weights()]
        layer.built, layer._net = False, None
        self._rebuild(kept)
        return layer

    def _rebuild(self, weights):
        """Rebuilds the network and writes `weights` to the first layers that had them."""
        for lay in self._layers:
            lay.built, lay._net = False, None
        self._net = None
        if not self._layers:
            return
        self.build()
        k = 0
        for lay in self._layers:
            count = len(lay._param_ids)
            if k + count <= len(weights):
                lay.set_weights(weights[k:k + count])
            k += count

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def built(self) -> bool:
        return self._net is not None

    def build(self, input_shape=None):
        """Creates the compiled network and the weights for inputs of `input_shape`
        (one sample's shape; a leading None batch axis is accepted)."""
        if input_shape is not None:
            input_shape = tuple(input_shape)
            if input_shape and input_shape[0] is None:
                input_shape = input_shape[1:]
            input_shape = shape_tuple(input_shape)
            if self._input_shape is not None and self._input_shape != input_shape:
                raise ValueError(f"input_shape: the model expects {self._input_shape}, got "
                                 f"{input_shape}")
            self._input_shape = input_shape
        if self._input_shape is None:
            raise ValueError("The model has no input shape yet: add an Input((features,)) "
                             "first, pass input_shape to the first layer, or call fit/predict")
        if not self._layers:
            raise ValueError("The model has no layers: add at least one layer")
        if self._net is not None:
            return
        net = _core.Network(math.prod(self._input_shape))
        shape = self._input_shape
        for layer in self._layers:
            shape = layer._build_into(net, shape)
        self._net = net
        self._output_shape = shape
        if self.compiled:
            self._attach_compile()

    @property
    def input_shape(self):
        return None if self._input_shape is None else (None,) + tuple(self._input_shape)

    @property
    def output_shape(self):
        self._maybe_build()
        return None if self._net is None else (None,) + tuple(self._output_shape)

    def _maybe_build(self):
        """Builds as soon as the input shape is known (as Keras does after an Input)."""
        if self._net is None and self._input_shape is not None and self._layers:
            self.build()

    def _require_built(self, what):
        self._maybe_build()
        if self._net is None:
            raise ValueError(f"{what}: the model is not built yet; call build(input_shape) or "
                             f"fit/predict first")

    # --- weights ----------------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        """Copies of every weight, layer by layer, in Keras's order."""
        self._maybe_build()
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        """Writes every weight (same order and shapes as `get_weights`)."""
        self._require_built("set_weights")
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights: expected a list of arrays, got {type(weights).__name__}")
        total = sum(len(layer._param_ids) for layer in self._layers)
        if len(weights) != total:
            raise ValueError(f"weights: expected {total} arrays, got {len(weights)}")
        k = 0
        for layer in self._layers:  # validate everything before writing anything
            n = len(layer._param_ids)
            for j, (w, shape) in enumerate(zip(weights[k:k + n], layer._weight_shapes())):
                arr = np.asarray(w)
                if arr.shape != shape:
                    raise ValueError(f"weights[{k + j}] ({layer.name}): expected shape {shape}, "
                                     f"got {arr.shape}")
            k += n
        k = 0
        for layer in self._layers:
            n = len(layer._param_ids)
            layer.set_weights(list(weights[k:k + n]))
            k += n

    def count_params(self) -> int:
        self._maybe_build()
        return sum(layer.count_params() for layer in self._layers)

    # --- compile ----------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto"):
        """Configures training: optimizer, loss and metrics (names or objects, as Keras).

        ``weighted_metrics``, ``run_eagerly``, ``steps_per_execution`` and ``jit_compile`` are
        accepted so Keras scripts run unchanged; they have no effect (the training step is
        always one compiled call).
        """
        if loss is None:
            raise ValueError("loss: a loss is required, e.g. loss='sparse_categorical_crossentropy'")
        if loss_weights is not None:
            raise ValueError("loss_weights: pynn models have one output; pass None")
        self.optimizer = optimizers_mod.get(optimizer)
        self.loss = losses_mod.get(loss)
        self._metric_names_arg = list(metrics) if isinstance(metrics, (list, tuple)) else metrics
        MetricSet.parse(metrics, self.loss.kind, 1)  # validate names now
        self.compiled = True
        self.stop_training = False
        self._maybe_build()
        if self._net is not None:
            self._attach_compile()

    def _attach_compile(self):
        width = self._net.output_width
        kind = self.loss.kind
        if kind in ("categorical_crossentropy", "sparse_categorical_crossentropy") and width < 2:
            warnings.warn(f"{kind} with a single output unit always has loss 0; use "
                          f"binary_crossentropy or more units", UserWarning, stacklevel=3)
        self._net.set_loss(kind, bool(getattr(self.loss, "from_logits", False)),
                           float(getattr(self.loss, "delta", 1.0)))
        for layer in self._layers:  # Keras's trainable=False: the optimizer leaves them alone
            for pid in layer._param_ids:
                self._net.set_frozen(pid, not (self.trainable and layer.trainable))
        self.optimizer._attach(self._net)
        self._metrics = MetricSet.parse(self._metric_names_arg, kind, width)

    # --- data preparation -------------------------------------------------------------------
    def _prepare_x(self, x, name="x", check_finite=True):
        if isinstance(x, (list, tuple)) or not hasattr(x, "dtype"):
            try:
                x = np.asarray(x)
            except Exception:
                raise TypeError(f"{name}: expected an array of numbers, got "
                                f"{type(x).__name__}") from None
        arr = x if isinstance(x, np.ndarray) else np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
        if arr.ndim < 2:
            raise ValueError(f"{name}: expected an array of shape (samples, features...), got "
                             f"shape {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"{name}: expected at least one sample, got shape {arr.shape}")
        sample_shape = tuple(arr.shape[1:])
        if self._net is None:
            self.build(sample_shape)
        elif sample_shape != tuple(self._input_shape) and not (
                arr.ndim == 2 and sample_shape[0] == math.prod(self._input_shape)):
            # (already-flattened samples of the right size are accepted too)
            raise ValueError(f"{name}: the model expects samples of shape "
                             f"{tuple(self._input_shape)}, got {sample_shape}")
        flat = arr.reshape(arr.shape[0], -1)
        if flat.dtype != np.float32 or not flat.flags.c_contiguous:
            flat = np.ascontiguousarray(flat, dtype=np.float32)
        if check_finite and flat.dtype.kind == "f" and not np.isfinite(flat).all():
            bad = np.argwhere(~np.isfinite(flat))[0]
            raise ValueError(f"{name}: contains NaN or Inf (first at sample {bad[0]}, feature "
                             f"{bad[1]})")
        return flat

    def _prepare_y(self, y, n, name="y"):
        """Returns (dense float32 targets or None, int32 labels or None)."""
        if y is None:
            raise ValueError(f"{name}: targets are required for training and evaluation")
        arr = np.asarray(y)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected numeric targets, got dtype {arr.dtype}")
        if arr.ndim == 0 or arr.shape[0] != n:
            raise ValueError(f"{name}: expected {n} targets (one per sample of x), got shape "
                             f"{arr.shape}")
        width = self._net.output_width
        kind = self.loss.kind
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"{name}: contains NaN or Inf")
        if kind == "sparse_categorical_crossentropy":
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise ValueError(f"{name}: sparse_categorical_crossentropy expects integer labels "
                                 f"of shape ({n},), got {arr.shape}; for one-hot targets use "
                                 f"categorical_crossentropy")
            if arr.dtype.kind == "f" and np.any(arr != np.round(arr)):
                raise ValueError(f"{name}: expected integer class labels, got fractional values")
            lo, hi = arr.min(), arr.max()
            if lo < 0 or hi >= width:
                raise ValueError(f"{name}: labels must be in [0, {width}) for a model with "
                                 f"{width} outputs, got values in [{lo}, {hi}]")
            return None, np.ascontiguousarray(arr, dtype=np.int32)
        if arr.ndim == 1:
            arr = arr[:, None]
        arr = arr.reshape(n, -1)
        if arr.shape[1] != width:
            hint = ""
            if kind == "categorical_crossentropy" and arr.shape[1] == 1:
                hint = ("; for integer labels use sparse_categorical_crossentropy or "
                        "pynn.utils.to_categorical")
            raise ValueError(f"{name}: expected targets of shape ({n}, {width}) to match the "
                             f"model's output, got {tuple(np.asarray(y).shape)}{hint}")
        return np.ascontiguousarray(arr, dtype=np.float32), None

    def _prepare_sample_weight(self, sample_weight, class_weight, y_dense, labels, n):
        sw = None
        if sample_weight is not None:
            raw = np.asarray(sample_weight)
            if raw.dtype.kind not in "fiub":
                raise TypeError(f"sample_weight: expected real numbers, got dtype {raw.dtype}")
            sw = raw.astype(np.float64)
            if sw.ndim == 2 and sw.shape[1] == 1:
                sw = sw[:, 0]
            if sw.shape != (n,):
                raise ValueError(f"sample_weight: expected shape ({n},), got {sw.shape}")
            if not np.isfinite(sw).all() or (sw < 0).any():
                raise ValueError("sample_weight: expected finite, non-negative weights")
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise TypeError(f"class_weight: expected a dict {{class: weight}}, got "
                                f"{type(class_weight).__name__}")
            if labels is not None:
                cls = labels.astype(np.int64)
            elif y_dense.shape[1] == 1:
                cls = (y_dense[:, 0] > 0.5).astype(np.int64)
            else:
                cls = np.argmax(y_dense, axis=1)
            table = np.ones(max(int(cls.max()) + 1, 1), dtype=np.float64)
            for key, value in class_weight.items():
                if isinstance(key, bool) or not isinstance(key, numbers.Integral) or key < 0:
                    raise ValueError(f"class_weight: keys must be class indices, got {key!r}")
                if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                    raise ValueError(f"class_weight: weights must be finite and non-negative, "
                                     f"got {value!r} for class {key}")
                if key < table.size:
                    table[key] = float(value)
            cw = table[cls]
            sw = cw if sw is None else sw * cw
        return None if sw is None else np.ascontiguousarray(sw, dtype=np.float32)

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"{what}: compile the model first, e.g. model.compile("
                               f"optimizer='adam', loss='sparse_categorical_crossentropy')")

    # --- training ---------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Trains the model; returns a `History` (Keras 3 signature and defaults)."""
        from pynn.callbacks import CallbackList

        self._require_compiled("fit")
        batch_size = _positive_int(32 if batch_size is None else batch_size, "batch_size")
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"epochs: expected a non-negative integer, got {epochs!r}")
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral) \
                or initial_epoch < 0:
            raise ValueError(f"initial_epoch: expected a non-negative integer, got "
                             f"{initial_epoch!r}")
        if not isinstance(validation_split, numbers.Real) or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split: expected a number in [0, 1), got "
                             f"{validation_split!r}")
        validation_freq = _positive_int(validation_freq, "validation_freq")
        verbose = _verbose(verbose, resolve_auto=True)
        if x is None:
            raise ValueError("x: training data is required")
        xs = self._prepare_x(x)
        if self._net is not None and not hasattr(self, "_metrics"):
            self._attach_compile()
        n = xs.shape[0]
        y_dense, labels = self._prepare_y(y, n)
        sw = self._prepare_sample_weight(sample_weight, None, y_dense, labels, n)
        if class_weight is not None:  # validate now; applied below to the training rows only
            self._prepare_sample_weight(None, class_weight, y_dense, labels, n)

        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data: expected (x_val, y_val) or "
                                 "(x_val, y_val, sample_weight_val)")
            xv = self._prepare_x(validation_data[0], "validation_data[0]")
            yv_dense, yv_labels = self._prepare_y(validation_data[1], xv.shape[0],
                                                  "validation_data[1]")
            swv = None
            if len(validation_data) == 3 and validation_data[2] is not None:
                swv = self._prepare_sample_weight(validation_data[2], None, yv_dense, yv_labels,
                                                  xv.shape[0])
            val = (xv, yv_dense, yv_labels, swv)
        elif validation_split > 0:
            split = int(n * (1.0 - validation_split))
            if split < 1 or split >= n:
                raise ValueError(f"validation_split={validation_split} leaves no samples for "
                                 f"{'training' if split < 1 else 'validation'} out of {n}")
            val = (xs[split:], None if y_dense is None else y_dense[split:],
                   None if labels is None else labels[split:],
                   None if sw is None else sw[split:])
            xs = xs[:split]
            y_dense = None if y_dense is None else y_dense[:split]
            labels = None if labels is None else labels[:split]
            sw = None if sw is None else sw[:split]
            n = split

        if class_weight is not None:
            # Keras weighs only the training loss by class; validation stays unweighted
            cw = self._prepare_sample_weight(None, class_weight, y_dense, labels, n)
            sw = cw if sw is None else np.ascontiguousarray(sw * cw, dtype=np.float32)
        steps = math.ceil(n / batch_size)
        if steps_per_epoch is not None:
            steps = min(steps, _positive_int(steps_per_epoch, "steps_per_epoch"))
        cbl = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                           verbose=verbose, epochs=epochs, steps=steps)
        # The shuffling seed is drawn from the global stream here, before any callback runs:
        # pynn.sklearn relies on this order to make concurrent seeded fits reproducible.
        rng = _random.generator()
        metrics = self._metrics
        self.stop_training = False
        net = self._net
        need_out = metrics.needs_output
        logs = {}
        warned = False
        cbl.on_train_begin()
        try:
            for epoch in range(initial_epoch, epochs):
                cbl.on_epoch_begin(epoch)
                order = rng.permutation(n) if shuffle else np.arange(n)
                order = order.astype(np.int64, copy=False)
                metrics.reset()
                for step in range(steps):
                    cbl.on_train_batch_begin(step)
                    idx = order[step * batch_size:(step + 1) * batch_size]
                    loss, correct, out = net.train_step(xs, y_dense, labels, sw, idx, need_out)
                    if need_out:
                        tgt = labels[idx] if labels is not None else y_dense[idx]
                        metrics.update(loss, correct, idx.size, out, tgt)
                    else:
                        metrics.update(loss, correct, idx.size)
                    logs = metrics.results()
                    cbl.on_train_batch_end(step, logs)
                    if self.stop_training:
                        break
                epoch_logs = metrics.results(final=True)
                if not math.isfinite(epoch_logs.get("loss", 0.0)) and not warned:
                    warned = True
                    warnings.warn(f"training diverged: the loss is {epoch_logs['loss']} at epoch "
                                  f"{epoch + 1}; lower the learning rate, or use "
                                  f"pynn.callbacks.TerminateOnNaN", RuntimeWarning, stacklevel=2)
                if val is not None and (epoch + 1) % validation_freq == 0:
                    vlogs = self._run_evaluation(val[0], val[1], val[2], val[3],
                                                 validation_batch_size or batch_size)
                    epoch_logs.update({"val_" + k: v for k, v in vlogs.items()})
                cbl.on_epoch_end(epoch, epoch_logs)
                logs = epoch_logs
                if self.stop_training:
                    break
        except KeyboardInterrupt:
            # The step in progress finished before Python saw the interrupt: the weights and
            # optimizer state are consistent. Close the callbacks, then let it propagate.
            self.stop_training = True
            cbl.on_train_end(logs)
            raise
        cbl.on_train_end(logs)
        self.history = cbl.history
        return cbl.history

    def _run_evaluation(self, xs, y_dense, labels, sw, batch_size, cbl=None):
        metrics = MetricSet(self._metrics.names, self._metrics.loss_kind,
                            self._metrics.width)
        n = xs.shape[0]
        net = self._net
        for step, start in enumerate(range(0, n, batch_size)):
            if cbl is not None:
                cbl.on_test_batch_begin(step)
            stop = min(n, start + batch_size)
            yb = None if y_dense is None else y_dense[start:stop]
            lb = None if labels is None else labels[start:stop]
            wb = None if sw is None else sw[start:stop]
            loss, correct, out = net.test_step(xs[start:stop], yb, lb, wb, None,
                                               metrics.needs_output)
            if metrics.needs_output:
                metrics.update(loss, correct, stop - start, out, lb if lb is not None else yb)
            else:
                metrics.update(loss, correct, stop - start)
            if cbl is not None:
                cbl.on_test_batch_end(step, metrics.results())
        return metrics.results(final=True)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Loss (and metrics) on the given data: a scalar, a list, or a dict."""
        from pynn.callbacks import CallbackList

        self._require_compiled("evaluate")
        batch_size = _positive_int(32 if batch_size is None else batch_size, "batch_size")
        verbose = _verbose(verbose, resolve_auto=True)
        xs = self._prepare_x(x)
        if not hasattr(self, "_metrics"):
            self._attach_compile()
        y_dense, labels = self._prepare_y(y, xs.shape[0])
        sw = self._prepare_sample_weight(sample_weight, None, y_dense, labels, xs.shape[0])
        nsteps = math.ceil(xs.shape[0] / batch_size)
        cbl = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=1, steps=nsteps)
        cbl.on_test_begin()
        logs = self._run_evaluation(xs, y_dense, labels, sw, batch_size, cbl)
        cbl.on_test_end(logs)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for the inputs, as a float32 array (samples, outputs).

        Rows are computed independently, so the result does not depend on `batch_size`.
        ``verbose="auto"`` shows a progress bar only on a terminal and for more than one batch.
        """
        net = self._net
        chunk = 32 if batch_size is None else _positive_int(batch_size, "batch_size")
        if (net is not None and callbacks is None and type(x) is np.ndarray
                and x.dtype == np.float32 and x.ndim == 2 and x.flags.c_contiguous
                and x.shape[1] == net.input_width and 0 < x.shape[0] <= chunk
                and (verbose == 0 or verbose == "auto")):
            # Fast path for the common small call (serving one row): nothing to convert,
            # a single batch, no progress bar.
            out = np.empty((x.shape[0], net.output_width), dtype=np.float32)
            net.predict(x, out, 256)
            return out
        xs = self._prepare_x(x, check_finite=False)
        n = xs.shape[0]
        out = np.empty((n, self._net.output_width), dtype=np.float32)
        if verbose == "auto":
            # a bar only when someone watches a terminal, and only for more than one batch
            from pynn.utils.progbar import resolve_verbose

            verbose = 1 if n > chunk and resolve_verbose("auto") == 1 else 0
        else:
            verbose = _verbose(verbose, True)
        if verbose == 0 and callbacks is None:
            # Rows are independent: one call, chunked in C++ for cache locality.
            self._net.predict(xs, out, min(max(chunk, 256), n))
            return out
        from pynn.callbacks import CallbackList

        nsteps = math.ceil(n / chunk)
        cbl = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=1, steps=nsteps)
        cbl.on_predict_begin()
        for step, start in enumerate(range(0, n, chunk)):
            cbl.on_predict_batch_begin(step)
            stop = min(n, start + chunk)
            self._net.predict(xs[start:stop], out[start:stop], stop - start)
            cbl.on_predict_batch_end(step, {"outputs": out[start:stop]})
        cbl.on_predict_end()
        return out

    def __call__(self, x, training=False):
        """The model's output for `x` (inference mode) as a NumPy array."""
        if training:
            raise ValueError("training=True: pynn runs training only inside fit/train_on_batch")
        return self.predict(x, verbose=0)

    def predict_on_batch(self, x):
        return self.predict(x, verbose=0)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One gradient step on exactly this batch; returns its loss (and metrics)."""
        self._require_compiled("train_on_batch")
        xs = self._prepare_x(x)
        if not hasattr(self, "_metrics"):
            self._attach_compile()
        y_dense, labels = self._prepare_y(y, xs.shape[0])
        sw = self._prepare_sample_weight(sample_weight, class_weight, y_dense, labels,
                                         xs.shape[0])
        m = MetricSet(self._metrics.names, self._metrics.loss_kind, self._metrics.width)
        loss, correct, out = self._net.train_step(xs, y_dense, labels, sw, None, m.needs_output)
        m.update(loss, correct, xs.shape[0], out, labels if labels is not None else y_dense)
        return self._format(m.results(final=True), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._require_compiled("test_on_batch")
        xs = self._prepare_x(x)
        if not hasattr(self, "_metrics"):
            self._attach_compile()
        y_dense, labels = self._prepare_y(y, xs.shape[0])
        sw = self._prepare_sample_weight(sample_weight, None, y_dense, labels, xs.shape[0])
        logs = self._run_evaluation(xs, y_dense, labels, sw, xs.shape[0])
        return self._format(logs, return_dict)

    @staticmethod
    def _format(logs, return_dict):
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    @property
    def metrics_names(self):
        return ["loss"] + (list(self._metrics.names) if hasattr(self, "_metrics") else [])

    # --- interpretation ---------------------------------------------------------------------
    def input_gradient(self, x, class_index=None):
        """Gradient of an output with respect to the input (a saliency map), per sample.

        Args:
            x: samples, shaped like the training inputs.
            class_index: the output unit to differentiate: an int for all samples, an array
                with one index per sample, or None for each sample's predicted class.

        Returns:
            float32 array shaped like `x`.
        """
        xs = self._prepare_x(x)
        n, width = xs.shape[0], self._net.output_width
        if class_index is None:
            class_index = np.argmax(self.predict(xs, verbose=0), axis=1)
        idx = np.broadcast_to(np.asarray(class_index), (n,))
        if idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= width:
            raise ValueError(f"class_index: expected integers in [0, {width}), got {class_index!r}")
        seed = np.zeros((n, width), dtype=np.float32)
        seed[np.arange(n), idx] = 1.0
        grad = self._net.input_gradient(xs, seed)
        return grad.reshape((n,) + tuple(self._input_shape))

    # --- description ------------------------------------------------------------------------
    def summary(self, line_length=None, print_fn=None):
        """Prints the layers, their output shapes and parameter counts."""
        print_fn = print_fn or print
        self._maybe_build()
        width = line_length or 72
        cols = [int(width * 0.45), int(width * 0.33)]
        cols.append(width - sum(cols))
        lines = [f'Model: "{self.name}"', "=" * width,
                 f"{'Layer (type)':<{cols[0]}}{'Output Shape':<{cols[1]}}{'Param #':>{cols[2]}}",
                 "=" * width]
        trainable = non_trainable = 0
        for layer in self._layers:
            shape = str(layer.output_shape) if layer.built else "?"
            count = layer.count_params()
            lines.append(f"{(layer.name + ' (' + type(layer).__name__ + ')'):<{cols[0]}}"
                         f"{shape:<{cols[1]}}{count:>{cols[2]},}")
            if layer.built:
                for pid in layer._param_ids:
                    _, shp, is_trainable = self._net.param_info(pid)
                    size = int(np.prod(shp))
                    if is_trainable and layer.trainable:
                        trainable += size
                    else:
                        non_trainable += size
        lines += ["=" * width,
                  f" Total params: {trainable + non_trainable:,}",
                  f" Trainable params: {trainable:,}",
                  f" Non-trainable params: {non_trainable:,}",
                  "_" * width]
        for line in lines:
            print_fn(line)

    def get_config(self) -> dict:
        layers = []
        if self._input_shape is not None:
            layers.append({"class_name": "InputLayer",
                           "config": {"shape": list(self._input_shape), "name": "input_layer"}})
        layers += [layers_mod.serialize(layer) for layer in self._layers]
        return {"name": self.name, "layers": layers}

    @classmethod
    def from_config(cls, config):
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("config: expected a dict with a 'layers' list")
        model = cls(name=config.get("name"))
        for layer_cfg in config["layers"]:
            model.add(layers_mod.deserialize(layer_cfg))
        if model._input_shape is not None:
            model.build()
        return model

    def get_compile_config(self):
        if not self.compiled:
            return None
        return {"optimizer": optimizers_mod.serialize(self.optimizer),
                "loss": losses_mod.serialize(self.loss),
                "metrics": self._metric_names_arg}

    def compile_from_config(self, config):
        self.compile(optimizer=optimizers_mod.deserialize(config["optimizer"]),
                     loss=losses_mod.get(config["loss"]), metrics=config.get("metrics"))

    # --- saving -----------------------------------------------------------------------------
    def save(self, filepath, overwrite=True):
        """Saves architecture, weights, compile configuration and optimizer state to one
        safetensors file (atomically)."""
        from pynn.models.saving import save_model

        save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite=True):
        from pynn.models.saving import save_weights

        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath):
        from pynn.models.saving import load_weights

        load_weights(self, filepath)

    def __repr__(self):
        return f"<pynn.Sequential name={self.name} layers={len(self._layers)}>"
