"""What weight constraints cost a fit: the 784-256-128-10 ReLU MLP, Adam, batch 128, on random
data (Fashion-MNIST's shapes), one epoch of 60 batches per timing.

    PYTHONPATH=. python benchmarks/bench_constraints.py [--repeats 7]

Three variants run in strict alternation in one process (so the machine's load falls on all
alike), each timed with time.perf_counter:
  * base:        no constraints, with the per-step hook disabled (the code before the hook);
  * hook:        no constraints, the hook as shipped (must cost nothing measurable);
  * constrained: MaxNorm(2) on every kernel and NonNeg on every bias (NumPy projection of
                 ~235k weights after every step).
It prints the median time of each and the median per-round ratios against base, and the
cost of the hook alone per step (load-independent enough to read on a busy machine).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import pynn
from pynn import constraints as C
from pynn import layers as L
from pynn.models import trainer


def make(constrained):
    pynn.utils.set_random_seed(0)
    kw = dict(kernel_constraint=C.MaxNorm(2.0), bias_constraint=C.NonNeg()) if constrained \
        else {}
    model = pynn.Sequential([pynn.Input((784,)), L.Dense(256, activation="relu", **kw),
                             L.Dense(128, activation="relu", **kw), L.Dense(10, **kw)])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _no_hook(self):
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random((128 * 60, 784), dtype=np.float32)
    y = rng.integers(0, 10, len(x))
    cls = trainer.Trainer
    hook = cls._apply_constraints
    models = {"base": make(False), "hook": make(False), "constrained": make(True)}
    for m in models.values():
        m.fit(x[:256], y[:256], batch_size=128, epochs=1, verbose=0)   # warm up
    times = {k: [] for k in models}
    for _ in range(args.repeats):
        for name, m in models.items():
            cls._apply_constraints = _no_hook if name == "base" else hook  # type: ignore
            t0 = time.perf_counter()
            m.fit(x, y, batch_size=128, epochs=1, verbose=0, shuffle=False)
            times[name].append(time.perf_counter() - t0)
    cls._apply_constraints = hook  # type: ignore
    # the hook alone on the unconstrained model, per step, against one train step
    m = models["hook"]
    calls = 20000
    t0 = time.perf_counter()
    for _ in range(calls):
        m._apply_constraints()
    per_call = (time.perf_counter() - t0) / calls
    step = statistics.median(times["hook"]) / 60
    print(f"hook alone: {per_call * 1e6:.2f} us per step = {per_call / step:.2e} of a step")
    base = times["base"]
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, base)]
        print(f"{name:12s} median epoch {statistics.median(ts) * 1e3:8.1f} ms   "
              f"median ratio to base {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
