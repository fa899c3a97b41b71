"""Misuse of the compiled network that once crashed the interpreter; each case runs in a
child process so a regression fails this test instead of killing the suite."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = {
    "sparse loss given dense targets": """
        net = _core.Network(4); net.add_dense(3, "softmax")
        net.set_loss("sparse_categorical_crossentropy"); net.set_optimizer("sgd", {})
        expect(ValueError, "labels", lambda: net.train_step(x, np.ones((5, 3), np.float32), None, None, None))
    """,
    "dense loss given labels": """
        for loss in ("categorical_crossentropy", "binary_crossentropy", "mean_squared_error"):
            net = _core.Network(4); net.add_dense(3, "softmax")
            net.set_loss(loss); net.set_optimizer("sgd", {})
            lab = np.zeros(5, np.int32)
            expect(ValueError, "y:", lambda: net.train_step(x, None, lab, None, None))
            expect(ValueError, "y:", lambda: net.test_step(x, None, lab, None, None))
    """,
    "no loss set": """
        net = _core.Network(4); net.add_dense(3)
        expect(ValueError, "no loss", lambda: net.test_step(x, np.ones((5, 3), np.float32), None, None, None))
    """,
    "last_output after adding a layer": """
        net = _core.Network(4); net.add_dense(3, "softmax")
        net.set_loss("categorical_crossentropy"); net.set_optimizer("sgd", {})
        net.train_step(x, np.ones((5, 3), np.float32), None, None, None)
        net.add_dense(100000)
        assert net.last_output().shape == (0, 100000)
    """,
    "fusion decided again when the tail changes": """
        net = _core.Network(4); net.add_dense(3, "softmax")
        net.set_loss("categorical_crossentropy"); net.add_dense(5)
        out = np.empty((5, 5), np.float32); net.predict(x, out, 8)
        # the first layer's softmax is applied (rows of its output sum to 1 before Dense(5))
        W = net.get_param(2); b = net.get_param(3)
        z = x @ net.get_param(0) + net.get_param(1); p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        assert np.allclose(out, p @ W + b, atol=1e-5), (out, p @ W + b)
    """,
    "compile and save while fit runs in another thread": """
        import threading, tempfile, pynn
        from pynn import layers
        rng = np.random.default_rng(0)
        xs = rng.standard_normal((2000, 64)).astype(np.float32); ys = rng.integers(0, 10, 2000)
        m = pynn.Sequential([pynn.Input((64,)), layers.Dense(128, activation="relu"),
                             layers.Dense(10, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        t = threading.Thread(target=lambda: m.fit(xs, ys, epochs=3, batch_size=32, verbose=0))
        t.start()
        d = tempfile.mkdtemp()
        i = 0
        while t.is_alive():
            m.compile(optimizer=["adam", "sgd", "rmsprop", "adamax"][i % 4],
                      loss="sparse_categorical_crossentropy")
            m.save(os.path.join(d, "m.safetensors")); i += 1
        t.join()
        assert i > 0
    """,
}

PRELUDE = """
import os, numpy as np
from pynn import _core
x = np.ones((5, 4), np.float32)
def expect(exc, text, fn):
    try:
        fn()
    except exc as e:
        assert text in str(e), str(e)
    else:
        raise AssertionError("no exception")
"""


@pytest.mark.parametrize("name", list(CASES))
def test_misuse_raises_instead_of_crashing(name):
    code = PRELUDE + textwrap.dedent(CASES[name])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=HERE, timeout=300)
    assert res.returncode == 0, f"{name}: exit {res.returncode}\n{res.stderr[-2000:]}"
