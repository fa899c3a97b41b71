"""`Dataset`: what pynn's data loaders return in place of Keras's `tf.data.Dataset`.

pynn does not depend on TensorFlow, so `image_dataset_from_directory` and its siblings return
this small iterable instead. Iterating it yields one element per step: an `(x, y)` tuple of
NumPy arrays (or `x` alone when there are no labels), a batch of `batch_size` samples, or a
single sample when the dataset is unbatched (`batch_size=None`). Elements are produced lazily
(images are decoded while iterating), so a folder larger than memory streams through `fit`.

`fit`, `evaluate` and `predict` accept a `Dataset` directly, as Keras accepts a
`tf.data.Dataset`; `len(ds)` is the number of batches per pass (Keras's `cardinality()`).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["Dataset"]

# fetch(indices) -> tuple of arrays, each with len(indices) rows (one per structure entry)
Fetch = Callable[[np.ndarray], tuple]


class Dataset:
    """A lazily evaluated, re-iterable sequence of NumPy batches.

    Args:
        fetch: a function that takes an int64 array of sample indices and returns a tuple
            of arrays, each holding those samples along axis 0 (e.g. `(images, labels)`).
        num_samples: how many samples the dataset holds.
        batch_size: samples per element, or None for one sample per element.
        shuffle: draw a new sample order at each pass (from `seed`).
        seed: seed of the shuffling stream (None: a random one).
        single: the fetch returns one array (x only) rather than (x, y).

    Attributes:
        class_names: the class names (image and text loaders), else None.
        file_paths: the files behind the samples (image and text loaders), in the dataset's
            base order; a dataset that reshuffles at each pass visits them in another order.

    Example:
        >>> ds = Dataset.from_arrays((np.arange(6.0), np.arange(6)), batch_size=4)
        >>> [x.shape for x, y in ds], len(ds)
        ([(4,), (2,)], 2)
    """

    def __init__(self, fetch: Fetch, num_samples: int, batch_size: int | None = 32,
                 shuffle: bool = False, seed: int | None = None, single: bool = False):
        if batch_size is not None and (isinstance(batch_size, bool)
                                       or not isinstance(batch_size, numbers.Integral)
                                       or batch_size < 1):
            raise ValueError(f"batch_size: expected a positive integer or None, got "
                             f"{batch_size!r}")
        self._fetch = fetch
        self._n = int(num_samples)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.reshuffle = bool(shuffle)   # a new sample order at every pass
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._single = single
        self._maps: list[Callable[..., Any]] = []
        self.class_names: list[str] | None = None
        self.file_paths: list[str] | None = None

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, arrays: Any, batch_size: int | None = None, shuffle: bool = False,
                    seed: int | None = None) -> Dataset:
        """A dataset over in-memory arrays: one array, or a tuple `(x, y)` / `(x, y, w)` of
        arrays with the same number of rows (Keras's `from_tensor_slices`)."""
        single = not isinstance(arrays, (tuple, list))
        parts = [np.asarray(arrays)] if single else [np.asarray(a) for a in arrays]
        if not parts or any(p.ndim == 0 for p in parts):
            raise ValueError("arrays: expected arrays with a sample axis first")
        n = parts[0].shape[0]
        if any(p.shape[0] != n for p in parts):
            raise ValueError(f"arrays: expected the same number of rows in every array, got "
                             f"{[p.shape[0] for p in parts]}")
        return cls(lambda idx: tuple(p[idx] for p in parts), n, batch_size, shuffle, seed,
                   single)

    def _derive(self, fetch: Fetch | None = None, num_samples: int | None = None,
                **changes: Any) -> Dataset:
        """A copy sharing the source, with some settings changed."""
        out = Dataset(self._fetch if fetch is None else fetch,
                      self._n if num_samples is None else num_samples,
                      changes.get("batch_size", self.batch_size),
                      changes.get("shuffle", self.reshuffle), changes.get("seed", self.seed),
                      self._single)
        out._maps = list(self._maps)
        out.class_names = self.class_names
        out.file_paths = None if fetch is not None else self.file_paths
        return out

    def batch(self, batch_size: int) -> Dataset:
        """The same samples grouped `batch_size` at a time (the last batch may be smaller)."""
        if batch_size is None:
            raise ValueError("batch_size: expected a positive integer, got None")
        return self._derive(batch_size=batch_size)

    def unbatch(self) -> Dataset:
        """The same samples one at a time."""
        return self._derive(batch_size=None)

    def shuffle(self, buffer_size: int | None = None, seed: int | None = None,
                reshuffle_each_iteration: bool = True) -> Dataset:
        """The same samples in a random order (`tf.data.Dataset.shuffle`'s signature).

        pynn permutes all the samples, as a buffer at least as large as the dataset would;
        `buffer_size` is accepted and not needed. Unlike tf.data on a batched dataset, the
        samples are shuffled, not whole batches. With ``reshuffle_each_iteration=False``
        every pass uses the same order."""
        if not reshuffle_each_iteration:
            fixed = self._subset(np.random.default_rng(seed).permutation(self._n))
            fixed.reshuffle = False
            return fixed
        return self._derive(shuffle=True, seed=seed)

    def prefetch(self, buffer_size: int | None = None) -> Dataset:
        """Returns the dataset itself: batches are built when `fit` asks for them (accepted
        so that Keras pipelines ending in ``.prefetch(...)`` run unchanged)."""
        return self

    def cache(self) -> Dataset:
        """A dataset that keeps every sample in memory once it has been read (e.g. decoded
        images), so later passes do not read the files again."""
        store: dict[int, tuple] = {}
        fetch = self._fetch

        def cached(idx: np.ndarray) -> tuple:
            missing = np.asarray([i for i in idx.tolist() if i not in store], dtype=np.int64)
            if missing.size:
                parts = fetch(missing)
                for j, i in enumerate(missing.tolist()):
                    store[i] = tuple(p[j] for p in parts)
            rows = [store[i] for i in idx.tolist()]
            return tuple(np.stack([r[k] for r in rows]) for k in range(len(rows[0])))

        out = self._derive(fetch=cached)
        out.file_paths = self.file_paths
        return out

    def map(self, fn: Callable[..., Any]) -> Dataset:
        """Applies `fn` to each element (called with the element's parts as arguments, as
        `tf.data.Dataset.map` does); `fn` returns the new element."""
        if not callable(fn):
            raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
        out = self._derive()
        out._maps.append(fn)
        return out

    def take(self, count: int) -> Dataset:
        """The first `count` elements (batches, or samples when unbatched) in source order."""
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
            raise ValueError(f"count: expected a non-negative integer, got {count!r}")
        n = min(int(count) * (self.batch_size or 1), self._n)
        out = self._derive(num_samples=n, fetch=self._fetch)
        if self.file_paths is not None:
            out.file_paths = self.file_paths[:n]
        return out

    def _subset(self, indices: np.ndarray) -> Dataset:
        """The samples at `indices` of the source, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        fetch = self._fetch
        out = self._derive(fetch=lambda idx: fetch(indices[idx]), num_samples=indices.size)
        if self.file_paths is not None:
            out.file_paths = [self.file_paths[i] for i in indices]
        return out

    # --- iteration ---------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return self._n

    @property
    def element_spec(self) -> tuple:
        """(shape, dtype) of each part of one element, read from the first element."""
        first = next(iter(self))
        parts = (first,) if not isinstance(first, tuple) else first
        return tuple((np.shape(p), np.asarray(p).dtype) for p in parts)

    def __len__(self) -> int:
        if self.batch_size is None:
            return self._n
        return math.ceil(self._n / self.batch_size)

    def cardinality(self) -> int:
        """Elements per pass (Keras's name for `len`)."""
        return len(self)

    def _order(self) -> np.ndarray:
        if self.reshuffle:
            return self._rng.permutation(self._n).astype(np.int64)
        return np.arange(self._n, dtype=np.int64)

    def _element(self, idx: np.ndarray, batched: bool) -> Any:
        parts = tuple(self._fetch(idx))
        if not batched:
            parts = tuple(p[0] for p in parts)
        out: Any = parts[0] if self._single else parts
        for fn in self._maps:
            out = fn(*out) if isinstance(out, tuple) else fn(out)
        return out

    def __iter__(self) -> Iterator[Any]:
        order = self._order()
        if self.batch_size is None:
            for i in range(self._n):
                yield self._element(order[i:i + 1], False)
            return
        b = self.batch_size
        for start in range(0, self._n, b):
            yield self._element(order[start:start + b], True)

    def as_numpy_iterator(self) -> Iterator[Any]:
        """Iterates the elements (they already are NumPy arrays; Keras-compatible name)."""
        return iter(self)

    def __repr__(self) -> str:
        return (f"<pynn.utils.Dataset: {self._n} samples, batch_size={self.batch_size}, "
                f"{len(self)} elements>")
