"""An autoencoder 784 -> 32 -> 784 on Fashion-MNIST: squeeze each image through 32 numbers and
rebuild it.

    python examples/autoencoder.py [--small]

The network is trained to output its own input (pixels scaled to [0, 1], sigmoid output,
binary cross-entropy per pixel). We report the reconstruction error next to that of the
best constant guess (the mean training image), and write a PNG of test images above their
reconstructions.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import pynn
from pynn.datasets import fashion_mnist


def main(small=False, out_dir="autoencoder_output", seed=0):
    pynn.utils.set_random_seed(seed)
    (x_train, _), (x_test, _) = fashion_mnist.load_subset()
    if small:
        x_train = x_train[:1000]
    x_train = x_train.reshape(len(x_train), -1).astype(np.float32) / 255.0
    x_test = x_test.reshape(len(x_test), -1).astype(np.float32) / 255.0

    model = pynn.Sequential([
        pynn.Input((784,)),
        pynn.layers.Dense(32, activation="relu", name="code"),
        pynn.layers.Dense(784, activation="sigmoid", name="decoder"),
    ])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x_train, x_train, epochs=5 if small else 40, batch_size=64, verbose=0)
    recon = model.predict(x_test, verbose=0)
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
        fig.suptitle("test images (top) and their 32-number reconstructions (bottom)")
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "reconstructions.png")
        fig.savefig(path, dpi=80)
        print("wrote", path)
    return {"mse": mse, "baseline_mse": baseline, "file": path}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A 784-32-784 autoencoder")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--output", default="autoencoder_output")
    args = parser.parse_args()
    main(small=args.small, out_dir=args.output)
