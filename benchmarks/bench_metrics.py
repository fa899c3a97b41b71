"""What the Keras metric classes cost in fit, and their update against Keras's own.

    python benchmarks/bench_metrics.py

1. One epoch of the 784-256-128-10 MLP (Adam, batch 128, 12,800 random rows) with
   metrics=["accuracy"] (counted by the engine) and with AUC, Precision, Recall, "mse" and
   TopKCategoricalAccuracy added (updated in NumPy from each batch's outputs): the ratio of
   best-of-3 epoch CPU times on one thread (CPU time rather than wall time: the shared
   machine's load then matters less).
2. update_state on 100 batches of (128, 10) for AUC, Precision and CategoricalAccuracy, pynn
   against Keras 3 (torch backend), timed in the same run: the ratio of best times.
"""
from __future__ import annotations

import os
import time

import numpy as np

import pynn
from pynn import metrics as M


def _best(fn, repeat=3, clock=time.perf_counter):
    best = float("inf")
    for _ in range(repeat):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def fit_overhead():
    rng = np.random.default_rng(0)
    x = rng.random((12800, 784), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 12800)]

    def epoch(metrics):
        pynn.utils.set_random_seed(0)
        model = pynn.Sequential([pynn.Input((784,)), pynn.layers.Dense(256, activation="relu"),
                                 pynn.layers.Dense(128, activation="relu"),
                                 pynn.layers.Dense(10, activation="softmax")])
        model.compile("adam", loss="categorical_crossentropy", metrics=metrics)
        model.fit(x[:256], y[:256], batch_size=128, epochs=1, verbose=0)   # warm up
        return _best(lambda: model.fit(x, y, batch_size=128, epochs=1, verbose=0),
                     clock=time.process_time)

    pynn.set_num_threads(1)
    plain = epoch(["accuracy"])
    full = epoch(["accuracy", M.AUC(), M.Precision(), M.Recall(), "mse",
                  M.TopKCategoricalAccuracy(k=3)])
    print(f"fit epoch, 100 steps, 1 thread, CPU time: accuracy only {plain * 1e3:.1f} ms, "
          f"+ 5 metric classes {full * 1e3:.1f} ms: ratio {full / plain:.2f}")


def update_vs_keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    rng = np.random.default_rng(1)
    batches = []
    for _ in range(100):
        logits = rng.normal(size=(128, 10)).astype(np.float32)
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        batches.append((np.eye(10, dtype=np.float32)[rng.integers(0, 10, 128)], p))
    for name in ("AUC", "Precision", "CategoricalAccuracy"):
        def run(metric):
            for t, p in batches:
                metric.update_state(t, p)
            return metric.result()

        ours = _best(lambda name=name: run(getattr(M, name)()))
        theirs = _best(lambda name=name: run(getattr(keras.metrics, name)()))
        print(f"{name}: 100 x update_state(128x10): pynn {ours * 1e3:.1f} ms, Keras/torch "
              f"{theirs * 1e3:.1f} ms: pynn/Keras {ours / theirs:.2f}")


if __name__ == "__main__":
    fit_overhead()
    update_vs_keras()
