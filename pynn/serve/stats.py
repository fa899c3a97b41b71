"""Training statistics for drift monitoring, kept in a side file beside the model.

A served model's inputs are compared with the data it was trained on, feature by feature
(every value of a flattened sample is one feature):

* the mean shift: (mean of the recent inputs - training mean) / training standard deviation;
  a feature that never varied in training (std 0) is measured in its own units instead;
* the population-stability index (PSI) over the training deciles: with p_i and q_i the shares
  of the training and of the recent values in bin i, PSI = sum (q_i - p_i) ln(q_i / p_i), both
  shares floored at 1e-4 so that empty bins stay finite. Below 0.1 is usually read as stable,
  above 0.25 as a shifted population.

Write the statistics once, after training, with the training inputs the model saw::

    model.save("fashion.safetensors")
    pynn.serve.stats.save_stats("fashion.safetensors", x_train)   # -> fashion.stats.json

`pynn serve` reads `<model file without its extension>.stats.json` when it exists and then
exports the drift gauges; `pynn train` writes it beside the model it saves. A model with several
inputs takes a list (in the model's input order) or a dict by input name, as `model.predict`
does. This module needs only NumPy.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

FORMAT = "pynn.training_stats"
VERSION = 1
DEFAULT_BINS = 10
# The floor of a bin's share in the PSI: an empty bin would make the logarithm infinite.
PSI_FLOOR = 1e-4

ArrayLike = Any
Inputs = Union[ArrayLike, Sequence[ArrayLike], Mapping[str, ArrayLike]]


# The bins come from at most this many training samples (a seeded random subset beyond it),
# which bounds the time and memory of quantiles on a large training set; the mean and standard
# deviation always use every sample.
MAX_BIN_SAMPLES = 20_000
# Values are binned this many at a time: (rows x features x edges) booleans stay small.
_CHUNK_VALUES = 2**22


def _as_rows(x: ArrayLike, what: str) -> np.ndarray:
    """`x` as a finite (samples, features) float array (float32 stays float32: no copy of a
    large training set)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what}: expected numbers, got dtype {arr.dtype}")
    if arr.ndim < 2 or arr.shape[0] < 1:
        raise ValueError(f"{what}: expected an array of shape (samples, features...), got "
                         f"shape {arr.shape}")
    rows = arr.reshape(arr.shape[0], -1)
    if rows.dtype not in (np.float32, np.float64):
        rows = rows.astype(np.float64)
    if not np.isfinite(rows).all():
        raise ValueError(f"{what}: contains NaN or Inf")
    return rows


def bin_index(rows: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of every value: rows (n, F), edges (F, B-1) ascending per feature (padded with
    +inf); value v of feature f falls in bin #{edges[f] < v}, so bin 0 is v <= edges[f, 0]."""
    return (rows[:, :, None] > edges[None, :, :]).sum(axis=2)


def bin_shares(rows: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(F, B) share of the rows' values in each bin of each feature."""
    n, features = rows.shape
    bins = edges.shape[1] + 1
    offsets = np.arange(features)[None, :] * bins
    counts = np.zeros(features * bins, dtype=np.int64)
    step = max(1, _CHUNK_VALUES // max(1, features * bins))
    for start in range(0, n, step):
        idx = bin_index(rows[start:start + step].astype(np.float64), edges) + offsets
        counts += np.bincount(idx.ravel(), minlength=features * bins)
    return counts.reshape(features, bins) / float(n)


def psi(train_shares: np.ndarray, live_shares: np.ndarray) -> np.ndarray:
    """Population-stability index per feature from (F, B) bin shares."""
    p = np.maximum(train_shares, PSI_FLOOR)
    q = np.maximum(live_shares, PSI_FLOOR)
    return ((q - p) * np.log(q / p)).sum(axis=1)


@dataclass
class FeatureStats:
    """The statistics of one model input, flattened to F features.

    Attributes:
        mean, std: (F,) training mean and standard deviation.
        edges: (F, B-1) interior bin edges (training quantiles, duplicates removed, padded
            with +inf so every feature has the same count).
        shares: (F, B) share of the training values in each bin.
        name: the model input's name, or None when it was given by position.
    """

    mean: np.ndarray
    std: np.ndarray
    edges: np.ndarray
    shares: np.ndarray
    name: str | None = None

    @property
    def features(self) -> int:
        """The number of features (values per sample)."""
        return int(self.mean.shape[0])

    @classmethod
    def from_rows(cls, rows: np.ndarray, bins: int = DEFAULT_BINS,
                  name: str | None = None) -> FeatureStats:
        """Statistics of (samples, features) rows with `bins` quantile bins per feature."""
        if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= 100:
            raise ValueError(f"bins: expected an integer in [2, 100], got {bins!r}")
        sample = rows
        if rows.shape[0] > MAX_BIN_SAMPLES:
            pick = np.random.default_rng(0).choice(rows.shape[0], MAX_BIN_SAMPLES, replace=False)
            sample = rows[np.sort(pick)]
        sample = sample.astype(np.float64)
        quantiles = np.quantile(sample, np.arange(1, bins) / bins, axis=0).T  # (F, B-1)
        edges = np.full_like(quantiles, np.inf)
        for f, q in enumerate(quantiles):
            unique = np.unique(q)
            edges[f, :unique.size] = unique
        mean = rows.mean(axis=0, dtype=np.float64)
        squares = np.zeros_like(mean)
        for start in range(0, rows.shape[0], 4096):  # in float64, a slice at a time
            squares += ((rows[start:start + 4096] - mean) ** 2).sum(axis=0)
        std = np.sqrt(squares / rows.shape[0])
        return cls(mean, std, edges, bin_shares(sample, edges), name)

    def mean_shift(self, rows: np.ndarray) -> np.ndarray:
        """(F,) shift of the rows' mean from the training mean, in training std units (raw
        units for a feature whose training std is 0)."""
        scale = np.where(self.std > 0, self.std, 1.0)
        return (rows.mean(axis=0) - self.mean) / scale

    def psi(self, rows: np.ndarray) -> np.ndarray:
        """(F,) population-stability index of the rows against the training bins."""
        return psi(self.shares, bin_shares(rows, self.edges))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (edges without the +inf padding)."""
        edges = [row[np.isfinite(row)].tolist() for row in self.edges]
        return {"name": self.name, "features": self.features, "mean": self.mean.tolist(),
                "std": self.std.tolist(), "edges": edges,
                "shares": [s[:len(e) + 1].tolist() for s, e in zip(self.shares, edges)]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], what: str) -> FeatureStats:
        """The inverse of `to_dict`; ValueError for anything inconsistent."""
        try:
            mean = np.asarray(data["mean"], dtype=np.float64)
            std = np.asarray(data["std"], dtype=np.float64)
            edges_list, shares_list = data["edges"], data["shares"]
            name = data.get("name")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{what}: malformed input statistics ({exc})") from None
        features = mean.shape[0] if mean.ndim == 1 else -1
        if (features < 1 or std.shape != mean.shape or not isinstance(edges_list, list)
                or not isinstance(shares_list, list) or len(edges_list) != features
                or len(shares_list) != features or not (name is None or isinstance(name, str))):
            raise ValueError(f"{what}: malformed input statistics")
        width = max((len(e) for e in edges_list), default=0)
        edges = np.full((features, width), np.inf)
        shares = np.zeros((features, width + 1))
        for f, (e, s) in enumerate(zip(edges_list, shares_list)):
            e_arr = np.asarray(e, dtype=np.float64)
            s_arr = np.asarray(s, dtype=np.float64)
            if (e_arr.ndim != 1 or s_arr.shape != (e_arr.size + 1,)
                    or not np.all(np.diff(e_arr) > 0)):
                raise ValueError(f"{what}: malformed bins of feature {f}")
            edges[f, :e_arr.size] = e_arr
            shares[f, :s_arr.size] = s_arr
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std >= 0).all()
                and np.isfinite(shares).all()):
            raise ValueError(f"{what}: input statistics hold NaN, Inf or negative spreads")
        return cls(mean, std, edges, shares, name)


@dataclass
class TrainingStats:
    """Per-input training statistics of a model (one `FeatureStats` per model input)."""

    inputs: list[FeatureStats]
    samples: int

    @classmethod
    def from_data(cls, x: Inputs, bins: int = DEFAULT_BINS) -> TrainingStats:
        """Statistics of training inputs: one array, a list of arrays (one per model input,
        in order) or a dict by input name.

        Example:
            >>> stats = TrainingStats.from_data(x_train)
            >>> stats.inputs[0].features
            784
        """
        named: list[tuple[str | None, np.ndarray]]
        if isinstance(x, Mapping):
            named = [(str(k), _as_rows(v, f"x[{k!r}]")) for k, v in x.items()]
        elif isinstance(x, (list, tuple)) and x and all(hasattr(v, "shape") for v in x):
            named = [(None, _as_rows(v, f"x[{k}]")) for k, v in enumerate(x)]
        else:
            named = [(None, _as_rows(x, "x"))]
        if not named:
            raise ValueError("x: expected at least one input array")
        counts = {rows.shape[0] for _, rows in named}
        if len(counts) != 1:
            raise ValueError(f"x: the inputs have different sample counts {sorted(counts)}")
        return cls([FeatureStats.from_rows(rows, bins, name) for name, rows in named],
                   counts.pop())

    def to_dict(self) -> dict[str, Any]:
        """The JSON document written by `save`."""
        return {"format": FORMAT, "format_version": VERSION, "samples": self.samples,
                "inputs": [s.to_dict() for s in self.inputs]}

    @classmethod
    def from_dict(cls, data: Any, what: str = "statistics") -> TrainingStats:
        """Statistics from the JSON document `to_dict` wrote."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{what}: not a pynn training-statistics file")
        if data.get("format_version") != VERSION:
            raise ValueError(f"{what}: unsupported format version {data.get('format_version')!r}")
        inputs, samples = data.get("inputs"), data.get("samples")
        if not isinstance(inputs, list) or not inputs or type(samples) is not int:
            raise ValueError(f"{what}: malformed statistics")
        stats = []
        for k, entry in enumerate(inputs):
            if not isinstance(entry, dict):
                raise TypeError(f"{what}: input {k} is malformed")
            stats.append(FeatureStats.from_dict(entry, f"{what}: input {k}"))
        return cls(stats, samples)

    def save(self, path: str | os.PathLike[str]) -> str:
        """Writes the statistics as JSON to `path`; returns the path."""
        path = os.fspath(path)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, allow_nan=False, separators=(",", ":"))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainingStats:
        """Statistics from a file written by `save`."""
        path = os.fspath(path)
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except ValueError as exc:
                raise ValueError(f"{path}: not JSON ({exc})") from None
        return cls.from_dict(data, path)

    def for_inputs(self, names: Sequence[str], sizes: Sequence[int],
                   what: str = "statistics") -> list[FeatureStats]:
        """The statistics in the order of a model's inputs (matched by name when they were
        saved with names, else by position); ValueError when they do not fit the model."""
        if all(s.name is not None for s in self.inputs):
            by_name = {s.name: s for s in self.inputs}
            missing = [n for n in names if n not in by_name]
            if missing:
                raise ValueError(f"{what}: no statistics for model input(s) {missing}")
            ordered = [by_name[n] for n in names]
        else:
            if len(self.inputs) != len(names):
                raise ValueError(f"{what}: statistics for {len(self.inputs)} input(s), the "
                                 f"model has {len(names)}")
            ordered = list(self.inputs)
        for s, n, size in zip(ordered, names, sizes):
            if s.features != size:
                raise ValueError(f"{what}: input {n!r} has {size} values per sample, the "
                                 f"statistics {s.features}")
        return ordered


def stats_path(model_path: str | os.PathLike[str]) -> str:
    """Where the statistics of the model in `model_path` live: the model file's path with its
    extension replaced by `.stats.json` (for a folder, that of `model.safetensors` in it)."""
    path = os.fspath(model_path)
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    root, _ = os.path.splitext(path)
    return root + ".stats.json"


def save_stats(model_path: str | os.PathLike[str], x_train: Inputs,
               bins: int = DEFAULT_BINS) -> str:
    """Computes the statistics of `x_train` (the model's training inputs, prepared as the
    model sees them) and writes them beside the model; returns the file's path."""
    return TrainingStats.from_data(x_train, bins).save(stats_path(model_path))


def load_stats(model_path: str | os.PathLike[str]) -> TrainingStats | None:
    """The statistics saved beside the model, or None when there is no such file."""
    path = stats_path(model_path)
    if not os.path.isfile(path):
        return None
    return TrainingStats.load(path)


__all__ = ["DEFAULT_BINS", "FeatureStats", "TrainingStats", "bin_shares", "load_stats", "psi",
           "save_stats", "stats_path"]
