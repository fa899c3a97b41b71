"""Choosing hyperparameters on a validation set, then testing once.

    python examples/hyperparameter_search.py [--small]

The test set must not steer any choice, or its score stops being an honest estimate. So the
training data is split again: models with different layer sizes, learning rates and L2
regularisation are trained on one part and compared on the held-out validation part; the
winner is retrained on all the training data and only then scored on the test set.
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np
from sklearn.model_selection import train_test_split

import pynn
from pynn.datasets import fashion_mnist


def build(hidden, learning_rate, l2):
    layers = [pynn.Input((784,))]
    for units in hidden:
        layers.append(pynn.layers.Dense(
            units, activation="relu",
            kernel_regularizer=pynn.regularizers.L2(l2) if l2 else None))
    layers.append(pynn.layers.Dense(10, activation="softmax"))
    model = pynn.Sequential(layers)
    model.compile(optimizer=pynn.optimizers.Adam(learning_rate=learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main(small=False, seed=0):
    (x, y), (x_test, y_test) = fashion_mnist.load_subset()
    if small:
        x, y = x[:1000], y[:1000]
    x = x.reshape(len(x), -1).astype(np.float32) / 255.0
    x_test = x_test.reshape(len(x_test), -1).astype(np.float32) / 255.0
    x_fit, x_val, y_fit, y_val = train_test_split(x, y, test_size=0.25, stratify=y,
                                                  random_state=seed)
    grid = {
        "hidden": [(64,), (128, 64)],
        "learning_rate": [1e-3, 3e-3] if small else [3e-4, 1e-3, 3e-3],
        "l2": [0.0, 1e-4] if small else [0.0, 1e-4, 1e-3],
    }
    epochs = 3 if small else 15
    results = []
    for hidden, lr, l2 in itertools.product(*grid.values()):
        pynn.utils.set_random_seed(seed)   # same initial draws for every candidate
        model = build(hidden, lr, l2)
        model.fit(x_fit, y_fit, epochs=epochs, batch_size=64, verbose=0)
        _, val_acc = model.evaluate(x_val, y_val, verbose=0)
        results.append(((hidden, lr, l2), val_acc))
        print(f"hidden {str(hidden):>10}  lr {lr:<7g} l2 {l2:<7g} validation accuracy "
              f"{val_acc:.4f}")
    (hidden, lr, l2), best_val = max(results, key=lambda r: r[1])
    pynn.utils.set_random_seed(seed)
    model = build(hidden, lr, l2)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    _, test_acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"best: hidden {hidden}, learning rate {lr:g}, l2 {l2:g} (validation {best_val:.4f});"
          f" retrained on all training data: test accuracy {test_acc:.4f}")
    return {"best": {"hidden": hidden, "learning_rate": lr, "l2": l2},
            "validation_accuracy": best_val, "test_accuracy": test_acc, "results": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Grid search on a validation split")
    parser.add_argument("--small", action="store_true")
    main(small=parser.parse_args().small)
