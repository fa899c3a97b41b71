"""Utilities: seeding, label encoding, the progress bar."""
from __future__ import annotations

import numbers
import random

import numpy as np

from pynn import _random

__all__ = ["set_random_seed", "to_categorical", "Progbar", "resolve_verbose",
           # data loading (pynn.utils.dataset and the *_utils modules, imported on first use)
           "Dataset", "PyDataset", "image_dataset_from_directory", "text_dataset_from_directory",
           "timeseries_dataset_from_array", "split_dataset", "pad_sequences"]

# public name -> the module that defines it (imported lazily: `import pynn` stays fast)
_LAZY = {
    "Progbar": "progbar", "resolve_verbose": "progbar",
    "Dataset": "dataset", "PyDataset": "py_dataset",
    "image_dataset_from_directory": "image_dataset_utils",
    "text_dataset_from_directory": "text_dataset_utils",
    "timeseries_dataset_from_array": "sequence_utils", "pad_sequences": "sequence_utils",
    "split_dataset": "dataset_utils",
}


def set_random_seed(seed: int) -> None:
    """Seeds everything pynn draws at random (initial weights, shuffling, dropout), and
    Python's and NumPy's global generators as Keras does.

    The same seed gives bitwise-identical training whatever the thread count.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed: expected an integer, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _random.seed(seed)


def to_categorical(x, num_classes=None) -> np.ndarray:
    """One-hot encodes integer class labels (Keras's ``utils.to_categorical``).

    Args:
        x: array-like of non-negative integer labels, any shape.
        num_classes: total number of classes; default ``max(x) + 1``.

    Returns:
        float32 array of shape ``x.shape + (num_classes,)`` (a trailing axis of 1 in `x` is
        dropped first, as Keras does).

    Example:
        >>> to_categorical([0, 2], 3)
        array([[1., 0., 0.],
               [0., 0., 1.]], dtype=float32)
    """
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError("x: expected integer class labels, got non-integer values")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"x: expected integer class labels, got dtype {arr.dtype}")
    if arr.ndim > 1 and arr.shape[-1] == 1:
        arr = arr.reshape(arr.shape[:-1])
    if arr.size and arr.min() < 0:
        raise ValueError(f"x: labels must be non-negative, got {arr.min()}")
    if num_classes is None:
        num_classes = int(arr.max()) + 1 if arr.size else 0
    elif (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
          or num_classes < 1):
        raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
    if arr.size and arr.max() >= num_classes:
        raise ValueError(f"x: label {arr.max()} is out of range for num_classes={num_classes}")
    out = np.zeros(arr.shape + (int(num_classes),), dtype=np.float32)
    np.put_along_axis(out, arr[..., None], 1.0, axis=-1)
    return out


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"pynn.utils.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'pynn.utils' has no attribute {name!r}")
