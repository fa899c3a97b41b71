"""Cost of feeding `fit` batch by batch instead of with in-memory arrays.

    python benchmarks/ab_streaming.py [--rounds 5] [--rows 12000]

One epoch of the 784-256-128-10 ReLU MLP (Adam, batch 128) on random Fashion-MNIST-shaped
data, fed four ways in strict alternation (so a change in the machine's load hits all alike):
arrays (the in-memory path: the engine gathers each shuffled batch by index), a
`pynn.utils.Dataset` over the same arrays (reshuffled each pass), a Python generator of
slices, and a `PyDataset`. Prints the best and median epoch time of each and the median ratio
to the array path over rounds (> 1: slower than arrays).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

import pynn
from pynn.utils import Dataset, PyDataset

BATCH = 128


class Slices(PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return math.ceil(len(self.x) / BATCH)

    def __getitem__(self, i):
        return self.x[i * BATCH:(i + 1) * BATCH], self.y[i * BATCH:(i + 1) * BATCH]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=12000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random((args.rows, 784), dtype=np.float32)
    y = rng.integers(0, 10, args.rows).astype(np.int32)
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([pynn.layers.Dense(256, activation="relu"),
                             pynn.layers.Dense(128, activation="relu"),
                             pynn.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:BATCH], y[:BATCH], verbose=0)   # build and warm up

    def gen():
        while True:
            for s in range(0, len(x), BATCH):
                yield x[s:s + BATCH], y[s:s + BATCH]

    steps = math.ceil(len(x) / BATCH)
    feeds = {
        "arrays": lambda: model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0),
        "Dataset": lambda: model.fit(Dataset.from_arrays((x, y), BATCH, shuffle=True, seed=0),
                                     epochs=1, verbose=0),
        "generator": lambda: model.fit(gen(), steps_per_epoch=steps, epochs=1, verbose=0),
        "PyDataset": lambda: model.fit(Slices(x, y), epochs=1, verbose=0),
    }
    times: dict[str, list[float]] = {k: [] for k in feeds}
    for r in range(args.rounds):
        names = list(feeds) if r % 2 == 0 else list(reversed(feeds))
        for name in names:
            t = time.perf_counter()
            feeds[name]()
            times[name].append(time.perf_counter() - t)
    base = times["arrays"]
    print(f"MLP 784-256-128-10, Adam, batch {BATCH}, {args.rows} rows, {args.rounds} rounds, "
          f"{pynn.get_num_threads()} threads")
    for name, ts in times.items():
        ratio = statistics.median(t / b for t, b in zip(ts, base))
        print(f"{name:10s} best {min(ts):.3f} s  median {statistics.median(ts):.3f} s  "
              f"median ratio to arrays {ratio:.3f}")


if __name__ == "__main__":
    main()
