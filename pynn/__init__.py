"""pynn: a fast CPU neural-network engine with a Keras-style API.

The compiled core (`pynn._core`) does the arithmetic; `pynn.reference` holds the same math in
plain NumPy; everything else is the Python face.
"""
from __future__ import annotations

from pynn import _core

if _core.arch_error():
    raise ImportError(_core.arch_error())

from pynn._threads import get_num_threads, set_num_threads  # noqa: E402
from pynn import ops  # noqa: E402

__version__ = "0.1.0"


def kernel_info() -> dict:
    """Which GEMM micro-kernel and blocksizes are in use (chosen from cpuid or PYNN_ARCH)."""
    return dict(_core.kernel_info())


__all__ = ["get_num_threads", "kernel_info", "ops", "set_num_threads", "__version__"]
