"""A loss and a metric of your own, written with `pynn.ops`, on Fashion-MNIST.

    python examples/custom_loss_and_metric.py            # full data set if installed
    python examples/custom_loss_and_metric.py --small    # 2,000 images of the shipped subset

The loss is the focal loss of Lin et al. (2017), which scales the cross-entropy of each image
by (1 - p)^gamma, where p is the probability the model gives the true class: images the model
already gets right with confidence count less, hard ones more. It is a plain function of
(y_true, y_pred); `compile` traces it into the training graph, so its gradient comes from the
ops' C++ backward passes, as Keras 3 does with a custom loss.

The metrics are a `pynn.metrics.Metric` subclass (top-2 accuracy: the true class is among the
two most probable, kept as two counters across the batches of an epoch) and a metric function
(the mean probability of the true class). Both run on each batch's arrays.

The script trains the same network with the focal loss and with the built-in cross-entropy
and prints both histories and test results.
"""
from __future__ import annotations

import argparse

import numpy as np

import pynn
from pynn import ops
from pynn.datasets import fashion_mnist
from pynn.layers import Dense, Flatten

CLASSES = 10


def true_class_probability(y_true, y_pred):
    """The probability the model gives each image's true class (y_true: integer labels)."""
    onehot = ops.one_hot(ops.reshape(y_true, (-1,)), CLASSES)
    return ops.sum(onehot * y_pred, axis=-1)


def focal_loss(y_true, y_pred, gamma=2.0):
    """Per-image focal loss: -(1 - p)^gamma log(p), p the true class's probability."""
    p = ops.clip(true_class_probability(y_true, y_pred), 1e-7, 1.0)
    return -ops.power(1.0 - p, gamma) * ops.log(p)


@pynn.saving.register_serializable(package="examples")
class TopTwoAccuracy(pynn.metrics.Metric):
    """The fraction of images whose true class is among the two most probable."""

    def __init__(self, name="top2_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.seen = self.add_variable(shape=(), initializer="zeros", name="seen")

    def update_state(self, y_true, y_pred, sample_weight=None):
        p_true = true_class_probability(y_true, y_pred)
        # classes strictly more probable than the true one: fewer than two means a hit
        above = ops.sum(ops.greater(y_pred, ops.expand_dims(p_true, -1)), axis=-1)
        self.hits.assign_add(ops.sum(ops.less(above, 2)))
        self.seen.assign_add(float(np.shape(y_pred)[0]))

    def result(self):
        return float(self.hits) / max(float(self.seen), 1.0)


def build():
    image = pynn.Input((28, 28), name="image")
    x = Flatten()(image)
    x = Dense(128, activation="relu")(x)
    return pynn.Model(image, Dense(CLASSES, activation="softmax")(x))


def main(small=False, seed=0, epochs=None):
    if small:
        (x_train, y_train), (x_test, y_test) = fashion_mnist.load_subset()
        x_train, y_train = x_train[:2000], y_train[:2000]
    else:
        ((x_train, y_train), (x_test, y_test)), _ = fashion_mnist.load_data_or_subset()
    x_train = x_train.astype(np.float32) / 255.0
    x_test = x_test.astype(np.float32) / 255.0
    epochs = epochs or (4 if small else 10)

    results = {}
    for name, loss in (("focal", focal_loss), ("cross-entropy", "sparse_categorical_crossentropy")):
        pynn.utils.set_random_seed(seed)   # the same initial weights and batch order for both
        model = build()
        model.compile(optimizer="adam", loss=loss,
                      metrics=["accuracy", TopTwoAccuracy(), true_class_probability])
        history = model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
        logs = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
        results[name] = {"history": history.history, "test": logs,
                         "predictions": model.predict(x_test, verbose=0), "model": model}
        print(f"{name:>13}: training loss per epoch "
              f"{[round(v, 4) for v in history.history['loss']]}; test accuracy "
              f"{logs['accuracy']:.4f}, top-2 accuracy {logs['top2_accuracy']:.4f}, mean "
              f"probability of the true class {logs['true_class_probability']:.4f}")
    results["y_test"] = y_test
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A custom loss and metric on Fashion-MNIST")
    parser.add_argument("--small", action="store_true", help="a quick run on 2,000 images")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    main(small=args.small, epochs=args.epochs)
