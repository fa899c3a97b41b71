"""A deep MLP with skip connections (residual blocks) against the plain MLP of the same width,
depth and parameter count, on Fashion-MNIST.

    python examples/residual_mlp.py            # full data set if installed
    python examples/residual_mlp.py --small    # 1,000 images of the shipped subset

Both networks are built with the functional API: a Dense "stem", then `blocks` blocks of two
Dense layers, then a softmax head. In the residual network each block adds its input back to
its output (``x = relu(x + block(x))``, a `pynn.layers.Add`); in the plain one the block's
output simply replaces its input. The Add has no weights, so the two networks have exactly
the same parameters; only the wiring differs. With Keras's default Glorot initialisation a
plain stack of many ReLU layers shrinks its signal at every layer and learns slowly at
first; the skip connections give the gradient a path around every block. We train both with
the same seed, batch size and epochs, and report their training losses per epoch and their
test accuracies.
"""
from __future__ import annotations

import argparse

import numpy as np

import pynn
from pynn.datasets import fashion_mnist
from pynn.layers import Activation, Add, Dense, Flatten


def build(residual, width, blocks):
    """The functional model: stem, `blocks` two-layer blocks (with or without the skip
    connection), softmax head."""
    image = pynn.Input((28, 28), name="image")
    x = Dense(width, activation="relu", name="stem")(Flatten()(image))
    for b in range(blocks):
        h = Dense(width, activation="relu", name=f"block{b}_a")(x)
        h = Dense(width, name=f"block{b}_b")(h)          # linear: the sum is activated below
        if residual:
            h = Add(name=f"block{b}_skip")([x, h])        # the skip connection
        x = Activation("relu", name=f"block{b}_relu")(h)
    outputs = Dense(10, activation="softmax", name="classes")(x)
    return pynn.Model(image, outputs, name="residual_mlp" if residual else "plain_mlp")


def main(small=False, seed=0, blocks=None, width=None, epochs=None):
    if small:
        (x_train, y_train), (x_test, y_test) = fashion_mnist.load_subset()
        x_train, y_train = x_train[:1000], y_train[:1000]
    else:
        ((x_train, y_train), (x_test, y_test)), _ = fashion_mnist.load_data_or_subset()
    x_train = x_train.astype(np.float32) / 255.0
    x_test = x_test.astype(np.float32) / 255.0
    blocks = blocks or (4 if small else 6)
    width = width or (64 if small else 256)
    epochs = epochs or (4 if small else 10)

    results = {}
    for kind in ("plain", "residual"):
        pynn.utils.set_random_seed(seed)   # the same initial weights and batch order for both
        model = build(kind == "residual", width, blocks)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        history = model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
        losses = [round(v, 4) for v in history.history["loss"]]
        results[kind] = {"accuracy": float(accuracy), "loss": history.history["loss"],
                         "params": model.count_params(),
                         "adds": sum(isinstance(lay, Add) for lay in model.layers)}
        print(f"{kind:>8} MLP ({2 * blocks + 1} hidden layers of {width}, "
              f"{model.count_params():,} parameters): training loss per epoch {losses}, "
              f"test accuracy {accuracy:.4f}")
    gain = results["residual"]["accuracy"] - results["plain"]["accuracy"]
    print(f"skip connections: {gain:+.4f} test accuracy")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Residual vs plain MLP on Fashion-MNIST")
    parser.add_argument("--small", action="store_true", help="a quick run on 1,000 images")
    parser.add_argument("--blocks", type=int, default=None, help="residual blocks (2 layers each)")
    parser.add_argument("--width", type=int, default=None)
    args = parser.parse_args()
    main(small=args.small, blocks=args.blocks, width=args.width)
