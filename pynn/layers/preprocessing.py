"""Numeric preprocessing layers (Keras 3): Normalization, Rescaling, Discretization,
CategoryEncoding. Each compiles to graph ops, so it runs inside a model (fit, predict, save,
load) as well as on a NumPy array when called directly; none of them learns by gradient.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from pynn.layers.layer import Layer, positive_int, real_in
from pynn.models.graph_spec import ParamRef

EPSILON = 1e-7   # keras.backend.epsilon(): the smallest standard deviation Normalization uses


def _as_batch(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected numbers, got dtype {arr.dtype}")
    return arr


class _Preprocessing(Layer):
    """Shared eager call: accepts a 1-D batch (one value per sample) like Keras, as (n, 1)."""

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, (np.ndarray, list, tuple)) and not args and not kwargs.get(
                "mask"):
            arr = _as_batch(inputs, self.name)
            squeeze = arr.ndim == 1
            out = super().__call__(arr[:, None] if squeeze else arr)
            return self._eager_result(out, squeeze)
        return super().__call__(inputs, *args, **kwargs)

    def _eager_result(self, out, squeezed):
        return out[:, 0] if squeezed and out.ndim == 2 and out.shape[1] == 1 else out


class Normalization(_Preprocessing):
    """Standardises features: ``(x - mean) / max(sqrt(variance), 1e-7)``; with invert=True
    the inverse, ``mean + x * max(sqrt(variance), 1e-7)``.

    The statistics are per position of the `axis` axes (Keras's numbering; default -1, the
    features; None for one mean over everything) and come from `mean`/`variance` or from
    `adapt(data)`. Adapted statistics are weights (mean, variance, count; not trainable) and
    are saved with the model.

    Example:
        >>> norm = Normalization()
        >>> norm.adapt(x_train)
        >>> model = pynn.Sequential([pynn.Input((8,)), norm, Dense(1)])
    """

    supports_masking = True

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
            axis = (int(axis),)
        elif isinstance(axis, (list, tuple)) and all(
                isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis):
            axis = tuple(int(a) for a in axis)
        else:
            raise TypeError(f"axis: expected None, an int or a tuple of ints. Received: "
                            f"axis={axis!r}")
        self.axis = axis
        if (mean is None) != (variance is None):
            raise ValueError(f"mean and variance: pass both or neither. Received: mean={mean!r}"
                             f", variance={variance!r}")
        self.input_mean = None if mean is None else np.asarray(mean, np.float32)
        self.input_variance = None if variance is None else np.asarray(variance, np.float32)
        for name, v in (("mean", self.input_mean), ("variance", self.input_variance)):
            if v is not None and not np.all(np.isfinite(v)):
                raise ValueError(f"{name}: contains NaN or Inf")
        if self.input_variance is not None and np.any(self.input_variance < 0):
            raise ValueError("variance: must be >= 0")
        self.invert = bool(invert)

    def _keep(self, rank):
        keep = []
        for a in self.axis:
            if not -rank <= a < rank:
                raise ValueError(f"{self.name}: axis {a} is out of range for inputs of rank "
                                 f"{rank}. Received: axis={self.axis}")
            keep.append(a % rank)
        if 0 in keep:
            raise ValueError(f"{self.name}: axis may not include the batch axis (0). "
                             f"Received: axis={self.axis}")
        return sorted(set(keep))

    def build(self, input_shape: Any) -> None:
        keep = self._keep(len(input_shape))
        shape = tuple(input_shape[d] for d in keep)
        self._stat_shape = shape
        if self.input_mean is None:
            self.mean = self.add_weight(shape, "zeros", trainable=False, name="mean")
            self.variance = self.add_weight(shape, "ones", trainable=False, name="variance")
            self.count = self.add_weight((), "zeros", trainable=False, name="count")

    def _broadcast(self, rank, sample_shape):
        """The per-sample shape the statistics broadcast as (1 on the reduced axes)."""
        keep = self._keep(rank + 1)
        return tuple(sample_shape[d - 1] if d in keep else 1 for d in range(1, rank + 1))

    def _given(self, which, bshape):
        """A constructor statistic broadcast to `bshape` (Keras aligns a vector with the last
        kept axes)."""
        v = self.input_mean if which == "mean" else self.input_variance
        keep = self._keep(len(bshape) + 1)
        if v.ndim:
            shape = [1] * len(bshape)
            for i in range(1, v.ndim + 1):
                shape[keep[-i] - 1] = v.shape[-i]
            v = v.reshape(shape)
        try:
            return np.broadcast_to(v, bshape).astype(np.float32)
        except ValueError:
            raise ValueError(f"{self.name}: {which} of shape {v.shape} does not broadcast to "
                             f"the input's statistics shape {bshape}") from None

    def adapt(self, data: Any) -> None:
        """Sets mean and variance to those of `data` (an array, or an iterable of batches),
        per position of the kept axes; the population variance, as Keras."""
        if self.input_mean is not None:
            raise ValueError(f"{self.name}: adapt() on a Normalization built from mean and "
                             f"variance arguments; create it without them to adapt")
        batches = [data] if isinstance(data, np.ndarray) or not hasattr(data, "__iter__") \
            else list(data)
        arrs = [np.asarray(b, np.float64) for b in batches]
        if not arrs or any(a.dtype.kind not in "fiub" for a in arrs):
            raise TypeError("data: expected an array of numbers or an iterable of them")
        x = np.concatenate([a if a.ndim > 1 else a[:, None] for a in arrs], axis=0)
        if x.shape[0] == 0:
            raise ValueError("data: expected at least one sample, got an empty array")
        if not np.all(np.isfinite(x)):
            raise ValueError("data: contains NaN or Inf")
        self._build_for([x.shape[1:]])
        keep = self._keep(x.ndim)
        if tuple(x.shape[d] for d in keep) != self.mean.shape:
            raise ValueError(f"{self.name}: the layer was built for statistics of shape "
                             f"{self.mean.shape}, data has shape {x.shape}")
        red = tuple(d for d in range(x.ndim) if d not in keep)
        mean = x.mean(axis=red)
        var = ((x - x.mean(axis=red, keepdims=True)) ** 2).mean(axis=red)
        self.mean.assign(mean)
        self.variance.assign(var)
        self.count.assign(np.float32(x.size // max(int(np.prod(self.mean.shape)), 1)))

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        bshape = self._broadcast(len(shape), shape)
        if self.input_mean is not None:
            parts = []
            for which in ("mean", "variance"):
                v = self._given(which, bshape)
                parts.append(spec.add_node("constant", [x], [bshape], [],
                                           {"value": v.reshape(-1).tolist(),
                                            "shape": list(bshape)}, self.name)[0])
            mean, var = parts
        else:
            want = tuple(s for s, b in zip(shape, bshape) if b != 1 or s == 1)
            if math.prod(self.mean.shape) != math.prod(bshape):
                raise ValueError(f"{self.name}: Normalization was built for statistics of "
                                 f"shape {self.mean.shape}, got input shape {(None,) + shape} "
                                 f"({want})")
            parts = []
            for w in (self.mean, self.variance):
                if w.value.ndim == 0:
                    # axis=None: the engine's variables have an axis; a (1,) view of the same
                    # float (kept on the layer so that it lives as long as the graph)
                    views = self.__dict__.setdefault("_scalar_views", {})
                    view = views.setdefault(w.name, w.value.reshape(1))
                    pid = spec.add_param(ParamRef(view, w.path, False, False, owner=w))
                else:
                    (pid,) = self._param_ids(spec, [w])
                parts.append(spec.add_node("variable", [x], [bshape], [pid],
                                           {"shape": list(bshape)}, self.name)[0])
            mean, var = parts
        (sd,) = spec.add_node("unary", [var], [bshape], [], {"fn": "sqrt"}, self.name)
        (sd,) = spec.add_node("binary_scalar", [sd], [bshape], [],
                              {"fn": "maximum", "scalar": EPSILON, "reverse": False}, self.name)
        if self.invert:
            (y,) = spec.add_node("binary", [x, sd], [shape], [], {"fn": "multiply"}, self.name)
            return spec.add_node("binary", [y, mean], [shape], [], {"fn": "add"}, self.name)
        (y,) = spec.add_node("binary", [x, mean], [shape], [], {"fn": "subtract"}, self.name)
        return spec.add_node("binary", [y, sd], [shape], [], {"fn": "divide"}, self.name)

    def get_config(self) -> dict:
        def listed(v):
            return None if v is None else v.tolist()

        return {**super().get_config(), "axis": self.axis, "invert": self.invert,
                "mean": listed(self.input_mean), "variance": listed(self.input_variance)}

    @classmethod
    def from_config(cls, config):
        cfg = dict(config)
        if isinstance(cfg.get("axis"), list):
            cfg["axis"] = tuple(cfg["axis"])
        return super().from_config(cfg)


class Rescaling(_Preprocessing):
    """``x * scale + offset`` (e.g. ``Rescaling(1 / 255)`` for pixel values).

    Args:
        scale, offset: numbers.
    """

    supports_masking = True

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = real_in(scale, "scale", float("-inf"), float("inf"), lo_open=True,
                             hi_open=True)
        self.offset = real_in(offset, "offset", float("-inf"), float("inf"), lo_open=True,
                              hi_open=True)

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        (y,) = spec.add_node("binary_scalar", [x], [shape], [],
                             {"fn": "multiply", "scalar": self.scale, "reverse": False},
                             self.name)
        return spec.add_node("binary_scalar", [y], [shape], [],
                             {"fn": "add", "scalar": self.offset, "reverse": False}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


# --- Discretization: Keras's quantile summary, written out ----------------------------------
def _summarize(values: np.ndarray, epsilon: float) -> np.ndarray:
    """(2, k) summary of sorted values: every step-th value and its weight (step values each),
    with step = max(len / (1 / epsilon), 1)."""
    v = np.sort(values.reshape(-1))
    step = max(v.size * epsilon, 1)
    picked = v[int(step - 1)::int(step)]
    return np.stack([picked, np.full_like(picked, step)])


def _compress(summary: np.ndarray, epsilon: float) -> np.ndarray:
    """Re-samples a weighted summary at cumulative-weight fractions epsilon, 2 epsilon, ...,
    interpolating values and cumulative weights (left as is when already small)."""
    if summary.shape[1] * epsilon < 1:
        return summary
    fractions = epsilon + np.arange(0.0, 1.0, epsilon)
    cum = summary[1].cumsum()
    at = cum / cum[-1]
    values = np.interp(fractions, at, summary[0])
    cum_new = np.interp(fractions, at, cum)
    weights = cum_new - np.concatenate(([0.0], cum_new[:-1]))
    return np.stack([values, weights]).astype(np.float32)


class Discretization(_Preprocessing):
    """Buckets values: output i where ``bin_boundaries[i-1] <= x < bin_boundaries[i]`` (0
    below the first boundary, len(boundaries) from the last one up), as ``np.digitize``.

    Args:
        bin_boundaries: sorted list of numbers; or
        num_bins: with `adapt(data)`, boundaries at approximate quantiles (Keras's algorithm,
            precision `epsilon`).
        output_mode: "int" (the bucket index; float32 inside a model graph, int64 when the
            layer is called on an array).
    """

    _takes_activity_regularizer = False

    def __init__(self, bin_boundaries=None, num_bins=None, epsilon=0.01, output_mode="int",
                 sparse=False, **kwargs):
        super().__init__(**kwargs)
        if output_mode != "int":
            raise ValueError(f"output_mode: pynn supports 'int'. Received: "
                             f"output_mode={output_mode!r}")
        if sparse:
            raise ValueError("sparse: pynn has no sparse tensors; use False")
        if num_bins is not None and bin_boundaries is not None:
            # after adapt both are set (Keras's config); the boundaries win
            num_bins = positive_int(num_bins, "num_bins")
        elif num_bins is not None:
            num_bins = positive_int(num_bins, "num_bins")
        elif bin_boundaries is None:
            raise ValueError("bin_boundaries or num_bins: one is required")
        if bin_boundaries is not None:
            b = np.asarray(bin_boundaries, np.float64)
            if b.ndim != 1 or not np.all(np.isfinite(b)) or np.any(np.diff(b) < 0):
                raise ValueError(f"bin_boundaries: expected a sorted list of finite numbers. "
                                 f"Received: bin_boundaries={bin_boundaries!r}")
            bin_boundaries = [float(v) for v in b]
        self.bin_boundaries = bin_boundaries
        self.num_bins = num_bins
        self.epsilon = real_in(epsilon, "epsilon", 0.0, 1.0, lo_open=True)
        self.output_mode = output_mode

    def adapt(self, data: Any) -> None:
        if self.num_bins is None:
            raise ValueError(f"{self.name}: adapt() needs num_bins (the layer was made with "
                             f"bin_boundaries)")
        batches = [data] if isinstance(data, np.ndarray) or not hasattr(data, "__iter__") \
            else list(data)
        summary = np.zeros((2, 0), np.float32)
        for b in batches:
            arr = np.asarray(b, np.float32)
            if arr.dtype.kind not in "fiub" or arr.size == 0:
                raise ValueError("data: expected non-empty arrays of numbers")
            merged = np.concatenate([_summarize(arr, self.epsilon), summary], axis=1)
            summary = _compress(merged[:, np.argsort(merged[0], kind="stable")], self.epsilon)
        self.bin_boundaries = [float(v) for v in _compress(summary, 1.0 / self.num_bins)[0, :-1]]

    def _eager_result(self, out, squeezed):
        return super()._eager_result(out, squeezed).astype(np.int64)

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        if self.bin_boundaries is None:
            raise ValueError(f"{self.name}: pass bin_boundaries or call adapt() before use")
        shape = spec.shapes[x]
        if not self.bin_boundaries:
            return spec.add_node("binary_scalar", [x], [shape], [],
                                 {"fn": "multiply", "scalar": 0.0, "reverse": False}, self.name)
        hits = [spec.add_node("binary_scalar", [x], [shape], [],
                              {"fn": "greater_equal", "scalar": b, "reverse": False},
                              self.name)[0] for b in self.bin_boundaries]
        if len(hits) == 1:
            return hits
        return spec.add_node("add", hits, [shape], [], {}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "bin_boundaries": self.bin_boundaries,
                "num_bins": self.num_bins, "epsilon": self.epsilon,
                "output_mode": self.output_mode, "sparse": False}


class CategoryEncoding(_Preprocessing):
    """Integer categories in [0, num_tokens) to vectors of length num_tokens.

    Args:
        num_tokens: the number of categories.
        output_mode: "multi_hot" (default: 1 where any value of the sample is that
            category), "one_hot" (one row per value; a trailing axis of 1 is replaced) or
            "count" (how often each category occurs in the sample).

    Shapes: (batch,) or (batch, 1) -> (batch, num_tokens); (batch, k) -> (batch, num_tokens)
    for multi_hot/count, (batch, k, num_tokens) for one_hot. Values outside the range raise
    when the layer is called on an array; inside a model graph they give zero rows.
    """

    MODES = ("one_hot", "multi_hot", "count")

    def __init__(self, num_tokens=None, output_mode="multi_hot", sparse=False, **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = positive_int(num_tokens, "num_tokens")
        if output_mode not in self.MODES:
            raise ValueError(f"output_mode: expected one of {self.MODES}. Received: "
                             f"output_mode={output_mode!r}")
        if sparse:
            raise ValueError("sparse: pynn has no sparse tensors; use False")
        self.output_mode = output_mode

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, (np.ndarray, list, tuple)):
            arr = _as_batch(inputs, self.name)
            if arr.size and (arr.min() < 0 or arr.max() >= self.num_tokens
                             or np.any(arr != np.floor(arr))):
                raise ValueError(f"{self.name}: expected integer values in [0, "
                                 f"{self.num_tokens}), got values from {arr.min()} to "
                                 f"{arr.max()}")
            if arr.ndim == 1 and self.output_mode != "one_hot":
                # Keras: a rank-1 input is one sample's values
                return super().__call__(arr[None, :], *args, **kwargs)[0]
            inputs = arr
        return super().__call__(inputs, *args, **kwargs)

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        t = self.num_tokens
        (oh,) = spec.add_node("one_hot", [x], [shape + (t,)], [], {"num_classes": t},
                              self.name)
        if self.output_mode == "one_hot":
            if shape[-1] != 1:
                return [oh]
            return spec.add_node("reshape", [oh], [shape[:-1] + (t,)], [],
                                 {"target_shape": list(shape[:-1] + (t,))}, self.name)
        fn = "max" if self.output_mode == "multi_hot" else "sum"
        return spec.add_node("reduce", [oh], [shape[:-1] + (t,)], [],
                             {"fn": fn, "axes": [len(shape) - 1], "keepdims": False}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_tokens": self.num_tokens,
                "output_mode": self.output_mode, "sparse": False}
