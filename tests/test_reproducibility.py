"""One seed gives bitwise-identical training on any thread count."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent("""
    import sys, numpy as np, pynn
    from pynn import layers
    pynn.set_num_threads(int(sys.argv[1]))
    pynn.utils.set_random_seed(1234)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((700, 300)).astype(np.float32)
    y = rng.integers(0, 10, 700)
    model = pynn.Sequential([pynn.Input((300,)), layers.Dense(256, activation="relu"),
                             layers.Dropout(0.3), layers.BatchNormalization(),
                             layers.Dense(128, activation="tanh"),
                             layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    h = model.fit(x, y, epochs=2, batch_size=64, validation_split=0.1, verbose=0)
    np.savez(sys.argv[2], *model.get_weights(), loss=np.array(h.history["loss"]),
             pred=model.predict(x[:50], verbose=0))
""")


def run(threads, out):
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    subprocess.run([sys.executable, "-c", SCRIPT, str(threads), str(out)], check=True,
                   env=env, cwd=os.path.dirname(os.path.abspath(__file__)), timeout=300)
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def test_same_seed_same_weights_on_one_and_two_threads(tmp_path):
    one = run(1, tmp_path / "one.npz")
    two = run(2, tmp_path / "two.npz")
    again = run(2, tmp_path / "again.npz")
    assert one.keys() == two.keys()
    for key in one:
        assert np.array_equal(one[key], two[key]), key
        assert np.array_equal(two[key], again[key]), key


def test_different_seeds_differ():
    import pynn
    from pynn import layers

    def weights(seed):
        pynn.utils.set_random_seed(seed)
        model = pynn.Sequential([pynn.Input((5,)), layers.Dense(4)])
        return model.get_weights()[0]

    assert np.array_equal(weights(1), weights(1))
    assert not np.array_equal(weights(1), weights(2))
