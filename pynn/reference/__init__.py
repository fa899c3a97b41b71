"""The NumPy twin of every kernel of the compiled core.

Plain, readable NumPy that computes what the C++ core computes, in any float dtype (the tests
use float64 as the truth). Read it to learn the math; the tests use it to prove the core right.
"""
from pynn.reference.gemm import gemm

__all__ = ["gemm"]
