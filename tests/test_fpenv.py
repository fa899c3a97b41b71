"""Subnormal numbers (csrc/common/fpenv.h): the core computes with flush-to-zero and
denormals-are-zero, optimizers never store a subnormal slot, and the calling thread gets its own
floating-point state back, so NumPy in the same process keeps IEEE gradual underflow."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import pynn
from pynn import _core
from pynn import layers as L

TINY = np.finfo(np.float32).tiny  # smallest normal float32, 2**-126
SUB = np.float32(3e-39)  # a subnormal float32


def numpy_keeps_subnormals() -> bool:
    a = np.full(64, SUB, np.float32)
    halved = np.float32(TINY) * np.float32(0.5)  # scalar path: FTZ would give 0
    return bool(halved != 0 and (a * np.float32(1.0) != 0).all() and (a + a > 0).all())


def subnormal_count(arr: np.ndarray) -> int:
    a = np.abs(np.asarray(arr, np.float32))
    return int(((a > 0) & (a < TINY)).sum())


def small_mlp():
    pynn.utils.set_random_seed(3)
    m = pynn.Sequential([pynn.Input((20,)), L.Dense(16, activation="relu"),
                         L.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return m


def test_numpy_keeps_subnormals_after_fit_and_predict():
    assert numpy_keeps_subnormals()  # the premise: IEEE behaviour before pynn runs
    rng = np.random.default_rng(0)
    x = rng.random((300, 20), dtype=np.float32)
    y = rng.integers(0, 3, 300)
    model = small_mlp()
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        try:
            model.fit(x, y, batch_size=32, epochs=1, verbose=0)
            model.predict(x[:1], verbose=0)
            model.predict(x, verbose=0)
            model.evaluate(x, y, verbose=0)
        finally:
            pynn.set_num_threads(2)
        assert numpy_keeps_subnormals(), f"{threads} thread(s)"


def test_numpy_in_another_python_thread_keeps_subnormals():
    # A Python thread that called pynn keeps its own state too.
    out = {}

    def work():
        model = small_mlp()
        model.predict(np.ones((4, 20), np.float32), verbose=0)
        out["ok"] = numpy_keeps_subnormals()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert out["ok"]
    assert numpy_keeps_subnormals()


def test_core_reads_subnormal_inputs_as_zero():
    # DAZ inside the call: a subnormal input times a weight of 1 gives 0 in pynn, while NumPy
    # (outside the call) keeps it.
    m = pynn.Sequential([pynn.Input((1,)), L.Dense(1, use_bias=False)])
    m.build()
    m.set_weights([np.ones((1, 1), np.float32)])
    x = np.array([[SUB]], np.float32)
    assert m.predict(x, verbose=0)[0, 0] == 0.0
    assert (x @ np.ones((1, 1), np.float32))[0, 0] == SUB


STATEFUL = [("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
            ("adagrad", None), ("adadelta", None), ("rmsprop", None),
            ("rmsprop", {"momentum": 0.9, "centered": True}), ("adam", None),
            ("adam", {"amsgrad": True}), ("adamw", None), ("nadam", None), ("adamax", None)]


@pytest.mark.parametrize("kind,config", STATEFUL)
def test_optimizers_never_store_subnormal_slots(kind, config):
    # Slots that start subnormal or just above the smallest normal, with gradients of 0 and of
    # subnormal size: after a step no slot holds a subnormal (Adam's m = k * 2**-149, k < 5,
    # would otherwise stay where it is for ever under m <- 0.9 m).
    n = 64
    w = np.linspace(-1, 1, n).astype(np.float32)
    g = np.zeros(n, np.float32)
    g[n // 2:] = SUB
    slots = _core.optimizer_slots(kind, config, w.shape)
    seeds = np.array([2 * 2.0 ** -149, 4 * 2.0 ** -149, 1e-39, TINY, 1.1 * TINY], np.float32)
    for s in slots:  # positive: second moments and accumulators are never negative
        s[:] = np.resize(seeds, n)
    u = 1.0
    for t in (1, 2, 3):
        u = _core.optimizer_begin_step(kind, config, t, u)  # Nadam's momentum product
        _core.optimizer_update(kind, config, t, w, g, slots, u)
        for i, s in enumerate(slots):
            assert subnormal_count(s) == 0, f"slot {i} after step {t}"
    assert np.isfinite(w).all()
    assert numpy_keeps_subnormals()
