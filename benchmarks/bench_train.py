"""Training the 784-256-128-10 ReLU MLP on Fashion-MNIST (Adam 1e-3, batch 128): one epoch with
pynn's fit, PyTorch CPU eager and a plain NumPy implementation, measured in the same run; and
predict on one row for pynn and PyTorch.

    pytest benchmarks/bench_train.py

A/B of two builds ("ab OLD NEW": checkouts whose pynn/ holds their _core), run in alternating
processes, each timing pynn's epoch and PyTorch's in the same process after a warm-up (this
thread's CPU time on 1 thread, which leaves out the time other tenants hold the core; the wall
clock on 2) and printing the SHA-1 of pynn's final weights, which must not change between
builds that claim bitwise-identical training:

    PYTHONPATH=. python benchmarks/bench_train.py ab /work/main . [rounds=3] [epochs=3]
        [threads=1,2] [policies=float32,mixed_bfloat16]

Uses the real data set when installed (apt-get install dataset-fashion-mnist), else the subset
shipped with pynn (the ratios are what matter).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # conftest, when run as a script

from conftest import record, thread_limits, timed, torch_epoch  # noqa: E402

import pynn  # noqa: E402
from pynn import layers  # noqa: E402
from pynn import mixed_precision as mp  # noqa: E402

try:
    import torch
except ImportError:  # torch is in the [bench] extra
    torch = None

BATCH = 128


def load_data():
    from pynn.datasets import fashion_mnist

    (data_, _) = fashion_mnist.load_data_or_subset(quiet=True)
    (x, y), _ = data_
    x = (x.reshape(len(x), -1).astype(np.float32) / 255.0)
    return np.ascontiguousarray(x), y.astype(np.int64)


@pytest.fixture(scope="module")
def data():
    return load_data()


def pynn_model():
    model = pynn.Sequential([pynn.Input((784,)), layers.Dense(256, activation="relu"),
                             layers.Dense(128, activation="relu"),
                             layers.Dense(10, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def torch_model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 128), torch.nn.ReLU(),
                              torch.nn.Linear(128, 10))
    return net, torch.optim.Adam(net.parameters(), lr=1e-3)


class NumpyMLP:
    """The same network and Adam in plain NumPy (float32, in-place where it is natural)."""

    def __init__(self, rng):
        sizes = [784, 256, 128, 10]
        self.params = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            lim = np.sqrt(6 / (a + b))
            self.params += [rng.uniform(-lim, lim, (a, b)).astype(np.float32),
                            np.zeros(b, np.float32)]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, x, y):
        W1, b1, W2, b2, W3, b3 = self.params
        z1 = x @ W1 + b1
        h1 = np.maximum(z1, 0)
        z2 = h1 @ W2 + b2
        h2 = np.maximum(z2, 0)
        z3 = h2 @ W3 + b3
        z3 -= z3.max(axis=1, keepdims=True)
        p = np.exp(z3)
        p /= p.sum(axis=1, keepdims=True)
        n = x.shape[0]
        d3 = p
        d3[np.arange(n), y] -= 1
        d3 /= n
        g = [None] * 6
        g[4] = h2.T @ d3
        g[5] = d3.sum(0)
        d2 = (d3 @ W3.T) * (z2 > 0)
        g[2] = h1.T @ d2
        g[3] = d2.sum(0)
        d1 = (d2 @ W2.T) * (z1 > 0)
        g[0] = x.T @ d1
        g[1] = d1.sum(0)
        self.t += 1
        lr = 1e-3 * np.sqrt(1 - 0.999 ** self.t) / (1 - 0.9 ** self.t)
        for p_, g_, m, v in zip(self.params, g, self.m, self.v):
            m *= 0.9
            m += 0.1 * g_
            v *= 0.999
            v += 0.001 * g_ * g_
            p_ -= lr * m / (np.sqrt(v) + 1e-7)


def epoch_fn(impl: str, x: np.ndarray, y: np.ndarray):
    """A function that trains one epoch of `impl` (pynn, numpy or torch) on (x, y)."""
    n = len(x)
    rng = np.random.default_rng(0)
    if impl == "pynn":
        pynn.utils.set_random_seed(0)
        model = pynn_model()

        def run_pynn():
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=True)
        run_pynn.model = model  # type: ignore[attr-defined]  # for ab(): the trained weights
        return run_pynn
    if impl == "numpy":
        mlp = NumpyMLP(rng)

        def run_numpy():
            order = rng.permutation(n)
            for s in range(0, n, BATCH):
                idx = order[s:s + BATCH]
                mlp.step(x[idx], y[idx])
        return run_numpy
    net, opt = torch_model()
    return torch_epoch(net, opt, torch.from_numpy(x), torch.from_numpy(y), BATCH)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("impl", ["pynn", "numpy"] + (["torch"] if torch is not None else []))
def test_epoch(benchmark, data, impl, threads):
    x, y = data
    epoch = epoch_fn(impl, x, y)
    with thread_limits(threads):
        best = timed(benchmark, epoch, rounds=3, warmup=1)
    record("train one epoch (s)", f"epoch {len(x)} rows {threads}t", impl, best)


@pytest.mark.parametrize("impl", ["pynn"] + (["torch"] if torch is not None else []))
def test_predict_one_row(benchmark, data, impl):
    x, _ = data
    row = x[:1].copy()
    if impl == "pynn":
        pynn.utils.set_random_seed(0)
        model = pynn_model()

        def fn():
            model.predict(row, verbose=0)
    else:
        net, _ = torch_model()
        net.eval()
        tr = torch.from_numpy(row)

        def fn():
            with torch.no_grad():
                net(tr).numpy()
    best = timed(benchmark, fn, rounds=2000, warmup=50)
    record("predict one row", "predict 1 row", impl, best)


def _seconds(run, clock) -> float:
    t0 = clock()
    run()
    return clock() - t0


def one(policy: str, threads: int, epochs: int) -> None:
    """One process of ab(): best pynn and PyTorch epoch seconds and pynn's weights' SHA-1."""
    x, y = load_data()
    clock = time.thread_time if threads == 1 else time.perf_counter
    with thread_limits(threads):
        mp.set_global_policy(policy)  # layers keep the policy they were made under
        try:
            pynn_epoch = epoch_fn("pynn", x, y)
        finally:
            mp.set_global_policy("float32")
        model = pynn_epoch.model  # type: ignore[attr-defined]
        runs = {"pynn": pynn_epoch, "torch": epoch_fn("torch", x, y)}
        best = {}
        for name, run in runs.items():
            run()  # warm-up
            best[name] = min(_seconds(run, clock) for _ in range(epochs))
    sha = hashlib.sha1()
    for w in model.get_weights():
        sha.update(np.ascontiguousarray(w).tobytes())
    best["sha1"] = sha.hexdigest()[:16]
    print(json.dumps(best))


def ab(old: str, new: str, rounds: int = 3, epochs: int = 3, threads: str = "1,2",
       policies: str = "float32,mixed_bfloat16") -> None:
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    for policy in policies.split(","):
        for th in (int(t) for t in threads.split(",")):
            got: dict = {"old": [], "new": []}
            for r in range(rounds):
                order = [("old", old), ("new", new)][:: 1 if r % 2 == 0 else -1]
                for tag, root in order:
                    env = dict(os.environ, PYTHONPATH=os.path.abspath(root))
                    out = subprocess.run([sys.executable, __file__, "one", policy, str(th),
                                          str(epochs)], env=env, capture_output=True,
                                         text=True, check=True)
                    got[tag].append(json.loads(out.stdout.strip().splitlines()[-1]))
            line, best = [], {}
            for tag, rs in got.items():
                p = min(r["pynn"] for r in rs)
                t = min(r["torch"] for r in rs)
                best[tag] = p
                shas = sorted({r["sha1"] for r in rs})
                line.append(f"{tag} pynn {p:.3f} torch {t:.3f} ratio {p / t:.3f} sha1 {shas}")
            print(f"{policy} {th}t (best of {rounds}x{epochs}): " + "; ".join(line)
                  + f"; new / old {best['new'] / best['old']:.3f}", flush=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "one":
        one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) > 3 and sys.argv[1] == "ab":
        ab(sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:6]), *sys.argv[6:8])
    else:
        print(__doc__)
