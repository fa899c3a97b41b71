"""Plots of training and of what a network learned (needs matplotlib: `pip install pynn[plot]`).

Every function returns a `matplotlib.figure.Figure`; save it with `fig.savefig("x.png")`, or let
Jupyter show it. When your program already uses `matplotlib.pyplot`, the figures are made with
pyplot (so `plt.show()` shows them); otherwise they are standalone figures that need no display
and are freed with their last reference.

    history(model.fit(...))                       # loss and metric curves, train vs validation
    confusion_matrix(y_true, y_pred, class_names=fashion_mnist.class_names)
    weight_histograms(model)                      # one histogram per weight tensor
    first_layer_weights(model)                    # first Dense layer's units as 28x28 images
    saliency(model, x_test[:4])                   # |d class score / d pixel|, from the engine
    conv_filters(model)                           # first Conv2D layer's kernels as images
    feature_maps(model, x_test[0])                # that layer's output channels for one image
"""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from pynn.callbacks import History
    from pynn.models.model import Model

__all__ = ["confusion_matrix", "conv_filters", "feature_maps", "first_layer_weights", "history",
           "saliency", "weight_histograms"]


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("pynn.plot needs matplotlib: pip install pynn[plot]") from None
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND") and \
            sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or
                                                      os.environ.get("WAYLAND_DISPLAY")):
        # No screen: pick the file-only backend before pyplot is ever imported.
        matplotlib.use("Agg")
    return matplotlib


def _figure(figsize):
    _matplotlib()
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _grid(fig, count, max_cols):
    cols = min(max_cols, count)
    rows = math.ceil(count / cols)
    return [fig.add_subplot(rows, cols, i + 1) for i in range(count)]


# ---------------------------------------------------------------------------------------------

def history(history_or_dict: History | Mapping[str, Sequence[float]],
            metrics: Sequence[str] | None = None, ax: Axes | None = None) -> Figure:
    """Training curves: one panel per metric, the training and (if logged) validation values
    against the epoch.

    Args:
        history_or_dict: the `History` that `fit` returns, or its `.history` dict
            ({"loss": [...], "val_loss": [...], ...}).
        metrics: names to plot (without "val_"); default every logged metric except the
            learning rate.
        ax: an Axes to draw into (all the metrics go on it); default a new figure.
    """
    logs = getattr(history_or_dict, "history", history_or_dict)
    if not isinstance(logs, dict):
        raise TypeError(f"history_or_dict: expected a History or a dict of lists, got "
                        f"{type(history_or_dict).__name__}")
    if metrics is None:
        metrics = [k for k in logs if not k.startswith("val_") and k not in
                   ("learning_rate", "lr")]
        metrics += [k[4:] for k in logs if k.startswith("val_") and k[4:] not in logs]
    elif isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    if not metrics:
        raise ValueError("history_or_dict: no metrics logged to plot")
    _matplotlib()
    from matplotlib.ticker import MaxNLocator

    for name in metrics:
        if name not in logs and "val_" + name not in logs:
            raise ValueError(f"metrics: {name!r} was not logged; logged: {sorted(logs)}")
    if ax is None:
        fig = _figure((4.2 * min(len(metrics), 3), 3.4 * math.ceil(len(metrics) / 3)))
        axes = _grid(fig, len(metrics), 3)
    else:
        fig, axes = ax.figure, [ax] * len(metrics)
    for a, name in zip(axes, metrics):
        for key, style, label in ((name, "-o", "training"), ("val_" + name, "--s",
                                                              "validation")):
            if key in logs:
                values = np.asarray(logs[key], dtype=np.float64)
                epochs = np.arange(1, len(values) + 1)
                a.plot(epochs, values, style, markersize=3,
                       label=label if ax is None else f"{label} {name}")
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_ylabel(name if ax is None else "value")
        if ax is None:
            a.set_title(name)
        a.grid(True, alpha=0.3)
        a.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(cm_or_y_true: ArrayLike, y_pred: ArrayLike | None = None,
                     class_names: Sequence[str] | None = None, normalize: bool = False,
                     ax: Axes | None = None) -> Figure:
    """The confusion matrix as a heat map, rows the true class and columns the predicted one,
    every cell labelled with its count (or fraction).

    Args:
        cm_or_y_true: a square matrix of counts, or the true labels when `y_pred` is given.
        y_pred: predicted labels (then the matrix is computed with `pynn.metrics`).
        class_names: names for the rows and columns; their number fixes the class count.
        normalize: False (counts), True or "true" (each row sums to 1: recall per class),
            "pred" (each column sums to 1) or "all".
        ax: an Axes to draw into; default a new figure.
    """
    from pynn import metrics as metrics_mod

    if y_pred is None:
        cm = np.asarray(cm_or_y_true)
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
            raise ValueError(f"cm_or_y_true: expected a square matrix (or labels with y_pred), "
                             f"got shape {cm.shape}")
        if cm.dtype.kind not in "iuf" or not np.all(np.isfinite(cm)) or np.any(cm < 0):
            raise ValueError("cm_or_y_true: expected non-negative finite counts")
    else:
        k = None if class_names is None else len(class_names)
        cm = metrics_mod.confusion_matrix(cm_or_y_true, y_pred, num_classes=k)
    k = cm.shape[0]
    if class_names is None:
        class_names = [str(i) for i in range(k)]
    class_names = [str(c) for c in class_names]
    if len(class_names) != k:
        raise ValueError(f"class_names: expected {k} names for a {k}x{k} matrix, got "
                         f"{len(class_names)}")
    if normalize not in (False, True, "true", "pred", "all"):
        raise ValueError(f"normalize: expected False, True, 'true', 'pred' or 'all', got "
                         f"{normalize!r}")
    values = cm.astype(np.float64)
    if normalize:
        axis = {True: 1, "true": 1, "pred": 0, "all": None}[normalize]
        total = values.sum(axis=axis, keepdims=axis is not None)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(total > 0, values / np.where(total > 0, total, 1), 0.0)
    if ax is None:
        size = max(4.0, 0.55 * k + 2.5)
        fig = _figure((size + 1.0, size))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    image = ax.imshow(values, cmap="Blues", interpolation="nearest",
                      vmin=0.0, vmax=values.max() if values.max() > 0 else 1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(np.arange(k))
    ax.set_yticks(np.arange(k))
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (normalised)" if normalize else ""))
    threshold = values.max() / 2.0
    for i in range(k):
        for j in range(k):
            text = f"{values[i, j]:.2f}" if normalize else f"{int(round(values[i, j]))}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] > threshold else "black")
    fig.tight_layout()
    return fig


def _named_weights(model):
    """[(label, array)] of every weight tensor, in get_weights order."""
    out = []
    for layer in model.layers:
        weights = layer.get_weights()
        names = ["kernel", "bias"] if len(weights) == 2 and weights[0].ndim == 2 else \
            [f"weight {i}" for i in range(len(weights))]
        for name, w in zip(names, weights):
            out.append((f"{layer.name} {name} {tuple(w.shape)}", np.asarray(w)))
    return out


def weight_histograms(model: Model, bins: int = 50) -> Figure:
    """One histogram per weight tensor (kernels and biases), to spot dead or exploding layers."""
    named = _named_weights(model)
    if not named:
        raise ValueError("model: it has no weights to plot")
    cols = min(len(named), 4)
    fig = _figure((3.4 * cols, 2.8 * math.ceil(len(named) / cols)))
    for a, (label, w) in zip(_grid(fig, len(named), 4), named):
        a.hist(w.ravel(), bins=bins, color="tab:blue", alpha=0.8)
        a.set_title(label, fontsize=9)
        a.set_xlabel(f"mean {w.mean():.3g}, std {w.std():.3g}", fontsize=8)
    fig.tight_layout()
    return fig


def _first_dense_kernel(model):
    for layer in model.layers:
        weights = layer.get_weights()
        if hasattr(layer, "units") and weights and weights[0].ndim == 2:
            return layer, weights[0]
    raise ValueError("model: it has no Dense layer")


def first_layer_weights(model: Model, image_shape: Sequence[int] = (28, 28),
                        n: int = 16) -> Figure:
    """The incoming weights of the first Dense layer's first `n` units, each drawn as an image
    (red positive, blue negative): the patterns each unit responds to."""
    layer, kernel = _first_dense_kernel(model)
    image_shape = tuple(int(s) for s in image_shape)
    if int(np.prod(image_shape)) != kernel.shape[0]:
        raise ValueError(f"image_shape: {image_shape} has {int(np.prod(image_shape))} pixels, "
                         f"but {layer.name} takes {kernel.shape[0]} inputs")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    n = min(n, kernel.shape[1])
    cols = math.ceil(math.sqrt(n))
    fig = _figure((1.6 * cols, 1.6 * math.ceil(n / cols) + 0.4))
    for unit, a in enumerate(_grid(fig, n, cols)):
        w = kernel[:, unit].reshape(image_shape)
        limit = float(np.abs(w).max()) or 1.0
        a.imshow(w, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        a.set_title(f"unit {unit}", fontsize=8)
        a.axis("off")
    fig.suptitle(f"{layer.name}: input weights")
    fig.tight_layout()
    return fig


def saliency(model: Model, x: ArrayLike, class_index: int | None = None,
             image_shape: Sequence[int] = (28, 28)) -> Figure:
    """Which input pixels most move a class score: |d score / d input| per sample, computed by
    the engine (`model.input_gradient`), beside the input itself.

    Args:
        model: a built model.
        x: one sample or a batch (at most 8 are drawn).
        class_index: the class to explain (int or one per sample); default each sample's
            predicted class.
        image_shape: how to show a sample's values as an image.
    """
    x = np.asarray(x)
    image_shape = tuple(int(s) for s in image_shape)
    size = int(np.prod(image_shape))
    sample_size = int(np.prod(model.input_shape[1:])) if model.input_shape else None
    if x.size == (sample_size or -1) and x.shape[0] != 1:
        x = x.reshape((1,) + tuple(model.input_shape[1:]))  # a single sample
    if sample_size is not None and sample_size != size:
        raise ValueError(f"image_shape: {image_shape} has {size} values, but the model takes "
                         f"samples of {sample_size}")
    if class_index is None:
        class_index = np.argmax(model.predict(x, verbose=0), axis=1)
    grad = model.input_gradient(x, class_index)
    count = min(x.shape[0], 8)
    classes = np.broadcast_to(np.asarray(class_index), (x.shape[0],))
    fig = _figure((4.0, 2.0 * count + 0.3))
    for i in range(count):
        a = fig.add_subplot(count, 2, 2 * i + 1)
        a.imshow(x[i].reshape(image_shape), cmap="gray", interpolation="nearest")
        a.set_title("input", fontsize=8)
        a.axis("off")
        b = fig.add_subplot(count, 2, 2 * i + 2)
        b.imshow(np.abs(grad[i]).reshape(image_shape), cmap="hot", interpolation="nearest")
        b.set_title(f"saliency, class {int(classes[i])}", fontsize=8)
        b.axis("off")
    fig.tight_layout()
    return fig


def _first_conv2d(model, layer=None):
    """(index in model.layers, layer) of `layer` (a name or a layer; default the first
    Conv2D), which must be a 2-D convolution with a 4-D kernel."""
    for i, candidate in enumerate(model.layers):
        if layer is None:
            if type(candidate).__name__ == "Conv2D":
                return i, candidate
        elif candidate is layer or candidate.name == layer:
            weights = candidate.get_weights()
            if not weights or np.asarray(weights[0]).ndim != 4:
                raise ValueError(f"layer: {candidate.name} is not a 2-D convolution "
                                 f"(expected a kernel of shape (kh, kw, in, filters))")
            return i, candidate
    if layer is None:
        raise ValueError("model: it has no Conv2D layer")
    raise ValueError(f"layer: no layer {layer!r} in the model; its layers are "
                     f"{[lay.name for lay in model.layers]}")


def _positive(n, name):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name}: expected a positive integer, got {n!r}")
    return n


def conv_filters(model: Model, layer: str | None = None, n: int = 32,
                 channel: int = 0) -> Figure:
    """The kernels of a Conv2D layer (default the first), one small image per filter (red
    positive, blue negative, each on its own symmetric scale): the local patterns the
    filters respond to, edges and blobs after training.

    Args:
        model: a built model.
        layer: the layer's name (default: the first Conv2D).
        n: at most this many filters are drawn.
        channel: which input channel's weights to draw (0 for grey images).
    """
    _, conv = _first_conv2d(model, layer)
    kernel = np.asarray(conv.get_weights()[0])          # (kh, kw, in, filters)
    n = min(_positive(n, "n"), kernel.shape[3])
    if isinstance(channel, bool) or not isinstance(channel, int) or \
            not 0 <= channel < kernel.shape[2]:
        raise ValueError(f"channel: expected an integer in [0, {kernel.shape[2]}) for "
                         f"{conv.name}, got {channel!r}")
    cols = min(8, n)
    fig = _figure((1.2 * cols, 1.2 * math.ceil(n / cols) + 0.5))
    for f, a in enumerate(_grid(fig, n, cols)):
        w = kernel[:, :, channel, f]
        limit = float(np.abs(w).max()) or 1.0
        a.imshow(w, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        a.set_title(f"{f}", fontsize=7)
        a.axis("off")
    fig.suptitle(f"{conv.name}: filters (input channel {channel})")
    fig.tight_layout()
    return fig


def _activations_up_to(model, index, x):
    """The output of model.layers[index] for the batch x, by running a copy of the layers up
    to it (same configurations, same weights) as its own model."""
    import pynn

    layers = [type(lay).from_config(lay.get_config()) for lay in model.layers[:index + 1]]
    sub = pynn.Sequential([pynn.Input(tuple(model.input_shape[1:]))] + layers)
    for src, dst in zip(model.layers[:index + 1], sub.layers):
        dst.set_weights(src.get_weights())
    return sub.predict(x, verbose=0)


def feature_maps(model: Model, image: ArrayLike, layer: str | None = None,
                 n: int = 16) -> Figure:
    """What a Conv2D layer (default the first) makes of one image: the input, then the first
    `n` output channels (feature maps) as grey images, each on its own scale.

    Args:
        model: a built Sequential model whose input is images (height, width, channels).
        image: one image, of the model's input shape (a leading batch axis of 1 is allowed).
        layer: the layer's name (default: the first Conv2D).
        n: at most this many feature maps are drawn.
    """
    index, conv = _first_conv2d(model, layer)
    n = _positive(n, "n")
    sample = tuple(model.input_shape[1:]) if model.input_shape else None
    x = np.asarray(image, dtype=np.float32)
    if sample is None or len(sample) != 3:
        raise ValueError(f"model: expected a model taking images (height, width, channels), "
                         f"its input shape is {model.input_shape}")
    if x.shape == sample:
        x = x[None]
    if x.shape != (1,) + sample:
        raise ValueError(f"image: expected one image of shape {sample}, got shape "
                         f"{np.asarray(image).shape}")
    maps = _activations_up_to(model, index, x)[0]
    if getattr(conv, "data_format", "channels_last") == "channels_first":
        maps = np.moveaxis(maps, 0, -1)
    n = min(n, maps.shape[-1])
    cols = min(8, n + 1)
    fig = _figure((1.5 * cols, 1.5 * math.ceil((n + 1) / cols) + 0.5))
    axes = _grid(fig, n + 1, cols)
    shown = x[0] if x.shape[-1] != 1 else x[0, :, :, 0]
    if shown.ndim == 3 and shown.shape[-1] not in (3, 4):
        shown = shown[:, :, 0]
    axes[0].imshow(shown, cmap="gray", interpolation="nearest")
    axes[0].set_title("input", fontsize=7)
    axes[0].axis("off")
    for f, a in enumerate(axes[1:]):
        a.imshow(maps[:, :, f], cmap="viridis", interpolation="nearest")
        a.set_title(f"{f}", fontsize=7)
        a.axis("off")
    fig.suptitle(f"{conv.name}: feature maps")
    fig.tight_layout()
    return fig
