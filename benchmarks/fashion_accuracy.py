"""Test accuracy of the 784-256-128-10 ReLU MLP on Fashion-MNIST after each of 10 epochs
(Adam 1e-3, batch 128), for several seeds: the figure behind "reaches >= 0.885 within 10
epochs". Needs the real data (apt-get install dataset-fashion-mnist).

    python benchmarks/fashion_accuracy.py [--seeds 0 1 2 42] [--epochs 10]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import pynn
from pynn import layers
from pynn.datasets import fashion_mnist


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 42])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    (x, y), (xt, yt) = fashion_mnist.load_data()
    x = x.astype(np.float32) / 255
    xt = xt.astype(np.float32) / 255
    for seed in args.seeds:
        pynn.utils.set_random_seed(seed)
        model = pynn.Sequential([pynn.Input((28, 28)), layers.Flatten(),
                                 layers.Dense(256, activation="relu"),
                                 layers.Dense(128, activation="relu"),
                                 layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        accs = []
        start = time.perf_counter()
        for _ in range(args.epochs):
            model.fit(x, y, epochs=1, batch_size=128, verbose=0)
            accs.append(model.evaluate(xt, yt, verbose=0)[1])
        print(f"seed {seed}: " + " ".join(f"{a:.4f}" for a in accs)
              + f"  best {max(accs):.4f} (epoch {int(np.argmax(accs)) + 1})"
              + f"  {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
