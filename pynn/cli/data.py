"""Loading data for the commands: the image sets by name, and CSV files as tables of text."""
from __future__ import annotations

import csv
import os
from typing import NamedTuple

import numpy as np

from pynn.cli.common import CliError
from pynn.cli.preprocess import ImagePreprocessor, Table, is_missing

IMAGE_SETS = ("fashion_mnist", "mnist")


class ImageData(NamedTuple):
    """Scaled float32 images and int64 labels of both splits, and the scaling used."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessor: ImagePreprocessor


def data_name(text: str) -> str:
    """'Fashion-MNIST' and 'fashion_mnist' name the same set; anything else is a path."""
    key = text.lower().replace("-", "_")
    return key if key in IMAGE_SETS else text


def load_images(name: str, quiet: bool = False) -> ImageData:
    """One of IMAGE_SETS with pixels scaled to [0, 1]; Fashion-MNIST falls back to the subset
    shipped with pynn when the full set cannot be had."""
    from pynn.datasets import fashion_mnist, mnist

    if name == "fashion_mnist":
        data, is_subset = fashion_mnist.load_data_or_subset(quiet=quiet)
        names = fashion_mnist.class_names
    else:
        data, is_subset = mnist.load_data(), False
        names = mnist.class_names
    (x_train, y_train), (x_test, y_test) = data
    pre = ImagePreprocessor(name, tuple(int(d) for d in x_train.shape[1:]), tuple(names),
                            1 / 255, bool(is_subset))
    return ImageData(pre.transform(x_train), y_train.astype(np.int64),
                     pre.transform(x_test), y_test.astype(np.int64), pre)


def read_csv(path: str) -> Table:
    """The header and rows of a CSV file with a header row; cells are stripped strings.

    The delimiter (comma, semicolon or tab) is sniffed; blank rows are skipped.
    """
    if not os.path.isfile(path):
        raise CliError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(1 << 14)
        f.seek(0)
        dialect: type[csv.Dialect] | csv.Dialect
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        try:
            rows = [[cell.strip() for cell in row] for row in csv.reader(f, dialect)]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CliError(f"{path}: not a readable CSV file ({exc})") from None
    rows = [r for r in rows if any(r)]
    if len(rows) < 2:
        raise CliError(f"{path}: expected a header row and at least one data row")
    header, rows = rows[0], rows[1:]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise CliError(f"{path}: the header row must name every column, each once")
    for k, row in enumerate(rows):
        if len(row) != len(header):
            raise CliError(f"{path}: data row {k + 1} has {len(row)} cells, the header has "
                           f"{len(header)}")
    return Table(header, rows)


def rows_with_target(table: Table, target: str) -> Table:
    """The rows of `table` whose `target` cell holds a value."""
    ti = list(table.header).index(target)
    return Table(table.header, [r for r in table.rows if not is_missing(r[ti])])
