"""The NumPy twin of every kernel of the compiled core.

Plain, readable NumPy that computes what the C++ core computes, in any float dtype (the tests
use float64 as the truth). Read it to learn the math; the tests use it to prove the core right.

Modules: `gemm`, `bf16` (bfloat16 rounding and the bf16 GEMM), `activations`, `losses`,
`dense`, `regularization` (dropout, batch normalisation, L1/L2), `optimizers`, `initializers`,
`merging` (merge and shape ops of the graph), `ops` (the ops of `pynn.ops`), `conv`
(convolution and pooling), and `graph` (runs a whole `GraphSpec`: forward, loss and
backpropagation).
"""
import importlib

from pynn.reference.gemm import gemm

_MODULES = ("activations", "bf16", "conv", "dense", "gemm", "graph", "initializers", "losses",
            "merging", "ops", "optimizers", "regularization")


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"pynn.reference.{name}")
    raise AttributeError(f"module 'pynn.reference' has no attribute {name!r}")


__all__ = ["gemm", *_MODULES]
