"""Sequences: `pad_sequences` and `timeseries_dataset_from_array` (Keras 3's functions)."""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from pynn.utils.dataset import Dataset
from pynn.utils.dataset_utils import check_seed

__all__ = ["pad_sequences", "timeseries_dataset_from_array"]


def pad_sequences(sequences: Any, maxlen: int | None = None, dtype: DTypeLike = "int32",
                  padding: str = "pre", truncating: str = "pre",
                  value: Any = 0.0) -> np.ndarray:
    """Pads (or cuts) a list of sequences to one length: a `(len(sequences), maxlen, ...)`
    array.

    Args:
        sequences: a list of sequences (lists or arrays; each step may itself be an array,
            all steps of the same shape).
        maxlen: the common length; default the longest sequence's.
        dtype: dtype of the result (``object`` for variable-length strings).
        padding: "pre" or "post": pad before or after each sequence.
        truncating: "pre" or "post": drop the start or the end of longer sequences.
        value: the padding value.

    Example:
        >>> pad_sequences([[1], [2, 3], [4, 5, 6]])
        array([[0, 0, 1],
               [0, 2, 3],
               [4, 5, 6]], dtype=int32)
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError(f"sequences: expected a list of sequences, got "
                         f"{type(sequences).__name__}")
    if padding not in ("pre", "post"):
        raise ValueError(f"padding: expected 'pre' or 'post', got {padding!r}")
    if truncating not in ("pre", "post"):
        raise ValueError(f"truncating: expected 'pre' or 'post', got {truncating!r}")
    if maxlen is not None and (isinstance(maxlen, bool)
                               or not isinstance(maxlen, numbers.Integral) or maxlen < 0):
        raise ValueError(f"maxlen: expected a non-negative integer or None, got {maxlen!r}")
    lengths = []
    step_shape: tuple = ()
    found_shape = False
    for i, s in enumerate(sequences):
        if not hasattr(s, "__len__"):
            raise ValueError(f"sequences[{i}]: expected a sequence, got {s!r}")
        lengths.append(len(s))
        if not found_shape and len(s):
            step_shape, found_shape = np.asarray(s).shape[1:], True
    if maxlen is None:
        maxlen = int(max(lengths)) if lengths else 0
    is_text = np.issubdtype(dtype, np.str_) or np.issubdtype(dtype, np.bytes_)
    if isinstance(value, str) and dtype is not object and not is_text:
        raise ValueError(f"value: the string {value!r} does not fit dtype={dtype!r}; use "
                         f"dtype=object for variable-length strings")
    out = np.full((len(sequences), maxlen) + step_shape, value, dtype=dtype)
    if maxlen == 0:
        return out
    for i, s in enumerate(sequences):
        if not len(s):
            continue
        kept = np.asarray(s[-maxlen:] if truncating == "pre" else s[:maxlen], dtype=dtype)
        if kept.shape[1:] != step_shape:
            raise ValueError(f"sequences[{i}]: expected steps of shape {step_shape} like the "
                             f"first non-empty sequence, got {kept.shape[1:]}")
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, maxlen - len(kept):] = kept
    return out


def _index(value: Any, name: str, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    return int(value)


def timeseries_dataset_from_array(data: ArrayLike, targets: ArrayLike | None,
                                  sequence_length: int, sequence_stride: int = 1,
                                  sampling_rate: int = 1, batch_size: int | None = 128,
                                  shuffle: bool = False, seed: int | None = None,
                                  start_index: int | None = None,
                                  end_index: int | None = None) -> Dataset:
    """Sliding windows over a time series, as a `Dataset` of `(windows, targets)` batches.

    Window `i` holds the steps ``p, p + r, ..., p + (sequence_length - 1) * r`` of
    ``data[start_index:end_index]``, where ``p = i * sequence_stride`` and
    ``r = sampling_rate``; its target is ``targets[start_index + p]``. Windows that would run
    past `end_index` are not made.

    Args:
        data: array of steps, shape `(steps, ...)`.
        targets: array with the target of the window starting at each step, or None (the
            dataset then yields windows only).
        sequence_length: steps per window.
        sequence_stride: steps between the starts of consecutive windows.
        sampling_rate: steps between the steps of one window.
        batch_size: windows per batch, or None for single windows.
        shuffle: shuffle the windows (once, seeded with `seed`, as Keras's permutation of the
            window starts; Keras then also mixes them within an `8 * batch_size` buffer at each
            pass, pynn does not).
        seed: the shuffling seed.
        start_index, end_index: use only ``data[start_index:end_index]``.

    Returns:
        A `pynn.utils.Dataset`. Unshuffled, its windows and targets equal Keras's.

    Example:
        >>> ds = timeseries_dataset_from_array(np.arange(10), None, 3, batch_size=None)
        >>> [int(w[0]) for w in ds]
        [0, 1, 2, 3, 4, 5, 6, 7]
    """
    data_arr = np.asarray(data)
    if data_arr.ndim == 0:
        raise ValueError("data: expected an array of steps, got a scalar")
    n = len(data_arr)
    seq_len = _index(sequence_length, "sequence_length", allow_none=False)
    stride = _index(sequence_stride, "sequence_stride", allow_none=False)
    rate = _index(sampling_rate, "sampling_rate", allow_none=False)
    start = _index(start_index, "start_index")
    end = _index(end_index, "end_index")
    assert seq_len is not None and stride is not None and rate is not None
    if seq_len < 1:
        raise ValueError(f"sequence_length: expected a positive integer, got {seq_len}")
    if start:
        if start < 0:
            raise ValueError(f"start_index: expected 0 or more, got {start}")
        if start >= n:
            raise ValueError(f"start_index: expected less than the length of data ({n}), got "
                             f"{start}")
    if end:
        if start and end <= start:
            raise ValueError(f"end_index: expected more than start_index={start}, got {end}")
        if end >= n:
            raise ValueError(f"end_index: expected less than the length of data ({n}), got "
                             f"{end}")
    if end is not None and end <= 0:
        raise ValueError(f"end_index: expected more than 0, got {end}")
    for value, name in ((rate, "sampling_rate"), (stride, "sequence_stride")):
        if value <= 0:
            raise ValueError(f"{name}: expected a positive integer, got {value}")
        if value >= n:
            raise ValueError(f"{name}: expected less than the length of data ({n}), got "
                             f"{value}")
    check_seed(seed)
    target_arr = None if targets is None else np.asarray(targets)
    if target_arr is not None and target_arr.ndim == 0:
        raise ValueError("targets: expected an array with one target per step, or None")
    start = start or 0
    end = n if end is None else end
    num_windows = end - start - (seq_len - 1) * rate
    if target_arr is not None:
        num_windows = min(num_windows, len(target_arr))
    positions = np.arange(0, max(num_windows, 0), stride, dtype=np.int64)
    if shuffle:
        if seed is None:
            seed = int(np.random.randint(10**6))
        np.random.RandomState(seed).shuffle(positions)
    offsets = np.arange(seq_len, dtype=np.int64) * rate
    window_data = data_arr[start:end]
    target_slice = None if target_arr is None else target_arr[start:end]

    def fetch(idx: np.ndarray) -> tuple:
        p = positions[idx]
        windows = window_data[p[:, None] + offsets[None, :]]
        return (windows,) if target_slice is None else (windows, target_slice[p])

    return Dataset(fetch, positions.size, batch_size, single=target_arr is None)
