"""Helpers for the tests that hold pynn to Keras 3 itself (torch backend, set by conftest)."""
from __future__ import annotations

import zlib

import numpy as np


def case_rng(*key) -> np.random.Generator:
    """A generator seeded from the test's own key (stable across runs and test order)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def to_numpy(t) -> np.ndarray:
    """A Keras (torch backend) tensor as an array (keras.ops.convert_to_numpy warns under
    NumPy 2, and the suite turns warnings into errors)."""
    return t.detach().cpu().numpy()

