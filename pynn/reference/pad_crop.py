"""NumPy twin of the pad_crop op (csrc/nn/ops/pad_crop.cpp): per-axis zero padding
(positive amounts) and cropping (negative amounts) of each sample; backward is the reverse
copy."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _windows(shape: Sequence[int], before: Sequence[int], after: Sequence[int]):
    """The output shape and, per sample axis, the kept slices of the input and output."""
    out = tuple(n + b + a for n, b, a in zip(shape, before, after))
    src, dst = [], []
    for n, b, o in zip(shape, before, out):
        i0, o0 = max(0, -b), max(0, b)
        length = min(n - i0, o - o0)
        src.append(slice(i0, i0 + length))
        dst.append(slice(o0, o0 + length))
    return out, tuple(src), tuple(dst)


def pad_crop_forward(x: np.ndarray, before: Sequence[int], after: Sequence[int]) -> np.ndarray:
    """x (batch, *s) -> (batch, *(s + before + after)), zeros where padded."""
    out, src, dst = _windows(x.shape[1:], before, after)
    y = np.zeros((x.shape[0],) + out, x.dtype)
    y[(slice(None),) + dst] = x[(slice(None),) + src]
    return y


def pad_crop_backward(shape: Sequence[int], dy: np.ndarray, before: Sequence[int],
                      after: Sequence[int]) -> np.ndarray:
    """The gradient for an input of (batch) `shape`: dy's kept block put back, zeros
    elsewhere."""
    _, src, dst = _windows(tuple(shape)[1:], before, after)
    dx = np.zeros(tuple(shape), dy.dtype)
    dx[(slice(None),) + src] = dy[(slice(None),) + dst]
    return dx


def _forward(node, xs, ps, run):
    return pad_crop_forward(xs[0], node.attrs["before"], node.attrs["after"]), xs[0].shape


def _backward(node, shape, dy):
    return [pad_crop_backward(shape, dy, node.attrs["before"], node.attrs["after"])], []


OPS = {"pad_crop": (_forward, _backward)}
