"""Dense layers whose activation is differentiated from the output y (relu, sigmoid, tanh:
the graph keeps no copy of the pre-activation z for them) train bitwise as the same layer
split into a linear Dense and an Activation layer, which differentiates from z. The inputs
put exact zeros into z (rows of zeros, zero bias), where relu's derivative is 0 by pynn's
convention; activations that need z (elu, softplus, silu) are the control: were they
given y instead, the comparison would fail. The arena shrinks by the z the layer no longer
keeps, on 1 and 2 threads alike."""
from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import layers
from pynn import mixed_precision as mp

ACTS_FROM_Y = ["relu", "sigmoid", "tanh"]
ACTS_FROM_Z = ["elu", "softplus", "silu"]


def _data(rows=67, features=19, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features)).astype(np.float32)
    x[::5] = 0.0  # with the zero bias of the first step: z exactly 0 on these rows
    y = rng.integers(0, 4, rows)
    return x, y


def _train(fused: bool, act: str, x, y, threads: int, policy: str = "float32"):
    mp.set_global_policy(policy)
    try:
        pynn.utils.set_random_seed(3)
        if fused:
            hidden = [layers.Dense(33, activation=act), layers.Dense(21, activation=act)]
        else:
            hidden = [layers.Dense(33), layers.Activation(act),
                      layers.Dense(21), layers.Activation(act)]
        model = pynn.Sequential([pynn.Input((x.shape[1],)), *hidden,
                                 layers.Dense(4, activation="softmax")])
    finally:
        mp.set_global_policy("float32")
    model.compile(optimizer=pynn.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    before = pynn.get_num_threads()
    pynn.set_num_threads(threads)
    try:
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=True)
    finally:
        pynn.set_num_threads(before)
    return model


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("act", ACTS_FROM_Y + ACTS_FROM_Z)
def test_fused_activation_trains_as_separate_layer(act, policy):
    x, y = _data()
    fused = _train(True, act, x, y, 1, policy)
    split = _train(False, act, x, y, 1, policy)
    for a, b in zip(fused.get_weights(), split.get_weights()):
        assert a.view(np.uint32).tolist() == b.view(np.uint32).tolist()
    two = _train(True, act, x, y, 2, policy)
    for a, b in zip(fused.get_weights(), two.get_weights()):
        assert a.view(np.uint32).tolist() == b.view(np.uint32).tolist()


def test_no_preactivation_kept_for_output_derivatives():
    x, y = _data(rows=64)
    # relu keeps no z; leaky_relu (derivative from z) keeps 64 x (33 + 21) floats of it
    relu = _train(True, "relu", x, y, 1).memory_info()["train_activation_bytes"]
    leaky = _train(True, "leaky_relu", x, y, 1).memory_info()["train_activation_bytes"]
    assert leaky - relu >= 4 * 16 * (33 + 21)  # at least the last batch's z (16 rows)
