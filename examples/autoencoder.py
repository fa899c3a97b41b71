"""An autoencoder 784 -> 32 -> 784 on Fashion-MNIST, built from two models: an encoder that
squeezes each image into 32 numbers and a decoder that rebuilds the image from them.

    python examples/autoencoder.py [--small]

The encoder (784 -> 32) and the decoder (32 -> 784) are separate `pynn.Sequential` models.
Called on a symbolic input, one after the other, they make the functional model
``autoencoder = pynn.Model(x, decoder(encoder(x)))``, which is trained to output its own
input (pixels scaled to [0, 1], sigmoid output, binary cross-entropy per pixel). The three
models share their layers, so training the autoencoder trains the encoder and the decoder;
afterwards each is used alone: the encoder turns the test images into 32-number codes, the
decoder turns codes back into images, and decoder(encoder(x)) gives the same pictures as
autoencoder(x). We report the reconstruction error next to that of the best constant guess
(the mean training image), and write a PNG of test images above their reconstructions.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import pynn
from pynn.datasets import fashion_mnist
from pynn.layers import Dense

CODE_SIZE = 32


def build():
    encoder = pynn.Sequential([pynn.Input((784,)),
                               Dense(CODE_SIZE, activation="relu", name="code")],
                              name="encoder")
    decoder = pynn.Sequential([pynn.Input((CODE_SIZE,)),
                               Dense(784, activation="sigmoid", name="pixels")],
                              name="decoder")
    image = pynn.Input((784,), name="image")
    autoencoder = pynn.Model(image, decoder(encoder(image)), name="autoencoder")
    return encoder, decoder, autoencoder


def main(small=False, out_dir="autoencoder_output", seed=0):
    pynn.utils.set_random_seed(seed)
    (x_train, _), (x_test, _) = fashion_mnist.load_subset()
    if small:
        x_train = x_train[:1000]
    x_train = x_train.reshape(len(x_train), -1).astype(np.float32) / 255.0
    x_test = x_test.reshape(len(x_test), -1).astype(np.float32) / 255.0

    encoder, decoder, autoencoder = build()
    autoencoder.compile(optimizer="adam", loss="binary_crossentropy")
    autoencoder.fit(x_train, x_train, epochs=5 if small else 40, batch_size=64, verbose=0)
    recon = autoencoder.predict(x_test, verbose=0)

    # The parts alone, on the weights the autoencoder just trained.
    codes = encoder.predict(x_test, verbose=0)
    decoded = decoder.predict(codes, verbose=0)
    max_diff = float(np.max(np.abs(decoded - recon)))
    print(f"encoder: {x_test.shape} -> codes {codes.shape}; {np.mean(codes > 0):.0%} of the "
          f"code values are non-zero")
    print(f"decoder(encoder(x)) vs autoencoder(x): largest difference {max_diff:.2e}")

    mse = float(np.mean((recon - x_test) ** 2))
    baseline = float(np.mean((x_train.mean(axis=0) - x_test) ** 2))
    print(f"reconstruction MSE per pixel {mse:.4f} (mean-image baseline {baseline:.4f})")

    path = None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("the reconstruction picture needs matplotlib: pip install pynn[plot]")
    else:
        from matplotlib.figure import Figure  # no pyplot: works without a display

        n = 8
        fig = Figure(figsize=(n * 1.2, 2.6))
        for i in range(n):
            for row, images in enumerate((x_test, recon)):
                ax = fig.add_subplot(2, n, row * n + i + 1)
                ax.imshow(images[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
                ax.axis("off")
        fig.suptitle(f"test images (top) and their {CODE_SIZE}-number reconstructions (bottom)")
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "reconstructions.png")
        fig.savefig(path, dpi=80)
        print("wrote", path)
    return {"mse": mse, "baseline_mse": baseline, "file": path, "codes": codes,
            "decoded": decoded, "reconstructions": recon, "max_diff": max_diff}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A 784-32-784 autoencoder from an encoder "
                                                 "and a decoder")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--output", default="autoencoder_output")
    args = parser.parse_args()
    main(small=args.small, out_dir=args.output)
