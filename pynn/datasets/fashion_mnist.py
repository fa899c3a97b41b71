"""Fashion-MNIST: 70,000 28x28 grayscale images of Zalando articles in 10 classes
(60,000 training, 10,000 test), a drop-in replacement for MNIST that is harder to fit.

The data set is © Zalando SE, MIT licensed (https://github.com/zalandoresearch/fashion-mnist).
A class-balanced subset of 3,000 training and 1,000 test images ships inside pynn (see
`load_subset`) so examples run on a machine with neither the data nor a network.
"""
from __future__ import annotations

import sys
import warnings
from importlib import resources

from pynn.datasets import _common
from pynn.datasets._common import DataNotFoundError, DatasetSpec

__all__ = ["SPEC", "SubsetFallbackWarning", "class_names", "load_data", "load_data_or_subset",
           "load_subset"]

class_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

# MD5s as listed in the data set's README (they are of the .gz files as published).
SPEC = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    files={
        "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    install_hint="sudo apt-get install dataset-fashion-mnist",
    download_mb=30,
)

_SUBSET_FILE = "fashion_mnist_subset.npz"


class SubsetFallbackWarning(UserWarning):
    """load_data(fallback_to_subset=True) returned the small shipped subset."""


def load_data(path=None, *, download: bool = True, fallback_to_subset: bool = False):
    """Loads Fashion-MNIST.

    Looks in `path`, then `$PYNN_DATA` (or `~/.cache/pynn/fashion-mnist`), then
    `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist`), then downloads into
    the cache, checking the published MD5s.

    Args:
        path: a directory holding the four IDX files, or a Keras-style .npz file.
        download: allow the download step.
        fallback_to_subset: when the full set cannot be found or downloaded, return the small
            subset shipped with pynn instead of raising (with a `SubsetFallbackWarning`). Not
            when `path` is given, and never to hide a failed checksum.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 arrays of shapes (60000, 28, 28),
        (60000,), (10000, 28, 28) and (10000,). Label i names `class_names[i]`.

    Raises:
        DataNotFoundError: the data is nowhere to be found; the message lists how to get it.
        ChecksumMismatchError: a downloaded file does not match its published checksum.

    Example:
        >>> from pynn.datasets import fashion_mnist
        >>> (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
        >>> x_train.shape, fashion_mnist.class_names[y_train[0]]
        ((60000, 28, 28), 'Ankle boot')
    """
    try:
        return _common.load(SPEC, path, download_if_missing=download)
    except DataNotFoundError as exc:
        # An explicit path that is wrong is the caller's mistake to see, not to paper over.
        if not fallback_to_subset or path is not None:
            raise
        warnings.warn(f"{exc}\nUsing the {_subset_description()} shipped with pynn instead.",
                      SubsetFallbackWarning, stacklevel=2)
        return load_subset()


def load_data_or_subset(path=None, *, download: bool = True, quiet: bool = False):
    """The full data set if it can be had, otherwise the shipped subset, and which one it is.

    Meant for command-line tools: on fallback a note goes to stderr (unless `quiet`) saying
    why and how to get the full set. As with `load_data(fallback_to_subset=True)`, a wrong
    explicit `path` and a failed checksum are errors, not reasons to fall back.

    Returns:
        `(data, is_subset)` where `data` is as from `load_data`.
    """
    try:
        return _common.load(SPEC, path, download_if_missing=download), False
    except DataNotFoundError as exc:
        if path is not None:
            raise
        if not quiet:
            sys.stderr.write(f"pynn: {exc}\npynn: using the {_subset_description()} shipped "
                             f"with pynn instead; results will be below those on the full "
                             f"set.\n")
            sys.stderr.flush()
        return load_subset(), True


def load_subset() -> tuple:
    """The class-balanced subset of Fashion-MNIST that ships inside pynn.

    3,000 training images (300 per class) and 1,000 test images (100 per class), taken in file
    order from the full set by `tools/make_fashion_subset.py`.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, uint8, shapes (3000, 28, 28), (3000,),
        (1000, 28, 28), (1000,).
    """
    ref = resources.files("pynn.datasets").joinpath("data").joinpath(_SUBSET_FILE)
    with resources.as_file(ref) as p:
        if not p.is_file():
            raise DataNotFoundError(f"the shipped subset {p} is missing: this pynn "
                                    f"installation is incomplete; reinstall pynn")
        return _common.read_npz(SPEC, p)


def _subset_description() -> str:
    return "Fashion-MNIST subset (3000 training / 1000 test images)"
