"""Listing a directory of samples, Keras's train/validation split rules, and `split_dataset`.

The order of files, the labels, the seeded shuffle of the file list and the split points are
Keras 3's, so a seed picks the same training and validation files in pynn and in Keras.
"""
from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from pynn.utils.dataset import Dataset

__all__ = ["split_dataset"]


def check_validation_split_arg(validation_split: Any, subset: Any, shuffle: bool,
                               seed: Any) -> None:
    if validation_split is not None and (isinstance(validation_split, bool)
                                         or not isinstance(validation_split, numbers.Real)):
        raise TypeError(f"validation_split: expected a float in (0, 1) or None, got "
                        f"{validation_split!r}")
    if validation_split and not 0 < float(validation_split) < 1:
        raise ValueError(f"validation_split: expected a float in (0, 1), got "
                         f"{validation_split!r}")
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError(f"subset and validation_split go together: set both or neither "
                         f"(got subset={subset!r}, validation_split={validation_split!r})")
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f"subset: expected 'training', 'validation', 'both' or None, got "
                         f"{subset!r}")
    if validation_split and shuffle and seed is None:
        raise ValueError("seed: with validation_split and shuffle=True a seed is required, so "
                         "that the training and validation subsets do not overlap")


def check_seed(seed: Any) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                             or not 0 <= int(seed) < 2**32):
        raise ValueError(f"seed: expected an integer in [0, 2**32) or None, got {seed!r}")


def _valid_files(directory: str, follow_links: bool, formats: tuple[str, ...]):
    walk = sorted(os.walk(directory, followlinks=follow_links), key=lambda entry: entry[0])
    for root, _, files in walk:
        for fname in sorted(files):
            if fname.lower().endswith(formats):
                yield root, fname


def index_directory(directory: str | os.PathLike[str], labels: Any, formats: tuple[str, ...],
                    class_names: Sequence[str] | None = None, shuffle: bool = True,
                    seed: int | None = None, follow_links: bool = False,
                    verbose: bool = True) -> tuple[list[str], np.ndarray | None, list | None]:
    """(file paths, int32 labels or None, class names) for the files under `directory`.

    With ``labels="inferred"`` each sub-folder (sorted by name, hidden ones skipped) is a
    class and the files anywhere below it are its samples (symbolic links to folders are
    followed only with `follow_links`). Files are sorted by folder, then by name; with
    `shuffle` the list is permuted by ``np.random.RandomState(seed)`` as Keras does.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory: expected a path, got {type(directory).__name__}")
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"directory: {directory!r} is not an existing directory")
    if labels == "inferred":
        subdirs = [d for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
        if class_names is not None:
            if not set(class_names) <= set(subdirs):
                raise ValueError(f"class_names: expected names of sub-directories of "
                                 f"{directory!r} ({subdirs} or a subset), got "
                                 f"{list(class_names)}")
            subdirs = list(class_names)
    else:
        subdirs = [""]
        if class_names is not None:
            raise ValueError("class_names: only allowed with labels='inferred'")
    indices = {name: i for i, name in enumerate(subdirs)}
    filenames: list[str] = []
    found: list[int] = []
    for sub in subdirs:
        top = os.path.join(directory, sub)
        for root, fname in _valid_files(top, follow_links, formats):
            filenames.append(os.path.join(sub, os.path.relpath(os.path.join(root, fname), top)))
            found.append(indices[sub])
    out_labels: np.ndarray | None
    names: list | None
    if labels == "inferred":
        out_labels, names = np.asarray(found, dtype=np.int32), list(subdirs)
    elif labels is None:
        out_labels, names = None, None
    else:
        if len(labels) != len(filenames):
            raise ValueError(f"labels: expected one label per file ({len(filenames)} files in "
                             f"{directory!r}), got {len(labels)}")
        arr = np.asarray(labels)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"labels: expected integer labels, got dtype {arr.dtype}")
        out_labels = arr.astype(np.int32)
        names = [str(v) for v in sorted(set(arr.tolist()))]
    if verbose:
        if out_labels is None:
            print(f"Found {len(filenames)} files.")
        else:
            print(f"Found {len(filenames)} files belonging to {len(names or [])} classes.")
    paths = [os.path.join(directory, f) for f in filenames]
    if shuffle:
        if seed is None:
            seed = int(np.random.randint(10**6))
        np.random.RandomState(seed).shuffle(paths)
        if out_labels is not None:
            np.random.RandomState(seed).shuffle(out_labels)
    return paths, out_labels, names


def training_or_validation_split(samples: list, labels: np.ndarray | None,
                                 validation_split: float | None, subset: str | None,
                                 verbose: bool = True) -> tuple[list, np.ndarray | None]:
    """Keras's split: the last ``int(validation_split * n)`` samples are the validation
    subset, the ones before them the training subset."""
    if not validation_split:
        return samples, labels
    num_val = int(validation_split * len(samples))
    num_train = len(samples) - num_val
    if subset == "training":
        if verbose:
            print(f"Using {num_train} files for training.")
        part = slice(0, num_train)
    elif subset == "validation":
        if verbose:
            print(f"Using {num_val} files for validation.")
        part = slice(num_train, len(samples))
    else:
        raise ValueError(f"subset: expected 'training' or 'validation', got {subset!r}")
    return samples[part], None if labels is None else labels[part]


def encode_labels(labels: np.ndarray, label_mode: str | None, num_classes: int) -> np.ndarray:
    """Labels as Keras's loaders give them: int32 ("int"), float32 one-hot ("categorical")
    or float32 of shape (n, 1) ("binary")."""
    if label_mode == "binary":
        return labels.astype(np.float32)[:, None]
    if label_mode == "categorical":
        return np.eye(num_classes, dtype=np.float32)[labels]
    return labels.astype(np.int32)


def check_label_mode(label_mode: Any) -> None:
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError(f"label_mode: expected 'int', 'categorical', 'binary' or None, got "
                         f"{label_mode!r}")


def check_labels_arg(labels: Any, class_names: Any) -> None:
    if labels not in ("inferred", None):
        if not isinstance(labels, (list, tuple, np.ndarray)):
            raise ValueError(f"labels: expected 'inferred', None or a list of integer labels "
                             f"(one per file, in sorted path order), got {labels!r}")
        if class_names:
            raise ValueError("class_names: only allowed with labels='inferred'")


def loader_datasets(directory: str, paths: list[str], labels: np.ndarray | None,
                    class_names: list | None, label_mode: str | None,
                    load: Any, batch_size: int | None, shuffle: bool, seed: int | None,
                    validation_split: float | None, subset: str | None,
                    what: str, verbose: bool) -> Any:
    """The Dataset(s) of a directory loader: `load(paths)` reads a batch of samples. The
    training subset (or the whole set) is reshuffled at each pass when `shuffle`."""
    num_classes = len(class_names) if class_names else 0

    def make(part_paths: list[str], part_labels: np.ndarray | None, reshuffle: bool) -> Dataset:
        if not part_paths:
            raise ValueError(f"directory: no {what} found in {directory!r}")
        if part_labels is None or label_mode is None:
            ds = Dataset(lambda idx: (load([part_paths[i] for i in idx]),), len(part_paths),
                         batch_size, reshuffle, seed, single=True)
        else:
            enc = encode_labels(part_labels, label_mode, num_classes)
            ds = Dataset(lambda idx: (load([part_paths[i] for i in idx]), enc[idx]),
                         len(part_paths), batch_size, reshuffle, seed)
        ds.class_names = class_names
        ds.file_paths = list(part_paths)
        return ds

    if subset == "both":
        tp, tl = training_or_validation_split(paths, labels, validation_split, "training",
                                              verbose)
        vp, vl = training_or_validation_split(paths, labels, validation_split, "validation",
                                              verbose)
        return [make(tp, tl, shuffle), make(vp, vl, False)]
    paths, labels = training_or_validation_split(paths, labels, validation_split, subset,
                                                 verbose)
    return make(paths, labels, shuffle)


def _split_sizes(left_size: Any, right_size: Any, total: int) -> tuple[int, int]:
    """Keras's rules: a float is a fraction (rounded), an int a count; None is the rest."""
    for value, name in ((left_size, "left_size"), (right_size, "right_size")):
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, (numbers.Integral, numbers.Real))):
            raise TypeError(f"{name}: expected an int, a float or None, got "
                            f"{type(value).__name__}")
    if left_size is None and right_size is None:
        raise ValueError("left_size, right_size: at least one must be given")

    def rescale(value: Any, name: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, numbers.Integral):
            if not 0 < int(value) < total:
                raise ValueError(f"{name}: expected a positive integer smaller than {total} "
                                 f"or a float in (0, 1), got {value}")
            return int(value)
        if not 0 < value < 1:
            raise ValueError(f"{name}: expected a float in (0, 1) or a positive integer "
                             f"smaller than {total}, got {value}")
        return round(float(value) * total)

    if (isinstance(left_size, float) and isinstance(right_size, float)
            and left_size + right_size > 1):
        raise ValueError(f"left_size + right_size: expected at most 1, got "
                         f"{left_size + right_size}")
    left, right = rescale(left_size, "left_size"), rescale(right_size, "right_size")
    if left is None:
        left = total - (right or 0)
    if right is None:
        right = total - left
    if left + right > total:
        raise ValueError(f"left_size + right_size: expected at most the dataset's length "
                         f"{total}, got {left + right}")
    if left == 0 or right == 0:
        side = "left" if left == 0 else "right"
        raise ValueError(f"left_size={left_size!r}, right_size={right_size!r}: the {side} "
                         f"split of a dataset of {total} samples would be empty")
    return left, right


def split_dataset(dataset: Any, left_size: int | float | None = None,
                  right_size: int | float | None = None, shuffle: bool = False,
                  seed: int | None = None) -> tuple[Dataset, Dataset]:
    """Splits a dataset into a left and a right part (e.g. training and test).

    Args:
        dataset: an array, a tuple/list of arrays with the same number of rows, or a
            `pynn.utils.Dataset`.
        left_size: a float in (0, 1) (a fraction of the samples, rounded) or an int (a
            count); None means the complement of `right_size`.
        right_size: likewise for the right part; None means the complement of `left_size`.
        shuffle: shuffle the samples before splitting.
        seed: seed of that shuffle.

    Returns:
        Two unbatched `Dataset`s (call `.batch(n)` before `fit`). Their sizes are Keras's;
        unshuffled, so are their contents (shuffled, pynn draws its own permutation).

    Example:
        >>> left, right = split_dataset(np.zeros((1000, 4)), left_size=0.8)
        >>> len(left), len(right)
        (800, 200)
    """
    if isinstance(dataset, Dataset):
        src = dataset.unbatch()
    elif isinstance(dataset, (np.ndarray, list, tuple)):
        src = Dataset.from_arrays(tuple(dataset) if isinstance(dataset, list) else dataset)
    else:
        raise TypeError(f"dataset: expected an array, a tuple of arrays or a "
                        f"pynn.utils.Dataset, got {type(dataset).__name__}")
    check_seed(seed)
    total = src.num_samples
    left, right = _split_sizes(left_size, right_size, total)
    order = (np.random.default_rng(seed).permutation(total) if shuffle
             else np.arange(total))
    return src._subset(order[:left]), src._subset(order[left:left + right])
