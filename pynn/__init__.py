"""pynn: a fast CPU neural-network engine with a Keras-style API.

    import pynn
    model = pynn.Sequential([pynn.Input((784,)),
                             pynn.layers.Dense(128, activation="relu"),
                             pynn.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5, batch_size=128)

The compiled core (`pynn._core`) does the arithmetic; `pynn.reference` holds the same math in
plain NumPy; everything else is the Python face.
"""
from __future__ import annotations

import importlib

from pynn import _core

if _core.arch_error():
    raise ImportError(_core.arch_error())

from pynn import activations, initializers, layers, losses, ops, optimizers, regularizers  # noqa: E402
from pynn._threads import get_num_threads, set_num_threads  # noqa: E402
from pynn.layers import Input  # noqa: E402
from pynn.models import Model, Sequential, load_model  # noqa: E402

__version__ = "0.1.0"

# Imported on first use, to keep `import pynn` fast.
_LAZY = {"callbacks", "datasets", "metrics", "utils", "models", "reference", "plot", "sklearn",
         "saving", "serve", "mixed_precision"}


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"pynn.{name}")
    raise AttributeError(f"module 'pynn' has no attribute {name!r}")


def kernel_info() -> dict:
    """Which GEMM micro-kernel and blocksizes are in use (chosen from cpuid or PYNN_ARCH)."""
    return dict(_core.kernel_info())


__all__ = ["Input", "Model", "Sequential", "activations", "get_num_threads", "initializers",
           "kernel_info", "layers", "load_model", "losses", "ops", "optimizers", "regularizers",
           "set_num_threads", "__version__"]
