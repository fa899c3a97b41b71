"""pynn's global random state: one seed fixes initial weights, shuffling and dropout.

Every consumer asks this module for a fresh 63-bit seed; the sequence of seeds handed out is
fixed by the seed given to `pynn.utils.set_random_seed`, so a script that seeds once is
reproducible bitwise (the kernels are counter-based and thread-count independent).
"""
from __future__ import annotations

import numpy as np

_state = {"rng": np.random.default_rng()}


def seed(value: int) -> None:
    _state["rng"] = np.random.default_rng(value)


def next_seed() -> int:
    return int(_state["rng"].integers(0, 2**63 - 1))


def generator(seed_value: int | None = None) -> np.random.Generator:
    """A NumPy generator from an explicit seed, or the next seed of the global stream."""
    return np.random.default_rng(next_seed() if seed_value is None else seed_value)
