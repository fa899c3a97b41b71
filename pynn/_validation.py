"""Shared checks that turn bad arguments into clear Python exceptions."""
from __future__ import annotations

import numbers

import numpy as np


def as_float32_array(x, name: str, *, ndim: int | None = None):
    """Returns `x` as a float32 ndarray, converting real dtypes explicitly.

    Views (transposed, strided) are kept as views when already float32. Complex, object,
    string and other non-real dtypes raise TypeError naming the argument.
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name}: expected an array of real numbers, got {type(x).__name__}"
                            f" that NumPy cannot convert ({exc})") from None
    kind = arr.dtype.kind
    if kind not in "fiu":
        raise TypeError(f"{name}: expected an array of real numbers, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got {arr.ndim}-D with shape "
                         f"{arr.shape}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    elif arr.ndim and any(s % 4 for s in arr.strides):
        arr = np.array(arr, dtype=np.float32)
    return arr


def check_real_scalar(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {x!r} ({type(x).__name__})")
    return float(x)
