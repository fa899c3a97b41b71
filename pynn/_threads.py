"""Thread control for the compiled core.

pynn runs on OpenMP (the compiler's runtime, libgomp with g++). The thread count is OpenMP's
own setting, so ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` govern pynn
exactly as they govern other OpenMP libraries.
"""
from __future__ import annotations

import numbers

from pynn import _core


def get_num_threads() -> int:
    """The number of threads pynn's kernels may use."""
    return int(_core.get_num_threads())


def set_num_threads(n: int) -> None:
    """Sets the number of threads pynn's kernels may use (a positive integer)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n: expected a positive integer, got {n!r} ({type(n).__name__})")
    if n < 1:
        raise ValueError(f"n: expected a positive integer, got {n}")
    _core.set_num_threads(int(n))
