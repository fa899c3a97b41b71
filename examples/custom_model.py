"""A subclassed model: ``class ResidualClassifier(pynn.Model)`` with its layers as attributes
and a ``call()`` that wires them, including a skip connection, trained on Fashion-MNIST.

    python examples/custom_model.py [--small]

As in Keras, the layers assigned to attributes in ``__init__`` become the model's layers, and
``call(inputs)`` says how data flows through them. pynn traces ``call()`` once, on symbolic
tensors, when it first learns the input shape (here from ``build``), into the same static
graph a functional model compiles to. After that the model trains, evaluates and predicts
like any other; we print its summary and its test accuracy.

Because ``call()`` runs once on symbolic tensors, which have a shape but no values, Python
control flow cannot depend on the data: an ``if`` on a tensor inside ``call()`` fails with a
clear TypeError at tracing time. We show that error. The fix is to compute with layers only
(e.g. both branches, combined with a merge layer).
"""
from __future__ import annotations

import argparse

import numpy as np

import pynn
from pynn.datasets import fashion_mnist
from pynn.layers import Add, Dense, Flatten


class ResidualClassifier(pynn.Model):
    """Flatten -> Dense stem -> one residual block (two Dense layers plus a skip) -> softmax."""

    def __init__(self, width=128, classes=10, **kwargs):
        super().__init__(**kwargs)
        self.flatten = Flatten()
        self.stem = Dense(width, activation="relu", name="stem")
        self.inner = Dense(width, activation="relu", name="inner")
        self.outer = Dense(width, activation="relu", name="outer")
        self.skip = Add(name="skip")
        self.head = Dense(classes, activation="softmax", name="head")

    def call(self, inputs):
        x = self.stem(self.flatten(inputs))
        h = self.outer(self.inner(x))
        return self.head(self.skip([x, h]))   # x + h: the block's input added back


class GatedClassifier(pynn.Model):
    """The wrong way: picking a branch with a Python `if` on a tensor inside call()."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.flatten = Flatten()
        self.gate = Dense(1, activation="sigmoid")
        self.branch_a = Dense(64, activation="relu")
        self.branch_b = Dense(64, activation="tanh")
        self.head = Dense(10, activation="softmax")

    def call(self, inputs):
        x = self.flatten(inputs)
        if self.gate(x):   # a per-image decision, but the trace has no images to decide on
            x = self.branch_a(x)
        else:
            x = self.branch_b(x)
        return self.head(x)


def main(small=False, seed=0):
    pynn.utils.set_random_seed(seed)
    if small:
        (x_train, y_train), (x_test, y_test) = fashion_mnist.load_subset()
        x_train, y_train = x_train[:1000], y_train[:1000]
    else:
        ((x_train, y_train), (x_test, y_test)), _ = fashion_mnist.load_data_or_subset()
    x_train = x_train.astype(np.float32) / 255.0
    x_test = x_test.astype(np.float32) / 255.0

    model = ResidualClassifier(width=64 if small else 256)
    model.build((None, 28, 28))            # traces call() for inputs of this shape
    lines = []
    model.summary(print_fn=lines.append)
    summary = "\n".join(lines)
    print(summary)

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=3 if small else 10, batch_size=64, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy {accuracy:.4f}")

    try:
        GatedClassifier().predict(x_test[:1], verbose=0)
    except TypeError as exc:
        error = str(exc)
        print(f"an `if` on a tensor inside call():\n  TypeError: {error}")
    else:  # pragma: no cover - tracing must refuse it
        raise AssertionError("a data-dependent if inside call() was not refused")
    return {"accuracy": float(accuracy), "summary": summary, "error": error,
            "layers": [layer.name for layer in model.layers], "params": model.count_params()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A subclassed pynn.Model with a skip")
    parser.add_argument("--small", action="store_true", help="a quick run on 1,000 images")
    main(small=parser.parse_args().small)
