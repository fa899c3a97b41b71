"""Rosenblatt's perceptron on linearly separable data, on top of a pynn model.

    python examples/perceptron.py [--small]

The perceptron is one unit with a step activation: y = step(w.x + b). Its step has zero
derivative almost everywhere, so gradient descent cannot train it; the perceptron rule can:
for every misclassified point, w += lr * (target - output) * x and b += lr * (target - output).
pynn computes the outputs (`model.predict` through a Dense(1, activation="binary_step")) and
NumPy applies the rule through `get_weights` / `set_weights`. On separable data the rule stops
after finitely many mistakes (Novikoff's theorem); we check that every point ends up on its
side. For comparison, a Dense(1, sigmoid) unit trained by gradient descent on the
cross-entropy and thresholded at 0.5 separates the same data.
"""
from __future__ import annotations

import argparse

import numpy as np

import pynn


def make_separable(n, seed=0, margin=0.5):
    """n points in the plane labelled by the side of the line x0 + 2 x1 = 1, keeping only those
    at least `margin` away from it so that the classes are separable with room to spare."""
    rng = np.random.default_rng(seed)
    points, labels = [], []
    while len(points) < n:
        p = rng.uniform(-3, 3, size=2)
        d = (p[0] + 2 * p[1] - 1) / np.sqrt(5)
        if abs(d) >= margin:
            points.append(p)
            labels.append(1 if d > 0 else 0)
    return np.array(points, np.float32), np.array(labels, np.int64)


def train_perceptron(x, y, lr=0.1, max_epochs=100, seed=0):
    model = pynn.Sequential([pynn.Input((x.shape[1],)),
                             pynn.layers.Dense(1, activation="binary_step")])
    w, b = model.get_weights()
    w[:] = 0.0
    b[:] = 0.0
    model.set_weights([w, b])
    rng = np.random.default_rng(seed)
    mistakes_per_epoch = []
    for _ in range(max_epochs):
        mistakes = 0
        for i in rng.permutation(len(x)):
            out = model.predict(x[i:i + 1], verbose=0)[0, 0]   # 0 or 1
            error = y[i] - out
            if error != 0:
                mistakes += 1
                w, b = model.get_weights()
                model.set_weights([w + lr * error * x[i][:, None], b + lr * error])
        mistakes_per_epoch.append(mistakes)
        if mistakes == 0:
            break
    return model, mistakes_per_epoch


def train_sigmoid(x, y, epochs):
    model = pynn.Sequential([pynn.Input((x.shape[1],)),
                             pynn.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=pynn.optimizers.SGD(learning_rate=0.5), loss="binary_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y.astype(np.float32), epochs=epochs, batch_size=16, verbose=0)
    return model


def main(small=False, seed=0):
    pynn.utils.set_random_seed(seed)
    x, y = make_separable(60 if small else 400, seed=seed)
    model, mistakes = train_perceptron(x, y, seed=seed)
    pred = model.predict(x, verbose=0)[:, 0].astype(np.int64)
    accuracy = float(np.mean(pred == y))
    w, b = model.get_weights()
    print(f"perceptron: converged after {len(mistakes)} epochs (mistakes per epoch {mistakes}); "
          f"training accuracy {accuracy:.3f}; boundary {w[0, 0]:.3f} x0 + {w[1, 0]:.3f} x1 + "
          f"{b[0]:.3f} = 0")
    sig = train_sigmoid(x, y, epochs=100 if small else 200)
    sig_accuracy = float(np.mean((sig.predict(x, verbose=0)[:, 0] > 0.5) == y))
    print(f"sigmoid unit trained by gradient descent: training accuracy {sig_accuracy:.3f}")
    return {"accuracy": accuracy, "mistakes": mistakes, "sigmoid_accuracy": sig_accuracy,
            "weights": (w, b)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The perceptron rule on separable data")
    parser.add_argument("--small", action="store_true")
    main(small=parser.parse_args().small)
