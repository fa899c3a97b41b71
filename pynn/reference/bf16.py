"""bfloat16 rounding and the bf16 GEMM (``pynn._core.sbgemm``), in NumPy.

bfloat16 keeps float32's sign and 8-bit exponent and the top 7 bits of its mantissa. The core
rounds float32 to bfloat16 to nearest, ties to even; a NaN stays a (quiet) NaN, a result
below the smallest normal float32 becomes a zero of the same sign (the bf16 dot-product
instructions read such inputs as zero, so every kernel path does the same).

The GEMM multiplies the rounded operands and sums in float32. A product of two bf16 values
has at most 16 significant bits, so it is exact in float32; only the summation rounds, and its
order depends on the kernel. `sbgemm` here computes the sum in `dtype` (float64 by default:
the truth the kernels are measured against). On a few rows of `a` it is also the twin of the
row kernels (csrc/gemm/sbgemv.h: up to 8 rows per rounded weight vector, the weights rounded
in registers, no packing), which compute the core's sbgemm rows bit for bit.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def round_bf16(x: Any) -> np.ndarray:
    """Rounds float32 values to the nearest bfloat16; returns float32 holding those values."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    r = np.where((r & 0x7F800000) == 0, r & 0x80000000, r)  # below FLT_MIN: signed zero
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = np.where(nan, (u | 0x00400000) & 0xFFFF0000, r)
    return r.astype(np.uint32).view(np.float32).reshape(np.shape(x))


def sbgemm(a: Any, b: Any, *, beta: float = 0.0, out: Any = None, bias: Any = None,
           dtype: Any = np.float64) -> np.ndarray:
    """``bf16(a) @ bf16(b) + beta * out + bias`` with the sum computed in `dtype`.

    With ``beta == 0`` `out` is ignored (it may hold NaN).
    """
    z = round_bf16(a).astype(dtype) @ round_bf16(b).astype(dtype)
    if beta != 0.0:
        z = z + beta * np.asarray(out, dtype=dtype)
    if bias is not None:
        z = z + np.asarray(bias, dtype=dtype)
    return z
