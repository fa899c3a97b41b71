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



def keras_pair(name, shape, kwargs, seed, batch=3):
    """One layer `name(**kwargs)` on inputs of per-sample `shape`, in a Keras Sequential and
    in a pynn one holding Keras's weights (perturbed, so that a zero bias or a unit scale
    cannot hide a mistake), and a random batch for both."""
    import keras

    import pynn

    rng = np.random.default_rng(seed)
    k = keras.Sequential([keras.Input(shape), getattr(keras.layers, name)(**kwargs)])
    weights = [w + 0.2 * rng.standard_normal(w.shape).astype(np.float32)
               for w in k.get_weights()]
    k.set_weights(weights)
    p = pynn.Sequential([pynn.Input(shape), getattr(pynn.layers, name)(**kwargs)])
    assert [w.shape for w in p.get_weights()] == [w.shape for w in weights]
    p.set_weights(weights)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    return k, p, x


def sgd_step_both(k, p, x, target, lr=0.1, loss="mse"):
    """One SGD step of a Keras and a pynn model on the same batch."""
    import keras

    import pynn

    k.compile(optimizer=keras.optimizers.SGD(lr), loss=loss)
    p.compile(optimizer=pynn.optimizers.SGD(lr), loss=loss)
    k.train_on_batch(x, target)
    p.train_on_batch(x, target)
