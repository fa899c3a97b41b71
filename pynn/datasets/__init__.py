"""Data sets with Keras's loading API: `fashion_mnist.load_data()` and `mnist.load_data()`
return `((x_train, y_train), (x_test, y_test))` as uint8 arrays.

`idx` reads and writes the IDX files they come in.
"""
from pynn.datasets import fashion_mnist, idx, mnist
from pynn.datasets._common import ChecksumMismatchError, DataNotFoundError, DownloadError
from pynn.datasets.idx import IdxFormatError

__all__ = ["ChecksumMismatchError", "DataNotFoundError", "DownloadError", "IdxFormatError",
           "fashion_mnist", "idx", "mnist"]
