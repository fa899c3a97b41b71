"""`text_dataset_from_directory`: a folder of .txt files (one sub-folder per class) as a
Dataset of strings."""
from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from pynn.utils import dataset_utils as du

__all__ = ["text_dataset_from_directory"]


def _read_text(path: str, max_length: int | None) -> str:
    with open(path, "rb") as f:
        raw = f.read() if max_length is None else f.read(max_length)
    try:
        # a cut through a multi-byte character drops that character's bytes
        return raw.decode("utf-8", errors="ignore" if max_length is not None else "strict")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def text_dataset_from_directory(
        directory: str | os.PathLike[str], labels: str | Sequence[int] | None = "inferred",
        label_mode: str | None = "int", class_names: Sequence[str] | None = None,
        batch_size: int | None = 32, max_length: int | None = None, shuffle: bool = True,
        seed: int | None = None, validation_split: float | None = None,
        subset: str | None = None, follow_links: bool = False,
        verbose: bool = True) -> Any:
    """A `Dataset` of the .txt files in a folder, labelled by sub-folder (Keras 3's function).

    Arguments are those of `image_dataset_from_directory` (labels, label_mode, class_names,
    batch_size, shuffle, seed, validation_split, subset, follow_links, verbose), plus:

    Args:
        max_length: keep at most this many bytes of each file (None: all of it), as Keras's
            `tf.strings.substr` does.

    Returns:
        A `pynn.utils.Dataset` yielding `(texts, labels)`: `texts` a NumPy object array of
        Python strings (UTF-8 decoded), labels as in `image_dataset_from_directory`; with
        `class_names` and `file_paths`; `[train, val]` for ``subset="both"``. Feed the texts
        to a text-vectorizing layer (or your own tokenizer) before a model.
    """
    du.check_labels_arg(labels, class_names)
    du.check_label_mode(label_mode)
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    if max_length is not None and (isinstance(max_length, bool)
                                   or not isinstance(max_length, numbers.Integral)
                                   or max_length < 1):
        raise ValueError(f"max_length: expected a positive integer or None, got "
                         f"{max_length!r}")
    du.check_validation_split_arg(validation_split, subset, shuffle, seed)
    du.check_seed(seed)
    if seed is None:
        seed = int(np.random.randint(10**6))
    paths, found, names = du.index_directory(directory, labels, (".txt",), class_names,
                                             shuffle, seed, follow_links, verbose)
    if label_mode == "binary" and len(names or []) != 2:
        raise ValueError(f"label_mode='binary' needs exactly 2 classes, got class_names="
                         f"{names}")

    def load(batch_paths: list[str]) -> np.ndarray:
        out = np.empty(len(batch_paths), dtype=object)
        for k, p in enumerate(batch_paths):
            out[k] = _read_text(p, max_length)
        return out

    return du.loader_datasets(os.fspath(directory), paths, found, names, label_mode, load,
                              batch_size, shuffle, seed, validation_split, subset, "text files",
                              verbose)
