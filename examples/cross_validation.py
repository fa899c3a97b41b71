"""k-fold cross-validation of a pynn network with scikit-learn's KFold.

    python examples/cross_validation.py [--small]

One train/validation split gives one noisy number. k-fold cross-validation trains k models,
each validated on a different fifth (say) of the data, and reports the mean and spread of the
k scores, a steadier estimate of how the architecture does on unseen data.
"""
from __future__ import annotations

import argparse

import numpy as np
from sklearn.model_selection import KFold

import pynn
from pynn.datasets import fashion_mnist


def build():
    model = pynn.Sequential([
        pynn.Input((784,)),
        pynn.layers.Dense(128, activation="relu"),
        pynn.layers.Dropout(0.2),
        pynn.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def main(small=False, k=None, seed=0):
    (x, y), _ = fashion_mnist.load_subset()
    if small:
        x, y = x[:900], y[:900]
    x = x.reshape(len(x), -1).astype(np.float32) / 255.0
    k = k or (3 if small else 5)
    # Shuffle: the shipped subset is stored in file order, so unshuffled folds would differ.
    folds = KFold(n_splits=k, shuffle=True, random_state=seed)
    scores = []
    for i, (train_idx, val_idx) in enumerate(folds.split(x)):
        pynn.utils.set_random_seed(seed + i)
        model = build()   # a fresh model per fold: nothing learned leaks between folds
        model.fit(x[train_idx], y[train_idx], epochs=3 if small else 15, batch_size=64,
                  verbose=0)
        _, accuracy = model.evaluate(x[val_idx], y[val_idx], verbose=0)
        scores.append(accuracy)
        print(f"fold {i + 1}/{k}: validation accuracy {accuracy:.4f}")
    scores = np.array(scores)
    print(f"{k}-fold accuracy {scores.mean():.4f} +/- {scores.std(ddof=1):.4f}")
    return {"scores": scores}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="k-fold cross-validation")
    parser.add_argument("--small", action="store_true")
    main(small=parser.parse_args().small)
