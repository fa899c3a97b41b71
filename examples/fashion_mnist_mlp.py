"""Fashion-MNIST with a multilayer perceptron: train, evaluate, explain.

    python examples/fashion_mnist_mlp.py            # full data set if installed (~1 minute)
    python examples/fashion_mnist_mlp.py --small    # 1,000 images of the shipped subset

Trains 784-256-128-10 (ReLU, softmax) with Adam, prints the test accuracy and the per-class
report, and, with matplotlib installed, writes the training curves, the confusion matrix, the
first layer's weights as images and saliency maps into the output folder.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import pynn
from pynn.datasets import fashion_mnist


def main(small=False, out_dir="fashion_mnist_mlp_output", epochs=None, seed=42):
    pynn.utils.set_random_seed(seed)
    if small:
        (x_train, y_train), (x_test, y_test) = fashion_mnist.load_subset()
        x_train, y_train = x_train[:1000], y_train[:1000]
    else:
        ((x_train, y_train), (x_test, y_test)), _ = fashion_mnist.load_data_or_subset()
    x_train = x_train.astype(np.float32) / 255.0   # pixels 0..255 -> 0..1
    x_test = x_test.astype(np.float32) / 255.0

    model = pynn.Sequential([
        pynn.Input((28, 28)),
        pynn.layers.Flatten(),
        pynn.layers.Dense(256, activation="relu"),
        pynn.layers.Dense(128, activation="relu"),
        pynn.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    epochs = epochs or (3 if small else 10)
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=128, validation_split=0.1,
                        verbose=0 if small else "auto")
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    y_pred = np.argmax(model.predict(x_test, verbose=0), axis=1)
    print(f"test accuracy {accuracy:.4f}, loss {loss:.4f}")
    print(pynn.metrics.classification_report(y_test, y_pred,
                                             class_names=fashion_mnist.class_names))

    written = []
    try:
        from pynn import plot
    except ImportError:  # pragma: no cover - pynn.plot itself imports nothing at load
        plot = None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plots need matplotlib: pip install pynn[plot]")
        plot = None
    if plot is not None:
        os.makedirs(out_dir, exist_ok=True)
        figures = {
            "history.png": plot.history(history),
            "confusion_matrix.png": plot.confusion_matrix(
                y_test, y_pred, class_names=fashion_mnist.class_names),
            "first_layer_weights.png": plot.first_layer_weights(model),
            "saliency.png": plot.saliency(model, x_test[:4]),
        }
        for name, fig in figures.items():
            path = os.path.join(out_dir, name)
            fig.savefig(path, dpi=80)
            written.append(path)
        print("wrote", ", ".join(written))
    return {"accuracy": float(accuracy), "y_pred": y_pred, "files": written}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run on 1,000 images")
    parser.add_argument("--output", default="fashion_mnist_mlp_output")
    args = parser.parse_args()
    main(small=args.small, out_dir=args.output)
