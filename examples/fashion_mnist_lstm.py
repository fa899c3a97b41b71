"""Fashion-MNIST with an LSTM: each 28x28 image is read as a sequence of 28 rows of 28 pixels.

    python examples/fashion_mnist_lstm.py            # full data set if installed (10 epochs)
    python examples/fashion_mnist_lstm.py --small    # 1,000 images of the shipped subset

LSTM(128) then Dense(10, softmax), Adam 1e-3, batch 128: the recurrent network's state
carries what it has seen of the image from row to row. Prints the test accuracy after every
epoch (about 0.88-0.90 after 10 epochs on the full set).
"""
from __future__ import annotations

import argparse

import numpy as np

import pynn
from pynn.datasets import fashion_mnist


def main(small=False, epochs=None, seed=42):
    pynn.utils.set_random_seed(seed)
    if small:
        (x_train, y_train), (x_test, y_test) = fashion_mnist.load_subset()
        x_train, y_train = x_train[:1000], y_train[:1000]
    else:
        ((x_train, y_train), (x_test, y_test)), _ = fashion_mnist.load_data_or_subset()
    x_train = x_train.astype(np.float32) / 255.0   # (n, 28 rows = steps, 28 pixels = features)
    x_test = x_test.astype(np.float32) / 255.0

    model = pynn.Sequential([
        pynn.Input((28, 28)),
        pynn.layers.LSTM(128),
        pynn.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=pynn.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    epochs = epochs or (3 if small else 10)
    accuracies = []
    for epoch in range(epochs):
        # the small run takes smaller batches: more updates from its 1,000 images
        model.fit(x_train, y_train, epochs=1, batch_size=32 if small else 128, verbose=0)
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
        accuracies.append(float(accuracy))
        print(f"epoch {epoch + 1}/{epochs}: test accuracy {accuracy:.4f}", flush=True)
    return {"accuracy": accuracies[-1], "accuracies": accuracies, "model": model}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run on 1,000 images")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    main(small=args.small, epochs=args.epochs)
