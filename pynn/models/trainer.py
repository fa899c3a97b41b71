"""The training API every model shares: compile, fit, evaluate, predict and the *_on_batch
calls, over the compiled C++ graph.

Data for several inputs or outputs comes as a list (in the model's order) or a dict (by input
or output name); one array is enough for one. A step is one call into the engine with the
GIL released; metrics are accumulated in Python from what the step returns.
"""
from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import ArrayLike

from pynn import losses as losses_mod
from pynn import optimizers as optimizers_mod
from pynn.layers.embedding import mask_of
from pynn.layers.layer import _TRAINABLE_GENERATION
from pynn.layers.ops_layer import is_scalar_sample
from pynn.models._metrics import MetricSet

if TYPE_CHECKING:
    from os import PathLike

    from pynn.callbacks import Callback, History
    from pynn.models.model import Model

# x and y of fit/evaluate/predict: an array (or anything np.asarray takes) for a one-input
# model, a list of arrays in input order or a dict by input name for several inputs.
Inputs = Any
# What predict/evaluate return: one array (a scalar loss) for a single output, a list or a
# dict for several; Any so that scripts can use the result as the array it usually is.
Outputs = Any

# Rows the engine runs through the network together in predict, whatever batch_size says
# (a row's output does not depend on the rows computed with it, so Keras's batch_size only
# bounds memory). On two threads each thread takes whole chunks. Measured on the Ice Lake
# Xeon, 784-256-128-10 MLP, 10,000 rows, one thread's CPU time: 64 rows 180k rows/s, 128
# 205k, 192-1024 210-216k (flat); the whole 10,000 at once 3x slower on two threads (the
# activations leave the cache). 256 keeps a chunk's activations within L2 for wide layers.
_PREDICT_CHUNK = 256


def _positive_int(value, name, allow_none=False):
    if type(value) is int and value > 0:
        return value  # the common case, without the ABC check (about 1 us, a 1-row predict's 20%)
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


def _per_output(value, names, what, default=None):
    """A compile argument given once, as a list (output order) or as a dict (output names),
    as a list with one entry per output."""
    n = len(names)
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"{what}: unknown output name(s) {unknown}; the outputs are "
                             f"{names}")
        return [value.get(k, default) for k in names]
    if isinstance(value, (list, tuple)) and n > 1:
        if len(value) != n:
            raise ValueError(f"{what}: expected {n} entries (one per output {names}), got "
                             f"{len(value)}")
        return list(value)
    return [value] * n


class _Logs:
    """The running logs of one pass: the total loss and each output's metrics."""

    def __init__(self, model):
        self.model = model
        self.names = model._output_names
        self.sets = [m.fresh() if m is not None else None for m in model._metric_sets]
        self.single = len(self.names) == 1
        self.loss_sum = 0.0
        self.rows = 0

    @property
    def needs_output(self) -> bool:
        return any(m is not None and m.needs_output for m in self.sets)

    def update(self, total: float, losses: Any, correct: Any, rows: int, outs: Any,
               targets: Any, sample_weight: Any = None) -> None:
        self.loss_sum += float(total) * rows
        self.rows += rows
        masks = self.model._step_masks if (self.model._loss_masks
                                           or self.model._custom_masks) else None
        for j, m in enumerate(self.sets):
            if m is None:
                continue
            out = None if outs is None else outs[j]
            m.update(losses[j], correct[j], rows, out, targets[j], sample_weight,
                     None if masks is None else masks.get(j))

    def results(self, final: bool = False) -> dict[str, float]:
        logs = {"loss": self.loss_sum / self.rows if self.rows else float("nan")}
        for name, m in zip(self.names, self.sets):
            if m is None:
                continue
            r = m.results(final)
            if self.single:
                r.pop("loss")
                logs.update(r)
            else:
                logs[f"{name}_loss"] = r.pop("loss")
                logs.update({f"{name}_{k}": v for k, v in r.items()})
        return logs


class Trainer:
    """Keras's Model training API; mixed into `pynn.Model`."""

    # Provided by pynn.Model, the class this is mixed into.
    _inputs: Any
    _outputs: Any
    _output_names: list[str]
    if TYPE_CHECKING:
        def _maybe_trace(self) -> None: ...

    def __init__(self):
        self._graph = None      # the graph steps run on (with the optimizer)
        self._spec = None
        self._pgraph = None     # the graph predict runs on: the same one unless a loss is traced
        self._fast_predict = False  # predict may hand an array straight to _pgraph
        self._pspec = None
        self._custom = []       # outputs whose loss is traced from pynn.ops (custom losses)
        self._loss_masks = []   # outputs whose loss is weighed by their mask (Keras)
        self._custom_masks = []  # outputs whose traced loss is weighed by their mask
        self._step_masks = None  # {output: its mask in the last step}, for the metrics
        self._target_shapes = {}
        self._gen_seen = -1
        self.optimizer = None
        self.loss = None
        self._losses = None
        self._loss_weights = None
        self._metric_names_arg = None
        self._weighted_metrics_arg = None
        self._metric_sets = []
        self._target_cache = None   # label smoothing / "sum" reduction inputs (_engine_targets)
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._initial_epoch = None   # set by BackupAndRestore in on_train_begin to resume

    # --- the compiled graph -----------------------------------------------------------------
    def _build_spec(self):
        from pynn.models.graph_spec import GraphSpec

        spec = GraphSpec()
        shapes = [tuple(t.sample_shape) for t in self._inputs]
        tids = [spec.add_input(s) for s in shapes]
        spec.outputs = self._emit(spec, tids)
        return spec

    def _ensure_graph(self):
        if self._graph is None:
            if self._inputs is None:
                raise ValueError(f"{self.name}: the model is not built yet; call "
                                 f"build(input_shape) or fit/predict first")
            if self._pgraph is None:
                spec = self._build_spec()
                self._pspec, self._pgraph = spec, spec.to_core()
                # predict's fast path: one array in, one array out, nothing done on the host
                self._fast_predict = (len(self._inputs) == 1 and len(self._outputs) == 1
                                      and not self._host_steps()
                                      and getattr(self, "_out_struct", "single") == "single")
                # the fast path's result shape when the output is a per-sample scalar
                self._out_keras = (-1,) if is_scalar_sample(self._outputs[0]) else None
            if self.compiled and self._losses is None:
                self._resolve_compile()
            self._custom = [j for j, lo in enumerate(self._losses or [])
                            if lo is not None and lo.is_custom] if self.compiled else []
            self._loss_masks = [j for j, lo in enumerate(self._losses or [])
                                if lo is not None and not lo.is_custom
                                and mask_of(self._pspec, self._pspec.outputs[j]) is not None
                                ] if self.compiled else []
            if self._custom or self._loss_masks:
                self._spec = self._build_train_spec()
                self._graph = self._spec.to_core()
            else:
                self._spec, self._graph = self._pspec, self._pgraph
            self._gen_seen = -1
            if self.compiled:
                self._attach_compile()
            self._sync_trainable()
        return self._graph

    def _predict_graph(self):
        self._ensure_graph()
        return self._pgraph

    def _build_train_spec(self):
        """The model's graph plus, for each output with a traced (custom) loss, an input for
        its targets and the loss function's ops on (targets, output); those per-sample losses
        are extra outputs whose loss is their mean (``mean_of_output``). Then, for each output
        whose loss is masked (`_loss_masks`), its mask as one more output, which the engine's
        loss reads (Keras weighs a loss by the mask of y_pred) and the metrics get back."""
        from pynn.layers.layer import KerasTensor
        from pynn.layers.reshaping import Input
        from pynn.models.model import Model

        spec = self._build_spec()
        n_out = len(spec.outputs)
        extra = []
        self._custom_masks = []   # the custom losses weighed by their output's mask
        for j in self._custom:
            lo = self._losses[j]
            out_tid = spec.outputs[j]
            out_shape = spec.shapes[out_tid]
            t_shape = self._target_shapes.get(j, out_shape)
            target = spec.add_input(t_shape)
            yt, yp = Input(t_shape), Input(out_shape)
            what = f"loss for output {self._output_names[j]!r} ({lo.name or type(lo).__name__})"
            try:
                value = lo.call(yt, yp)
            except (TypeError, ValueError, AttributeError, NotImplementedError) as exc:
                cls = TypeError if isinstance(exc, TypeError) else type(exc)
                raise cls(f"{what}: tracing the custom loss on symbolic tensors failed: "
                                f"{exc}. Write it with pynn.ops (not NumPy), on y_true of "
                                f"shape {yt.shape} and y_pred of shape {yp.shape}") from exc
            if not isinstance(value, KerasTensor):
                raise TypeError(f"{what}: a custom loss must return a tensor computed from "
                                f"y_true and y_pred with pynn.ops, got {type(value).__name__}")
            if value is yt or value is yp:
                value = value * 1.0
            (v,) = Model([yt, yp], value)._emit(spec, [target, out_tid])
            mask = mask_of(spec, out_tid)
            if mask is not None and spec.shapes[v] == spec.shapes[mask]:
                # values per step: Keras's loss weighs them by y_pred's mask too; as (steps, 1)
                # each step is a loss row the mask can weigh (the plain mean is unchanged)
                (v,) = spec.add_node("reshape", [v], [spec.shapes[v] + (1,)],
                                     attrs={"target_shape": list(spec.shapes[v]) + [1]},
                                     name=f"{self._output_names[j]}_loss_rows")
                self._custom_masks.append(j)
            extra.append(v)
        for j in self._loss_masks + self._custom_masks:
            m = mask_of(spec, spec.outputs[j])
            if m in spec.outputs[:n_out] or m in extra:   # an output only once
                (m,) = spec.add_node("identity", [m], [spec.shapes[m]],
                                     name=f"{self._output_names[j]}_loss_mask")
            extra.append(m)
        spec.outputs = list(spec.outputs[:n_out]) + extra
        return spec

    def _invalidate_graph(self):
        self._graph = None
        self._spec = None
        self._pgraph = None
        self._pspec = None
        if self.optimizer is not None and getattr(self.optimizer, "_net", None) is not None:
            self.optimizer._net = None

    def _retarget(self, ys):
        """Rebuilds the training graph when a traced loss's targets have another per-sample
        shape than it was built for (integer labels for a custom loss, say); the optimizer's
        state moves over to the new graph."""
        changed = [j for j in self._custom if ys[j].shape[1:] != self._target_shape(j)]
        if not changed:
            return
        old = self._graph
        for j in changed:
            self._target_shapes[j] = tuple(ys[j].shape[1:])
        self._graph = None
        new = self._ensure_graph()
        for pid in range(old.num_params()):
            for k in range(old.num_slots(pid)):
                new.set_slot(pid, k, old.get_slot(pid, k))
        new.iterations = old.iterations
        new.u_product = old.u_product
        new.learning_rate = old.learning_rate

    def _target_shape(self, j):
        return tuple(self._target_shapes.get(j, tuple(self._outputs[j].sample_shape)))

    @property
    def _net(self):
        """The compiled engine (built on first use)."""
        if self._graph is None and self._inputs is not None:
            self._ensure_graph()
        return self._graph

    def _sync_trainable(self):
        """Pushes the weights' trainable flags when any layer's flag changed since the last
        step (Keras 3: takes effect at the next step, no recompiling)."""
        if self._gen_seen == _TRAINABLE_GENERATION[0]:
            return
        g = self._graph
        on = self.trainable
        state = self._spec.state_params()
        for pid, ref in enumerate(self._spec.params):
            w = ref.owner
            if w is None:
                flag = not ref.frozen
            else:
                # moving statistics (which never train) carry their layer's flag: a frozen
                # BatchNormalization runs in inference mode; other non-trainable weights
                # (Normalization's statistics) stay off
                flag = w.layer.trainable if pid in state else w.trainable
            g.set_trainable(pid, bool(on and flag))
        self._gen_seen = _TRAINABLE_GENERATION[0]

    def memory_info(self) -> dict:
        """Bytes the compiled graph uses: peak activations in training and in predict (at the
        largest batch seen so far), weights, gradients and optimizer slots."""
        return dict(self._ensure_graph().memory_info())

    # --- compile ----------------------------------------------------------------------------
    def compile(self, optimizer: str | optimizers_mod.Optimizer | Mapping[str, Any] = "rmsprop",
                loss: Any = None, metrics: Any = None,
                loss_weights: Sequence[float] | Mapping[str, float] | None = None,
                weighted_metrics: Any = None, run_eagerly: bool = False,
                steps_per_execution: int = 1, jit_compile: bool | str = "auto") -> None:
        """Configures training: optimizer, loss(es) and metrics, as Keras.

        With several outputs, `loss`, `loss_weights`, `metrics` and `weighted_metrics` may be
        lists (output order) or dicts (output names); one loss or one metric list applies to
        every output. `weighted_metrics` are updated with the sample weights of fit / evaluate
        (sample_weight, class_weight); a name already used in `metrics` is logged as
        ``weighted_<name>``. ``run_eagerly``, ``steps_per_execution`` and ``jit_compile`` are
        accepted so Keras scripts run unchanged; they have no effect.
        """
        if loss is None:
            raise ValueError("loss: a loss is required, "
                             "e.g. loss='sparse_categorical_crossentropy'")
        self._maybe_trace()
        self.optimizer = optimizers_mod.get(optimizer)
        self.loss = loss
        self._loss_arg, self._loss_weights_arg = loss, loss_weights
        self._metric_names_arg = (list(metrics) if isinstance(metrics, (list, tuple))
                                  else metrics)
        self._weighted_metrics_arg = (list(weighted_metrics)
                                      if isinstance(weighted_metrics, (list, tuple))
                                      else weighted_metrics)
        if self._inputs is not None:
            self._resolve_compile()
        else:
            _check_loss_arg(loss)
            MetricSet.parse(_flat_metric_names(metrics), "mean_squared_error", 1,
                            weighted_metrics=_flat_metric_names(weighted_metrics))
        self.compiled = True
        self.stop_training = False
        if self._graph is not None:
            # a traced or masked loss needs its own training graph (and a plain one no longer
            # does); otherwise this reuses the predict graph and attaches the new losses
            self._graph = None
            self._ensure_graph()

    def _resolve_compile(self):
        names = self._output_names
        losses = _per_output(self._loss_arg, names, "loss")
        self._losses = [None if lo is None else losses_mod.get(lo) for lo in losses]
        if all(lo is None for lo in self._losses):
            raise ValueError("loss: no output has a loss")
        for lo in self._losses:
            if lo is not None:
                _check_trainable_loss(lo)
        # a dict (the cache) only when some loss needs its targets or weights adjusted
        self._target_cache = {} if any(
            lo is not None and (lo.label_smoothing or lo.reduction == "sum")
            for lo in self._losses) else None
        weights = _per_output(self._loss_weights_arg, names, "loss_weights", 1.0)
        self._loss_weights = []
        for w in weights:
            w = 1.0 if w is None else w
            if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) \
                    or w < 0:
                raise ValueError(f"loss_weights: expected finite non-negative numbers, got {w!r}")
            self._loss_weights.append(float(w))
        per = _metrics_per_output(self._metric_names_arg, names, "metrics")
        per_weighted = _metrics_per_output(getattr(self, "_weighted_metrics_arg", None), names,
                                           "weighted_metrics")
        self._metric_sets = []
        for j, lo in enumerate(self._losses):
            if lo is None:
                self._metric_sets.append(None)
                continue
            width = math.prod(self._outputs[j].sample_shape)
            self._metric_sets.append(MetricSet.parse(per[j], _kind(lo), width,
                                                     tuple(self._outputs[j].sample_shape),
                                                     per_weighted[j]))
        if len(names) == 1:
            self.loss = self._losses[0]

    def _attach_compile(self):
        if self._losses is None:
            self._resolve_compile()
        g = self._graph
        entries = []
        for j, lo in enumerate(self._losses):
            if lo is None or lo.is_custom:
                entries.append(None)
                continue
            width = self._outputs[j].sample_shape[-1]
            kind = lo.kind
            if kind in ("categorical_crossentropy", "sparse_categorical_crossentropy") \
                    and width < 2:
                warnings.warn(f"{kind} with a single output unit always has loss 0; use "
                              f"binary_crossentropy or more units", UserWarning, stacklevel=4)
            entries.append((kind, bool(getattr(lo, "from_logits", False)),
                            float(getattr(lo, "delta", 1.0)), self._loss_weights[j]))
        entries += [("mean_of_output", False, 1.0, self._loss_weights[j]) for j in self._custom]
        first = len(entries)
        # the loss of output j (or of its custom loss's values) reads the k-th mask output
        at = self._loss_masks + [len(self._losses) + self._custom.index(j)
                                 for j in self._custom_masks]
        for k, (e, j) in enumerate(zip(at, self._loss_masks + self._custom_masks)):
            # Keras's "sum" reduction weighs the kept rows by 1, the means by rows / kept
            entries[e] = entries[e] + (first + k, self._losses[j].reduction != "sum")
        entries += [None] * len(at)
        g.set_losses(entries)
        self.optimizer._attach(g)
        from pynn.models.state import param_paths

        # the optimizer's state (get_state) names each parameter's slots by weight path
        self.optimizer._bind_weight_names(param_paths(self))

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"{what}: compile the model first, e.g. model.compile("
                               f"optimizer='adam', loss='sparse_categorical_crossentropy')")

    @property
    def metrics_names(self) -> list[str]:
        if not self._metric_sets:
            return ["loss"]
        return list(_Logs(self).results().keys())

    # --- data -------------------------------------------------------------------------------
    def _split_by_input(self, x, name):
        """x as a list with one entry per model input (list: order; dict: input names)."""
        n_in = len(self._inputs) if self._inputs is not None else 1
        if isinstance(x, dict):
            if self._inputs is None:
                raise ValueError(f"{name}: a dict of inputs needs a model with named inputs")
            missing = [k for k in self._input_names if k not in x]
            extra = [k for k in x if k not in self._input_names]
            if missing or extra:
                raise ValueError(f"{name}: expected inputs named {self._input_names}, got "
                                 f"{list(x)}")
            return [x[k] for k in self._input_names]
        if isinstance(x, (list, tuple)) and n_in > 1:
            if len(x) != n_in:
                raise ValueError(f"{name}: the model has {n_in} inputs {self._input_names}, "
                                 f"got a list of {len(x)}")
            return list(x)
        if n_in > 1:
            raise ValueError(f"{name}: the model has {n_in} inputs {self._input_names}; pass a "
                             f"list or a dict of arrays")
        return [x]

    def _host_steps(self) -> list:
        """Layers applied to the inputs in NumPy before the graph (a Sequential model's
        leading vocabulary layers); none by default."""
        return []

    def _prepare_inputs(self, x, name="x", check_finite=True):
        """The inputs as 2-D float32 C-contiguous arrays (samples, values per sample)."""
        if x is None:
            raise ValueError(f"{name}: input data is required")
        for layer in self._host_steps():
            x = layer(x)
        parts = self._split_by_input(x, name)
        arrays = []
        for k, part in enumerate(parts):
            what = name if len(parts) == 1 else f"{name}[{k}]"
            if isinstance(part, (list, tuple)) or not hasattr(part, "dtype"):
                try:
                    part = np.asarray(part)
                except Exception:
                    raise TypeError(f"{what}: expected an array of numbers, got "
                                    f"{type(part).__name__}") from None
            arr = part if isinstance(part, np.ndarray) else np.asarray(part)
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"{what}: expected real numbers, got dtype {arr.dtype}")
            if arr.ndim < 2:
                raise ValueError(f"{what}: expected an array of shape (samples, features...), "
                                 f"got shape {arr.shape}")
            if arr.shape[0] == 0:
                raise ValueError(f"{what}: expected at least one sample, got shape {arr.shape}")
            arrays.append(arr)
        if self._inputs is None:
            self._build_for([a.shape[1:] for a in arrays])
        n = arrays[0].shape[0]
        out = []
        for k, (arr, t) in enumerate(zip(arrays, self._inputs)):
            what = name if len(arrays) == 1 else f"{name}[{k}]"
            want = tuple(t.sample_shape)
            got = tuple(arr.shape[1:])
            if got != want and not (arr.ndim == 2 and got[0] == math.prod(want)):
                # (already-flattened samples of the right size are accepted too)
                raise ValueError(f"{what}: the model expects samples of shape {want}, got {got}")
            if arr.shape[0] != n:
                raise ValueError(f"{what}: expected {n} samples like the first input, got "
                                 f"{arr.shape[0]}")
            flat = arr.reshape(n, -1)
            if flat.dtype != np.float32 or not flat.flags.c_contiguous:
                flat = np.ascontiguousarray(flat, dtype=np.float32)
            if check_finite and not _all_finite(flat):
                bad = np.argwhere(~np.isfinite(flat))[0]
                raise ValueError(f"{what}: contains NaN or Inf (first at sample {bad[0]}, "
                                 f"feature {bad[1]})")
            out.append(flat)
        return out

    def _prepare_targets(self, y, n, name="y"):
        """One entry per output: float32 (n, width) targets, int32 (n,) labels, or None for an
        output without a loss."""
        if y is None:
            raise ValueError(f"{name}: targets are required for training and evaluation")
        if self._losses is None:
            self._resolve_compile()
        names = self._output_names
        with_loss = [j for j, lo in enumerate(self._losses) if lo is not None]
        if isinstance(y, dict):
            unknown = [k for k in y if k not in names]
            if unknown:
                raise ValueError(f"{name}: unknown output name(s) {unknown}; the outputs are "
                                 f"{names}")
            parts = [y.get(k) for k in names]
        elif isinstance(y, (list, tuple)) and len(names) > 1:
            if len(y) == len(names):
                parts = list(y)
            elif len(y) == len(with_loss):
                parts = [None] * len(names)
                for j, part in zip(with_loss, y):
                    parts[j] = part
            else:
                raise ValueError(f"{name}: the model has {len(names)} outputs {names}, got a "
                                 f"list of {len(y)}")
        elif len(names) > 1:
            raise ValueError(f"{name}: the model has {len(names)} outputs {names}; pass a list "
                             f"or a dict of targets")
        else:
            parts = [y]
        out = []
        for j, part in enumerate(parts):
            lo = self._losses[j]
            if lo is None:
                out.append(None)
                continue
            what = name if len(names) == 1 else f"{name}[{names[j]!r}]"
            if part is None:
                raise ValueError(f"{what}: targets are required for output {names[j]!r}, which "
                                 f"has a loss")
            if lo.is_custom:
                out.append(self._prepare_custom_target(part, n, what, j))
            else:
                out.append(self._prepare_one_target(part, n, what, j, lo.kind))
        return out

    def _prepare_custom_target(self, y, n, name, j):
        """Targets of a traced loss: float32 with a sample axis first. Shaped like the output
        when they have its size (any layout), else as given (integer labels, say)."""
        arr = _checked_targets(y, n, name)
        out_shape = tuple(self._outputs[j].sample_shape)
        if arr.ndim == 1:
            arr = arr[:, None]
        if math.prod(arr.shape[1:]) == math.prod(out_shape):
            arr = arr.reshape((n,) + out_shape)
        if self._graph is None:   # the training graph is traced for these targets
            self._target_shapes[j] = tuple(arr.shape[1:])
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _step(self, train, xs, ys, sw, idx, want):
        """One train_step/test_step on the compiled graph; with traced losses, their targets
        go in as extra inputs and their values come back as extra outputs, which are mapped
        back onto the model's outputs here."""
        if train and getattr(self.optimizer, "_schedule", None) is not None:
            self.optimizer._apply_schedule()
        g = self._graph
        sws = [None if lo is None else sw for lo in self._losses]
        if getattr(self, "_target_cache", None) is not None:
            ys, sws = self._engine_targets(ys, sws, idx)
        if not self._custom and not self._loss_masks:
            if not train:
                return g.test_step(xs, ys, sws, idx, want)
            out = g.train_step(xs, ys, sws, idx, want)
            self._apply_constraints()
            return out
        if self._custom:
            self._retarget(ys)
            g = self._graph
        custom, masked = self._custom, self._loss_masks + self._custom_masks
        n_out = len(self._losses)
        xs2 = list(xs) + [ys[j].reshape(ys[j].shape[0], -1) for j in custom]
        ys2 = [None if j in custom else ys[j] for j in range(n_out)]
        ys2 += [None] * (len(custom) + len(masked))
        sws2 = [None if j in custom else w for j, w in enumerate(sws)]
        sws2 += [sws[j] for j in custom] + [None] * len(masked)
        # the masks come back as outputs for the metrics (Keras weighs them by the mask too)
        total, losses, correct, outs = (g.train_step if train else g.test_step)(
            xs2, ys2, sws2, idx, want or bool(masked))
        if train:
            self._apply_constraints()
        extra = losses[n_out:]
        losses, correct = list(losses[:n_out]), list(correct[:n_out])
        for k, j in enumerate(custom):
            losses[j] = extra[k]
        first = n_out + len(custom)
        self._step_masks = {j: outs[first + k] for k, j in enumerate(masked)} if masked else None
        return total, losses, correct, (list(outs[:n_out]) if want else None)

    def _apply_constraints(self):
        """Projects every constrained weight that just learned (Keras applies a weight's
        constraint right after the optimizer's update). The list of constrained weights is
        found once per compiled graph; a model without constraints pays one comparison."""
        for w in self._constrained_weights():
            if w.trainable:
                w.constraint.apply(w.value)

    def _constrained_weights(self):
        """The weights with a constraint, found once per compiled graph."""
        spec = self._spec
        if self.__dict__.get("_constrained_for") is not spec:
            self._constrained = [r.owner for r in spec.params
                                 if getattr(r.owner, "constraint", None) is not None]
            self._constrained_for = spec
        return self._constrained

    def _engine_targets(self, ys, sws, idx):
        """What the engine's losses read, where Keras's loss arguments change it: targets with
        label smoothing applied, and for reduction="sum" sample weights scaled by the batch's
        rows (the engine averages over the batch). Both are computed once per array and cached
        (fit passes the whole data set with the rows of each batch in `idx`)."""
        ys, sws = list(ys), list(sws)
        cache = self._target_cache
        for j, lo in enumerate(self._losses):
            if lo is None:
                continue
            ls = getattr(lo, "label_smoothing", 0.0)
            if ls and ys[j] is not None:
                hit = cache.get(("y", j))
                if hit is None or hit[0] is not ys[j]:
                    t = ys[j].astype(np.float32)
                    if lo.kind == "binary_crossentropy":
                        smooth = t * (1.0 - ls) + 0.5 * ls
                    else:
                        smooth = t * (1.0 - ls) + ls / t.shape[-1]
                    hit = cache[("y", j)] = (ys[j], np.ascontiguousarray(smooth, np.float32))
                ys[j] = hit[1]
            if lo.reduction == "sum" and ys[j] is not None:
                n = ys[j].shape[0]
                rows = n if idx is None else idx.size
                # the engine averages over every loss row: the steps of a sequence too
                if not lo.is_custom:
                    rows *= math.prod(self._outputs[j].sample_shape[:-1])
                key = ("w", j, n, rows)
                hit = cache.get(key)
                if hit is None or hit[0] is not sws[j]:
                    base = np.ones(n, np.float32) if sws[j] is None else sws[j]
                    hit = cache[key] = (sws[j], np.ascontiguousarray(base * np.float32(rows),
                                                                     np.float32))
                sws[j] = hit[1]
        return ys, sws

    def _prepare_one_target(self, y, n, name, j, kind):
        arr = _checked_targets(y, n, name)
        out_shape = tuple(self._outputs[j].sample_shape)
        width = math.prod(out_shape)
        if kind == "sparse_categorical_crossentropy":
            lead = out_shape[:-1]   # a label per step of a sequence output (n, steps...)
            if arr.ndim == len(lead) + 2 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            if lead and arr.shape[1:] == lead:
                arr = arr.reshape(n, -1)
            elif lead or arr.ndim != 1:
                want = ", ".join(map(str, (n,) + lead))
                raise ValueError(f"{name}: sparse_categorical_crossentropy expects integer "
                                 f"labels of shape ({want}), got {arr.shape}; for one-hot "
                                 f"targets use categorical_crossentropy")
            if arr.dtype.kind == "f" and np.any(arr != np.round(arr)):
                raise ValueError(f"{name}: expected integer class labels, got fractional values")
            lo, hi = arr.min(), arr.max()
            classes = out_shape[-1]
            if lo < 0 or hi >= classes:
                raise ValueError(f"{name}: labels must be in [0, {classes}) for a model with "
                                 f"{classes} outputs, got values in [{lo}, {hi}]")
            return np.ascontiguousarray(arr, dtype=np.int32)
        if arr.ndim == 1:
            arr = arr[:, None]
        if math.prod(arr.shape[1:]) != width or (arr.ndim > 2 and arr.shape[1:] != out_shape):
            hint = ""
            if kind == "categorical_crossentropy" and arr.shape[1:] == (1,):
                hint = ("; for integer labels use sparse_categorical_crossentropy or "
                        "pynn.utils.to_categorical")
            raise ValueError(f"{name}: expected targets of shape ({n}, "
                             f"{', '.join(map(str, out_shape))}) to match the model's output, "
                             f"got {tuple(np.asarray(y).shape)}{hint}")
        return np.ascontiguousarray(arr.reshape(n, width), dtype=np.float32)

    def _prepare_sample_weight(self, sample_weight, class_weight, targets, n):
        sw = None
        if sample_weight is not None:
            raw = np.asarray(sample_weight)
            if raw.dtype.kind not in "fiub":
                raise TypeError(f"sample_weight: expected real numbers, got dtype {raw.dtype}")
            sw = raw.astype(np.float64)
            if sw.ndim == 2 and sw.shape[1] == 1:
                sw = sw[:, 0]
            steps = self._step_weight_shape()
            if sw.ndim > 1 and steps is not None and sw.shape == (n,) + steps:
                # Keras's per-step ("temporal") weights for sequence outputs
                sw = sw.reshape(n, -1)
            elif sw.shape != (n,):
                also = "" if steps is None else f" or {(n,) + steps} (one per step)"
                raise ValueError(f"sample_weight: expected shape ({n},){also}, got {sw.shape}")
            if not np.isfinite(sw).all() or (sw < 0).any():
                raise ValueError("sample_weight: expected finite, non-negative weights")
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise TypeError(f"class_weight: expected a dict {{class: weight}}, got "
                                f"{type(class_weight).__name__}")
            present = [t for t in targets if t is not None]
            if len(present) != 1:
                raise ValueError("class_weight: only supported for models with one output")
            t = present[0]
            if t.dtype == np.int32:
                cls = t.astype(np.int64)
            elif t.shape[1] == 1:
                cls = (t[:, 0] > 0.5).astype(np.int64)
            else:
                cls = np.argmax(t, axis=1)
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
            sw = cw if sw is None else sw * cw.reshape((-1,) + (1,) * (sw.ndim - 1))
        return None if sw is None else np.ascontiguousarray(sw, dtype=np.float32)

    def _step_weight_shape(self):
        """The per-sample shape of per-step sample weights: the steps of the outputs with a
        loss when they all have the same ones (sequence outputs), else None."""
        if self._losses is None:
            return None
        leads = {tuple(self._outputs[j].sample_shape[:-1])
                 for j, lo in enumerate(self._losses) if lo is not None}
        if len(leads) != 1:
            return None
        (lead,) = leads
        return lead if lead else None

    def _ready_to_step(self, what):
        self._require_compiled(what)
        g = self._ensure_graph()
        if self._losses is None:
            self._resolve_compile()
            self._attach_compile()
        return g

    # --- training ---------------------------------------------------------------------------
    def fit(self, x: Inputs = None, y: Inputs = None, batch_size: int | None = None,
            epochs: int = 1, verbose: int | str = "auto",
            callbacks: Sequence[Callback] | None = None, validation_split: float = 0.0,
            validation_data: tuple[Any, ...] | None = None, shuffle: bool = True,
            class_weight: Mapping[int, float] | None = None,
            sample_weight: ArrayLike | None = None, initial_epoch: int = 0,
            steps_per_epoch: int | None = None, validation_steps: int | None = None,
            validation_batch_size: int | None = None, validation_freq: int = 1) -> History:
        """Trains the model; returns a `History` (Keras 3 signature and defaults)."""
        from pynn import _random
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
        from pynn.models import _streaming

        if _streaming.is_stream(x) or _streaming.is_stream(validation_data):
            # a Dataset, PyDataset or generator: batch by batch (see pynn.models._streaming)
            return _streaming.fit(self, x, y, batch_size, epochs, verbose, callbacks,
                                  validation_split, validation_data, shuffle, class_weight,
                                  sample_weight, initial_epoch, steps_per_epoch,
                                  validation_steps, validation_batch_size, validation_freq)
        xs = self._prepare_inputs(x)
        n = xs[0].shape[0]
        ys = self._prepare_targets(y, n)
        self._ready_to_step("fit")
        sw = self._prepare_sample_weight(sample_weight, None, ys, n)
        if class_weight is not None:  # validate now; applied below to the training rows only
            self._prepare_sample_weight(None, class_weight, ys, n)

        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data: expected (x_val, y_val) or "
                                 "(x_val, y_val, sample_weight_val)")
            xv = self._prepare_inputs(validation_data[0], "validation_data[0]")
            yv = self._prepare_targets(validation_data[1], xv[0].shape[0], "validation_data[1]")
            swv = None
            if len(validation_data) == 3 and validation_data[2] is not None:
                swv = self._prepare_sample_weight(validation_data[2], None, yv, xv[0].shape[0])
            val = (xv, yv, swv)
        elif validation_split > 0:
            split = int(n * (1.0 - validation_split))
            if split < 1 or split >= n:
                raise ValueError(f"validation_split={validation_split} leaves no samples for "
                                 f"{'training' if split < 1 else 'validation'} out of {n}")
            val = ([a[split:] for a in xs], [None if t is None else t[split:] for t in ys],
                   None if sw is None else sw[split:])
            xs = [a[:split] for a in xs]
            ys = [None if t is None else t[:split] for t in ys]
            sw = None if sw is None else sw[:split]
            n = split

        if class_weight is not None:
            # Keras weighs only the training loss by class; validation stays unweighted
            cw = self._prepare_sample_weight(None, class_weight, ys, n)
            sw = cw if sw is None else np.ascontiguousarray(sw * cw, dtype=np.float32)
        steps = math.ceil(n / batch_size)
        if steps_per_epoch is not None:
            steps = min(steps, _positive_int(steps_per_epoch, "steps_per_epoch"))
        cbl = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                           verbose=verbose, epochs=epochs, steps=steps)
        # The shuffling seed is drawn from the global stream here, before any callback runs:
        # pynn.sklearn relies on this order to make concurrent seeded fits reproducible.
        rng = _random.generator()
        self.stop_training = False
        logs = {}
        warned = False
        self._initial_epoch = None   # a callback (BackupAndRestore) may resume at a later epoch
        cbl.on_train_begin()
        initial_epoch = self._initial_epoch or initial_epoch
        try:
            for epoch in range(initial_epoch, epochs):
                cbl.on_epoch_begin(epoch)
                order = rng.permutation(n) if shuffle else np.arange(n)
                order = order.astype(np.int64, copy=False)
                run = _Logs(self)
                need_out = run.needs_output
                if not need_out and self._chunkable(cbl):
                    # Nothing looks at the model between batches: run the epoch's steps a
                    # chunk at a time in the core (the same steps, the same numbers).
                    logs = self._fit_chunks(xs, ys, sw, order, batch_size, steps, run)
                    batches = 0
                else:
                    batches = steps
                for step in range(batches):
                    cbl.on_train_batch_begin(step)
                    idx = order[step * batch_size:(step + 1) * batch_size]
                    if self._gen_seen != _TRAINABLE_GENERATION[0]:
                        self._sync_trainable()
                    total, losses, correct, outs = self._step(True, xs, ys, sw, idx, need_out)
                    if need_out:
                        run.update(total, losses, correct, idx.size, outs,
                                   [None if t is None else t[idx] for t in ys],
                                   None if sw is None else sw[idx])
                    else:
                        run.update(total, losses, correct, idx.size, None, ys)
                    logs = run.results()
                    cbl.on_train_batch_end(step, logs)
                    if self.stop_training:
                        break
                epoch_logs = run.results(final=True)
                if not math.isfinite(epoch_logs.get("loss", 0.0)) and not warned:
                    warned = True
                    warnings.warn(f"training diverged: the loss is {epoch_logs['loss']} at epoch "
                                  f"{epoch + 1}; lower the learning rate, or use "
                                  f"pynn.callbacks.TerminateOnNaN", RuntimeWarning, stacklevel=2)
                if val is not None and (epoch + 1) % validation_freq == 0:
                    vlogs = self._run_evaluation(val[0], val[1], val[2],
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

    def _chunkable(self, cbl) -> bool:
        """Whether fit may run several batches per call into the core: no callback has a batch
        hook, and no per-step work happens in Python (learning-rate schedules, weight
        constraints, traced losses, loss masks, targets rewritten per batch)."""
        from pynn.callbacks import Callback

        hooks = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")
        for cb in cbl.callbacks:
            if any(getattr(type(cb), h) is not getattr(Callback, h) for h in hooks):
                return False
        if getattr(self.optimizer, "_schedule", None) is not None:
            return False
        if self._custom or self._loss_masks or getattr(self, "_target_cache", None) is not None:
            return False
        return not self._constrained_weights()

    def _fit_chunks(self, xs, ys, sw, order, batch_size, steps, run):
        """The epoch's `steps` batches of `order`, several per core call (each call sized to
        take about a tenth of a second, so that Ctrl-C is seen soon); the logs are updated
        batch by batch as the one-step loop does. Returns the last batch's logs."""
        g = self._graph
        sws = [None if lo is None else sw for lo in self._losses]
        n = order.size
        done, chunk, logs = 0, 4, {}
        while done < steps:
            if self._gen_seen != _TRAINABLE_GENERATION[0]:
                self._sync_trainable()
                g = self._graph
            # stop_training set before the epoch (on_epoch_begin): one batch, as the per-batch
            # loop (and Keras) runs one before it looks
            count = 1 if self.stop_training else min(chunk, steps - done)
            start = done * batch_size
            rows = order[start:min(n, start + count * batch_size)]
            t0 = time.perf_counter()
            # (a batch_size beyond the rows, up to 2**63, means one batch of them all)
            totals, losses, correct = g.train_steps(xs, ys, sws, rows,
                                                    min(batch_size, max(1, rows.size)))
            per_step = (time.perf_counter() - t0) / count
            for k in range(count):
                size = min(batch_size, rows.size - k * batch_size)
                run.update(totals[k], losses[k], correct[k], size, None, ys)
            done += count
            logs = run.results()
            if self.stop_training:
                break
            chunk = max(1, min(1024, int(0.1 / max(per_step, 1e-6))))
        return logs

    def _run_evaluation(self, xs, ys, sw, batch_size, cbl=None):
        run = _Logs(self)
        need_out = run.needs_output
        n = xs[0].shape[0]
        for step, start in enumerate(range(0, n, batch_size)):
            if cbl is not None:
                cbl.on_test_batch_begin(step)
            stop = min(n, start + batch_size)
            xb = [a[start:stop] for a in xs]
            yb = [None if t is None else t[start:stop] for t in ys]
            wb = None if sw is None else sw[start:stop]
            total, losses, correct, outs = self._step(False, xb, yb, wb, None, need_out)
            run.update(total, losses, correct, stop - start, outs, yb, wb)
            if cbl is not None:
                cbl.on_test_batch_end(step, run.results())
        return run.results(final=True)

    def evaluate(self, x: Inputs = None, y: Inputs = None, batch_size: int | None = None,
                 verbose: int | str = "auto", sample_weight: ArrayLike | None = None,
                 steps: int | None = None, callbacks: Sequence[Callback] | None = None,
                 return_dict: bool = False) -> Any:
        """Loss (and metrics) on the given data: a scalar, a list, or a dict."""
        from pynn.callbacks import CallbackList

        self._require_compiled("evaluate")
        batch_size = _positive_int(32 if batch_size is None else batch_size, "batch_size")
        verbose = _verbose(verbose, resolve_auto=True)
        from pynn.models import _streaming

        if _streaming.is_stream(x):
            steps = _positive_int(steps, "steps", allow_none=True)
            return self._format(_streaming.evaluate(self, x, y, int(verbose), sample_weight, steps,
                                                    callbacks), return_dict)
        xs = self._prepare_inputs(x)
        n = xs[0].shape[0]
        ys = self._prepare_targets(y, n)
        self._ready_to_step("evaluate")
        sw = self._prepare_sample_weight(sample_weight, None, ys, n)
        if self._gen_seen != _TRAINABLE_GENERATION[0]:
            self._sync_trainable()
        nsteps = math.ceil(n / batch_size)
        cbl = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=1, steps=nsteps)
        cbl.on_test_begin()
        logs = self._run_evaluation(xs, ys, sw, batch_size, cbl)
        cbl.on_test_end(logs)
        return self._format(logs, return_dict)

    def _new_outputs(self, n):
        return [np.empty((n,) + tuple(t.sample_shape), dtype=np.float32) for t in self._outputs]

    def _structure_outputs(self, outs):
        # A per-sample scalar output is stored (n, 1) and returned (n,), as Keras does.
        outs = [o.reshape(o.shape[0]) if is_scalar_sample(t) else o
                for o, t in zip(outs, self._outputs)]
        struct = getattr(self, "_out_struct", "single")
        if isinstance(struct, tuple):
            return dict(zip(struct, outs))
        if struct == "list" or len(outs) > 1:
            return list(outs)
        return outs[0]

    def predict(self, x: Inputs, batch_size: int | None = None, verbose: int | str = "auto",
                steps: int | None = None,
                callbacks: Sequence[Callback] | None = None) -> Outputs:
        """Outputs for the inputs: a float32 array (several outputs: a list, or a dict when
        the model's outputs were given as a dict).

        Rows are computed independently, so the result does not depend on `batch_size`.
        ``verbose="auto"`` shows a progress bar only on a terminal and for more than one batch.
        """
        graph = self._pgraph
        chunk = 32 if batch_size is None else _positive_int(batch_size, "batch_size")
        if (graph is not None and callbacks is None and type(x) is np.ndarray
                and self._fast_predict and (verbose == 0 or (verbose == "auto" and x.ndim
                                                             and x.shape[0] <= chunk))):
            # Fast path (serving a few rows, or a big array with verbose=0): a float32
            # C-contiguous array goes straight to the engine, which allocates the result
            # (None: the array needs converting first).
            out = graph.predict_array(x, _PREDICT_CHUNK)
            if out is not None:
                return out.reshape(self._out_keras) if self._out_keras else out
        from pynn.models import _streaming

        if _streaming.is_stream(x):
            return _streaming.predict(self, x, _verbose(verbose, True),
                                      _positive_int(steps, "steps", allow_none=True), callbacks)
        xs = self._prepare_inputs(x, check_finite=False)
        graph = self._predict_graph()
        n = xs[0].shape[0]
        outs = self._new_outputs(n)
        if verbose == "auto":
            # a bar only when someone watches a terminal, and only for more than one batch
            from pynn.utils.progbar import resolve_verbose

            verbose = 1 if n > chunk and resolve_verbose("auto") == 1 else 0
        else:
            verbose = _verbose(verbose, True)
        if verbose == 0 and callbacks is None:
            # Rows are independent: one call, chunked in C++ for cache locality.
            graph.predict(xs, outs, _PREDICT_CHUNK)
            return self._structure_outputs(outs)
        from pynn.callbacks import CallbackList

        nsteps = math.ceil(n / chunk)
        cbl = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=1, steps=nsteps)
        cbl.on_predict_begin()
        for step, start in enumerate(range(0, n, chunk)):
            cbl.on_predict_batch_begin(step)
            stop = min(n, start + chunk)
            part = [o[start:stop] for o in outs]
            graph.predict([a[start:stop] for a in xs], part, stop - start)
            cbl.on_predict_batch_end(step, {"outputs": self._structure_outputs(part)})
        cbl.on_predict_end()
        return self._structure_outputs(outs)

    def predict_on_batch(self, x: Inputs) -> Outputs:
        return self.predict(x, verbose=0)

    def train_on_batch(self, x: Inputs, y: Inputs = None, sample_weight: ArrayLike | None = None,
                       class_weight: Mapping[int, float] | None = None,
                       return_dict: bool = False) -> Any:
        """One gradient step on exactly this batch; returns its loss (and metrics)."""
        self._require_compiled("train_on_batch")
        xs = self._prepare_inputs(x)
        n = xs[0].shape[0]
        ys = self._prepare_targets(y, n)
        self._ready_to_step("train_on_batch")
        sw = self._prepare_sample_weight(sample_weight, class_weight, ys, n)
        if self._gen_seen != _TRAINABLE_GENERATION[0]:
            self._sync_trainable()
        run = _Logs(self)
        total, losses, correct, outs = self._step(True, xs, ys, sw, None, run.needs_output)
        run.update(total, losses, correct, n, outs, ys, sw)
        return self._format(run.results(final=True), return_dict)

    def test_on_batch(self, x: Inputs, y: Inputs = None, sample_weight: ArrayLike | None = None,
                      return_dict: bool = False) -> Any:
        self._require_compiled("test_on_batch")
        xs = self._prepare_inputs(x)
        n = xs[0].shape[0]
        ys = self._prepare_targets(y, n)
        self._ready_to_step("test_on_batch")
        sw = self._prepare_sample_weight(sample_weight, None, ys, n)
        if self._gen_seen != _TRAINABLE_GENERATION[0]:
            self._sync_trainable()
        return self._format(self._run_evaluation(xs, ys, sw, n), return_dict)

    @staticmethod
    def _format(logs, return_dict):
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    # --- interpretation ---------------------------------------------------------------------
    def input_gradient(self, x: ArrayLike, class_index: int | None = None) -> np.ndarray:
        """Gradient of an output with respect to the input (a saliency map), per sample, for
        a model with one input and one output.

        Args:
            x: samples, shaped like the training inputs.
            class_index: the output unit to differentiate: an int for all samples, an array
                with one index per sample, or None for each sample's predicted class.

        Returns:
            float32 array shaped like `x`.
        """
        xs = self._prepare_inputs(x)
        graph = self._predict_graph()
        if len(xs) != 1 or len(self._outputs) != 1:
            raise ValueError("input_gradient: needs a model with one input and one output")
        n = xs[0].shape[0]
        width = math.prod(self._outputs[0].sample_shape)
        if class_index is None:
            class_index = np.argmax(np.asarray(self.predict(xs[0], verbose=0)).reshape(n, -1),
                                    axis=1)
        idx = np.broadcast_to(np.asarray(class_index), (n,))
        if idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= width:
            raise ValueError(f"class_index: expected integers in [0, {width}), got {class_index!r}")
        seed = np.zeros((n, width), dtype=np.float32)
        seed[np.arange(n), idx] = 1.0
        (grad,) = graph.input_gradient(xs, [seed])
        return np.asarray(grad).reshape((n,) + tuple(self._inputs[0].sample_shape))

    # --- configuration and saving -----------------------------------------------------------
    def get_compile_config(self) -> dict[str, Any] | None:
        if not self.compiled:
            return None
        loss = self._loss_arg
        loss_cfg: Any
        if isinstance(loss, dict):
            loss_cfg = {k: None if v is None else losses_mod.serialize(losses_mod.get(v))
                        for k, v in loss.items()}
        elif isinstance(loss, (list, tuple)):
            loss_cfg = [None if v is None else losses_mod.serialize(losses_mod.get(v))
                        for v in loss]
        else:
            loss_cfg = losses_mod.serialize(losses_mod.get(loss))
        cfg = {"optimizer": optimizers_mod.serialize(self.optimizer), "loss": loss_cfg,
               "loss_weights": self._loss_weights_arg,
               "metrics": _serialize_metrics(self._metric_names_arg)}
        if getattr(self, "_weighted_metrics_arg", None) is not None:
            cfg["weighted_metrics"] = _serialize_metrics(self._weighted_metrics_arg)
        if self._target_shapes:   # what the traced losses' targets looked like
            cfg["target_shapes"] = {self._output_names[j]: list(s)
                                    for j, s in self._target_shapes.items()}
        return cfg

    def compile_from_config(self, config: Mapping[str, Any],
                            custom_objects: Mapping[str, Any] | None = None) -> None:
        loss = config["loss"]

        def get(v):
            return None if v is None else losses_mod.get(v, custom_objects)

        if isinstance(loss, dict) and "class_name" not in loss:
            loss = {k: get(v) for k, v in loss.items()}
        elif isinstance(loss, list):
            loss = [get(v) for v in loss]
        else:
            loss = get(loss)
        self.compile(optimizer=optimizers_mod.deserialize(config["optimizer"]), loss=loss,
                     metrics=_deserialize_metrics(config.get("metrics"), custom_objects),
                     weighted_metrics=_deserialize_metrics(config.get("weighted_metrics"),
                                                           custom_objects),
                     loss_weights=config.get("loss_weights"))
        shapes = config.get("target_shapes") or {}
        if not isinstance(shapes, dict):
            raise ValueError("compile config: target_shapes must map output names to shapes")
        for name, shape in shapes.items():
            if name not in self._output_names or not isinstance(shape, list) or not all(
                    isinstance(d, int) and not isinstance(d, bool) and 0 < d < 2**31
                    for d in shape):
                raise ValueError(f"compile config: invalid target shape {shape!r} for "
                                 f"output {name!r}")
            self._target_shapes[self._output_names.index(name)] = tuple(shape)

    def _require_built(self, what):
        self._maybe_trace()
        if self._inputs is None:
            raise ValueError(f"{what}: the model is not built yet; call build(input_shape) or "
                             f"fit/predict first")

    def save(self, filepath: str | PathLike[str], overwrite: bool = True) -> None:
        """Saves architecture, weights, compile configuration and optimizer state to one
        safetensors file (atomically)."""
        from pynn.models.saving import save_model

        save_model(cast("Model", self), filepath, overwrite=overwrite)   # (mixed into Model only)

    def save_weights(self, filepath: str | PathLike[str], overwrite: bool = True) -> None:
        from pynn.models.saving import save_weights

        save_weights(cast("Model", self), filepath, overwrite=overwrite)

    def load_weights(self, filepath: str | PathLike[str]) -> None:
        from pynn.models.saving import load_weights

        load_weights(cast("Model", self), filepath)

    def to_json(self, **kwargs: Any) -> str:
        """The architecture as Keras 3's JSON (`pynn.models.model_from_json` and
        `keras.models.model_from_json` read it); `kwargs` go to `json.dumps`."""
        from pynn.models.keras_format import to_json

        return to_json(cast("Model", self), **kwargs)

    def export(self, filepath: str | PathLike[str], format: str = "onnx",
               verbose: bool = False, **kwargs: Any) -> None:
        """Writes the model for serving elsewhere. ``format="onnx"`` (needs the `onnx`
        package, ``pip install pynn[onnx]``) writes an ONNX model that ONNX Runtime runs;
        see `pynn.models.onnx_export.export_onnx` for the arguments."""
        if format != "onnx":
            raise ValueError(f"format: pynn exports 'onnx', got {format!r}")
        from pynn.models.onnx_export import export_onnx

        export_onnx(cast("Model", self), filepath, verbose=verbose, **kwargs)


def _metrics_per_output(metrics, names, what):
    """compile's metrics (or weighted_metrics) argument as one list (or None) per output."""
    if isinstance(metrics, dict):
        per = _per_output(metrics, names, what, None)
    elif (isinstance(metrics, list) and len(names) > 1 and metrics
          and all(isinstance(m, (list, tuple)) or m is None for m in metrics)):
        per = _per_output(metrics, names, what)
    else:
        per = [metrics] * len(names)
    return [[m] if isinstance(m, str) else m for m in per]


def _flat_metric_names(metrics):
    if metrics is None:
        return None
    if isinstance(metrics, dict):
        out = []
        for v in metrics.values():
            out += [v] if isinstance(v, str) else list(v or [])
        return list(dict.fromkeys(out))
    if isinstance(metrics, (list, tuple)) and metrics and all(
            isinstance(m, (list, tuple)) or m is None for m in metrics):
        out = []
        for v in metrics:
            out += list(v or [])
        return list(dict.fromkeys(out))
    return metrics


def _all_finite(flat: np.ndarray) -> bool:
    """Whether a C-contiguous float32 array holds no NaN or Inf: one pass in the core, no
    temporary (np.isfinite over a whole training set would first write a boolean array as
    large as it, 47 MB for Fashion-MNIST, and read it back)."""
    from pynn import _core

    return bool(_core.first_non_finite(flat) < 0)


def _checked_targets(y, n, name):
    """y as an array of n numeric, finite targets (any per-sample shape)."""
    arr = np.asarray(y)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected numeric targets, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} targets (one per sample of x), got shape "
                         f"{arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or Inf")
    return arr


def _serialize_metrics(metrics):
    """Metrics as JSON: names stay, a function by its registered name (or __name__), a Metric
    object as {"class_name", "config"}."""
    from pynn.saving import registered_name

    def one(m):
        if m is None or isinstance(m, str):
            return m
        if isinstance(m, (list, tuple)):
            return [one(v) for v in m]
        if hasattr(m, "update_state"):
            return {"class_name": registered_name(type(m)) or type(m).__name__,
                    "config": m.get_config()}
        return {"class_name": "function",
                "config": registered_name(m) or getattr(m, "__name__", repr(m))}

    if isinstance(metrics, dict):
        return {k: one(v) for k, v in metrics.items()}
    return one(metrics)


def _deserialize_metrics(metrics, custom_objects=None):
    from pynn.saving import lookup

    def one(m):
        if m is None or isinstance(m, str):
            return m
        if isinstance(m, list):
            return [one(v) for v in m]
        if isinstance(m, dict) and m.get("class_name") == "function":
            fn = lookup(m.get("config"), custom_objects)
            if fn is None or not callable(fn):
                raise ValueError(f"metrics: the custom metric function {m.get('config')!r} is "
                                 f"not registered; decorate it with "
                                 f"@pynn.saving.register_serializable() or pass custom_objects")
            return fn
        if isinstance(m, dict):
            from pynn.metrics import deserialize

            return deserialize(m, custom_objects)
        raise ValueError(f"metrics: invalid entry {m!r} in the compile config")

    if isinstance(metrics, dict):
        return {k: one(v) for k, v in metrics.items()}
    return one(metrics)


def _kind(loss):
    """The loss's C++ kind, or "custom" for a traced one (how metrics pick their rules)."""
    return "custom" if loss.is_custom else loss.kind


def _check_trainable_loss(lo):
    """The loss arguments compile can train with (all of them work when calling the loss)."""
    if lo.reduction not in ("sum_over_batch_size", "mean", "sum"):
        raise ValueError(f"loss {lo.name!r}: reduction={lo.reduction!r} does not give one "
                         f"number to minimise; compile takes 'sum_over_batch_size', 'mean' or "
                         f"'sum'")
    if getattr(lo, "ignore_class", None) is not None:
        raise ValueError(f"loss {lo.name!r}: ignore_class is supported when calling the loss, "
                         f"not in compile")


def _check_loss_arg(loss):
    if isinstance(loss, dict):
        for v in loss.values():
            if v is not None:
                losses_mod.get(v)
    elif isinstance(loss, (list, tuple)):
        for v in loss:
            if v is not None:
                losses_mod.get(v)
    else:
        losses_mod.get(loss)
