"""MNIST: 70,000 28x28 grayscale handwritten digits (60,000 training, 10,000 test).

The MD5s are those torchvision and most mirrors use for the original .gz files (the original
site publishes none); the mirrors serve byte-identical copies.
"""
from __future__ import annotations

from pynn.datasets import _common
from pynn.datasets._common import DatasetSpec

__all__ = ["class_names", "load_data", "SPEC"]

class_names = [str(d) for d in range(10)]

SPEC = DatasetSpec(
    name="mnist",
    title="MNIST",
    files={
        "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist",
        "https://storage.googleapis.com/cvdf-datasets/mnist",
    ),
    system_dirs=("/usr/share/datasets/mnist",),
    install_hint="",
    download_mb=11,
)


def load_data(path=None, *, download: bool = True):
    """Loads MNIST.

    Looks in `path`, then `$PYNN_DATA` (or `~/.cache/pynn/mnist`), then `/usr/share/datasets/mnist`,
    then downloads into the cache, checking MD5s.

    Args:
        path: a directory holding the four IDX files, or Keras's `mnist.npz`.
        download: allow the download step.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 arrays of shapes (60000, 28, 28),
        (60000,), (10000, 28, 28) and (10000,).

    Raises:
        DataNotFoundError: the data is nowhere to be found; the message lists how to get it.
        ChecksumMismatchError: a downloaded file does not match its checksum.

    Example:
        >>> from pynn.datasets import mnist
        >>> (x_train, y_train), (x_test, y_test) = mnist.load_data()  # doctest: +SKIP
    """
    return _common.load(SPEC, path, download_if_missing=download)
