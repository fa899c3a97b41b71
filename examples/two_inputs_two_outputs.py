"""A functional model with two inputs and two outputs: Fashion-MNIST images plus a small
side-feature vector in, the class and the image's mean brightness out.

    python examples/two_inputs_two_outputs.py [--small]

Inputs, passed as a dict by name:
    "image"    the 28x28 picture;
    "profile"  56 numbers derived from it: the mean intensity of each of its 28 rows and of
               each of its 28 columns (the picture's silhouette seen from two sides).
Each input has its own Dense branch; the branches are joined with Concatenate and a shared
trunk feeds two heads, also named in a dict:
    "class"       10-way softmax, sparse categorical cross-entropy, accuracy;
    "brightness"  one linear unit, mean squared error on the standardised mean pixel, MAE.

`compile` takes one loss per output and `loss_weights` to balance them: the training loss is
``1.0 * class_loss + 0.5 * brightness_loss``. `fit` takes dicts of inputs and of targets, and
its History logs each output's loss and metrics under the output's name (`class_accuracy`,
`val_brightness_loss`, ...), which we print. `evaluate(return_dict=True)` gives the same
names, and `predict` returns a dict of arrays. The brightness head is scored against the
best constant guess (the training mean), the class head against chance (0.1).
"""
from __future__ import annotations

import argparse

import numpy as np

import pynn
from pynn.datasets import fashion_mnist
from pynn.layers import Concatenate, Dense, Flatten

LOSS_WEIGHTS = {"class": 1.0, "brightness": 0.5}


def profile(images):
    """(n, 56): each image's row means, then its column means."""
    return np.concatenate([images.mean(axis=2), images.mean(axis=1)], axis=1)


def brightness(images):
    """(n,): each image's mean pixel."""
    return images.mean(axis=(1, 2))


def build():
    image = pynn.Input((28, 28), name="image")
    side = pynn.Input((56,), name="profile")
    a = Dense(128, activation="relu", name="image_branch")(Flatten()(image))
    b = Dense(32, activation="relu", name="profile_branch")(side)
    h = Dense(64, activation="relu", name="trunk")(Concatenate()([a, b]))
    outputs = {"class": Dense(10, activation="softmax", name="class")(h),
               "brightness": Dense(1, name="brightness")(h)}
    return pynn.Model(inputs={"image": image, "profile": side}, outputs=outputs,
                      name="two_in_two_out")


def main(small=False, seed=0):
    pynn.utils.set_random_seed(seed)
    if small:
        (x_train, y_train), (x_test, y_test) = fashion_mnist.load_subset()
        x_train, y_train = x_train[:1000], y_train[:1000]
    else:
        ((x_train, y_train), (x_test, y_test)), _ = fashion_mnist.load_data_or_subset()
    x_train = x_train.astype(np.float32) / 255.0
    x_test = x_test.astype(np.float32) / 255.0
    # Standardise the regression target so its loss starts near 1, like the class loss.
    b_train, b_test = brightness(x_train), brightness(x_test)
    b_mean, b_std = b_train.mean(), b_train.std()

    def inputs(x):
        return {"image": x, "profile": profile(x)}

    def targets(y, b):
        return {"class": y, "brightness": (b - b_mean) / b_std}

    model = build()
    model.compile(optimizer="adam",
                  loss={"class": "sparse_categorical_crossentropy", "brightness": "mse"},
                  loss_weights=LOSS_WEIGHTS,
                  metrics={"class": ["accuracy"], "brightness": ["mae"]})
    history = model.fit(inputs(x_train), targets(y_train, b_train), epochs=8 if small else 15,
                        batch_size=64, validation_split=0.1, verbose=0)
    keys = sorted(history.history)
    print("History keys:", ", ".join(keys))

    scores = model.evaluate(inputs(x_test), targets(y_test, b_test), verbose=0,
                            return_dict=True)
    weighted = sum(LOSS_WEIGHTS[k] * scores[f"{k}_loss"] for k in LOSS_WEIGHTS)
    print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    print(f"  loss = 1.0 * class_loss + 0.5 * brightness_loss = {weighted:.4f}")

    pred = model.predict(inputs(x_test), verbose=0)
    accuracy = float(np.mean(np.argmax(pred["class"], axis=1) == y_test))
    b_pred = pred["brightness"][:, 0] * b_std + b_mean
    mse = float(np.mean((b_pred - b_test) ** 2))
    baseline = float(np.mean((b_mean - b_test) ** 2))
    print(f"class accuracy {accuracy:.4f} (chance 0.1); brightness RMSE "
          f"{np.sqrt(mse):.4f} of the 0..1 pixel scale (constant guess {np.sqrt(baseline):.4f})")
    return {"history_keys": keys, "scores": scores, "weighted_loss": weighted,
            "accuracy": accuracy, "brightness_mse": mse, "brightness_baseline_mse": baseline,
            "prediction_keys": sorted(pred)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Two inputs, two outputs, loss weights")
    parser.add_argument("--small", action="store_true", help="a quick run on 1,000 images")
    main(small=parser.parse_args().small)
