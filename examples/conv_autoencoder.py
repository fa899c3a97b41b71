"""A convolutional autoencoder on Fashion-MNIST: strided Conv2D layers shrink each 28x28 image
to a 7x7x8 code (392 numbers, half the pixels), Conv2DTranspose layers grow it back.

    python examples/conv_autoencoder.py [--small]

    encoder  Conv2D(16, 3, strides=2, same, relu)           (28, 28, 1) -> (14, 14, 16)
             Conv2D(8, 3, strides=2, same, relu)            -> (7, 7, 8)
    decoder  Conv2DTranspose(16, 3, strides=2, same, relu)  -> (14, 14, 16)
             Conv2DTranspose(16, 3, strides=2, same, relu)  -> (28, 28, 16)
             Conv2D(1, 3, same, sigmoid)                    -> (28, 28, 1)

A transposed convolution with strides=2 and padding="same" doubles the height and width:
each input pixel spreads its 3x3 kernel over the output, two pixels apart. The model is
trained to output its own input (pixels in [0, 1], binary cross-entropy per pixel); we report
the reconstruction error next to that of the best constant guess (the mean training image).
"""
from __future__ import annotations

import argparse

import numpy as np

import pynn
from pynn.datasets import fashion_mnist
from pynn.layers import Conv2D, Conv2DTranspose


def build():
    encoder = pynn.Sequential([
        pynn.Input((28, 28, 1)),
        Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        Conv2D(8, 3, strides=2, padding="same", activation="relu", name="code")],
        name="encoder")
    decoder = pynn.Sequential([
        pynn.Input((7, 7, 8)),
        Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu"),
        Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu"),
        Conv2D(1, 3, padding="same", activation="sigmoid", name="pixels")],
        name="decoder")
    image = pynn.Input((28, 28, 1), name="image")
    return encoder, decoder, pynn.Model(image, decoder(encoder(image)), name="autoencoder")


def main(small=False, seed=0):
    pynn.utils.set_random_seed(seed)
    (x_train, _), (x_test, _) = fashion_mnist.load_subset()
    if small:
        x_train, x_test = x_train[:1000], x_test[:300]
    x_train = x_train[..., None].astype(np.float32) / 255.0
    x_test = x_test[..., None].astype(np.float32) / 255.0

    encoder, decoder, autoencoder = build()
    autoencoder.compile(optimizer=pynn.optimizers.Adam(2e-3), loss="binary_crossentropy")
    autoencoder.fit(x_train, x_train, epochs=4 if small else 20, batch_size=32, verbose=0)
    recon = autoencoder.predict(x_test, verbose=0)
    codes = encoder.predict(x_test, verbose=0)
    print(f"codes {codes.shape[1:]} per image; reconstructions {recon.shape[1:]}")

    mse = float(np.mean((recon - x_test) ** 2))
    baseline = float(np.mean((x_train.mean(axis=0) - x_test) ** 2))
    print(f"reconstruction MSE per pixel {mse:.4f} (mean-image baseline {baseline:.4f})")
    return {"mse": mse, "baseline_mse": baseline, "codes": codes, "reconstructions": recon,
            "decoded": decoder.predict(codes, verbose=0)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A convolutional autoencoder with "
                                                 "Conv2DTranspose layers")
    parser.add_argument("--small", action="store_true")
    main(small=parser.parse_args().small)
