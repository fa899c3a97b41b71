"""pynn's global random state: one seed fixes initial weights, shuffling and dropout.

Every consumer asks this module for a fresh 63-bit seed; the sequence of seeds handed out is
fixed by the seed given to `pynn.utils.set_random_seed`, so a script that seeds once is
reproducible bitwise (the kernels are counter-based and thread-count independent).
"""
from __future__ import annotations

import threading

import numpy as np

_state = {"rng": np.random.default_rng()}
# Per thread: a private stream that replaces the global one while a model is rebuilt from
# saved state (see `detached`).
_local = threading.local()


def seed(value: int) -> None:
    _state["rng"] = np.random.default_rng(value)


def next_seed() -> int:
    rng = getattr(_local, "rng", None)
    return int((_state["rng"] if rng is None else rng).integers(0, 2**63 - 1))


class detached:
    """Context: seeds drawn in this thread come from a private, fixed stream and leave the
    global one untouched. Rebuilding a saved model uses it: the seeds its layers draw while
    being built (dropout, rrelu) are replaced by the saved ones right after."""

    def __enter__(self):
        self.saved = getattr(_local, "rng", None)
        _local.rng = np.random.default_rng(0)
        return self

    def __exit__(self, *exc):
        _local.rng = self.saved


def generator(seed_value: int | None = None) -> np.random.Generator:
    """A NumPy generator from an explicit seed, or the next seed of the global stream."""
    return np.random.default_rng(next_seed() if seed_value is None else seed_value)
