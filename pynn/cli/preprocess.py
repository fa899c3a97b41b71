"""Typed preprocessing: how raw CSV rows or image pixels become model inputs and back.

`TabularPreprocessor` is fitted on training rows of text cells (as read from a CSV file):
numeric columns are standardised, text columns one-hot encoded, identifier-like text columns
dropped, and the target column becomes class indices (classification) or a standardised value
(regression). `ImagePreprocessor` scales pixels. Both convert to and from the dict stored as
`preprocessing.json` beside a model written by `pynn train`; that layout has not changed since
the first version of the CLI, so files from older versions load as they are.

Bad data raises ValueError (TypeError for a value of the wrong type, such as a cell that is
not a string) with a message that starts with where the data came from and names the column
and data row; a damaged stored dict raises the same, naming the field.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple, Union

import numpy as np

# Cells read as "no value".
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
# A numeric target with at most this many distinct integer values is taken as class labels.
MAX_INTEGER_CLASSES = 10
# A text column with more distinct values than this, and more than one per two rows, looks
# like an identifier and is dropped.
MAX_ID_CATEGORIES = 20

Task = Literal["classification", "regression"]
TaskChoice = Literal["auto", "classification", "regression"]
UnknownPolicy = Literal["ignore", "error"]


class Table(NamedTuple):
    """A header row and data rows of text cells; unpacks as `header, rows`."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]


TableLike = Union[Table, tuple[Sequence[str], Sequence[Sequence[str]]]]


def is_missing(cell: str) -> bool:
    """True for a cell that holds no value ('', 'NA', 'nan', '?', ...)."""
    return cell.lower() in MISSING


def as_float(cell: str) -> float | None:
    """The finite number in `cell`, or None when it holds something else."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _numeric_cells(values: Sequence[str]) -> bool:
    present = [v for v in values if not is_missing(v)]
    return bool(present) and all(as_float(v) is not None for v in present)


def _label_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _as_table(table: TableLike, where: str) -> Table:
    """Checks the shape of `table`: a header of unique names and rows as long as the header."""
    if not isinstance(table, (tuple, list)) or len(table) != 2:
        hint = "; transform_array takes arrays" if isinstance(table, np.ndarray) else ""
        raise TypeError(f"{where}: expected a table as (header, rows), got "
                        f"{type(table).__name__}{hint}")
    header, rows = table
    if isinstance(header, str) or not all(isinstance(h, str) for h in header):
        raise TypeError(f"{where}: the header must be a sequence of column names (strings)")
    if len(set(header)) != len(header):
        twice = sorted({h for h in header if list(header).count(h) > 1})
        raise ValueError(f"{where}: column(s) {', '.join(map(repr, twice))} appear more than "
                         f"once in the header")
    width = len(header)
    for k, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"{where}: data row {k + 1} has {len(row)} cells, the header has "
                             f"{width}")
        if not all(isinstance(cell, str) for cell in row):
            j = next(j for j, cell in enumerate(row) if not isinstance(cell, str))
            raise TypeError(f"{where}: column {header[j]!r}, data row {k + 1}: cells must be "
                            f"strings, got {type(row[j]).__name__}")
    return Table(header, rows)


def _column(table: Table, name: str, where: str) -> list[str]:
    if name not in table.header:
        raise ValueError(f"{where}: missing column {name!r} that the model was trained on")
    j = list(table.header).index(name)
    return [row[j] for row in table.rows]


# ---------------------------------------------------------------------------------------------
# Reading the stored dict back, with a clear message for a damaged file

def _field(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ValueError(f"{where}: missing field {key!r}")
    return data[key]


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = _field(data, key, where)
    if not isinstance(value, str):
        raise TypeError(f"{where}: field {key!r} must be a string, got {value!r}")
    return value


def _number(data: Mapping[str, Any], key: str, where: str) -> float:
    value = _field(data, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where}: field {key!r} must be a number, got {value!r}")
    return float(value)


def _texts(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = _field(data, key, where)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{where}: field {key!r} must be a list of strings")
    return tuple(value)


def _check_kind(data: Mapping[str, Any], kind: str) -> None:
    if not isinstance(data, Mapping):
        raise TypeError(f"preprocessing: expected a JSON object, got {type(data).__name__}")
    if data.get("kind") != kind:
        raise ValueError(f"preprocessing: expected kind {kind!r}, got {data.get('kind')!r}")


# ---------------------------------------------------------------------------------------------
# Feature columns

@dataclass(frozen=True)
class NumericColumn:
    """A numeric feature, standardised with its training mean and standard deviation.

    A missing cell becomes the mean, which is 0 after standardising.
    """

    name: str
    mean: float
    std: float
    kind: ClassVar[str] = "numeric"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"column {self.name!r}: mean and std must be finite and std "
                             f"positive, got mean {self.mean!r}, std {self.std!r}")

    @property
    def width(self) -> int:
        """Number of model inputs the column becomes."""
        return 1

    @classmethod
    def fit(cls, name: str, cells: Sequence[str]) -> NumericColumn:
        """Mean and standard deviation (1 when constant) of the present cells."""
        values = np.array([as_float(c) for c in cells if not is_missing(c)], dtype=np.float64)
        if values.size == 0:
            raise ValueError(f"column {name!r}: no numeric value to fit")
        return cls(name, float(values.mean()), float(values.std()) or 1.0)

    def encode(self, cells: Sequence[str], where: str) -> np.ndarray:
        """An (n, 1) float64 block of standardised values."""
        out = np.zeros((len(cells), 1), dtype=np.float64)
        for k, cell in enumerate(cells):
            if is_missing(cell):
                continue
            value = as_float(cell)
            if value is None:
                raise ValueError(f"{where}: column {self.name!r}, data row {k + 1}: expected a "
                                 f"number, got {cell!r}")
            out[k, 0] = (value - self.mean) / self.std
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: name, type, mean, std."""
        return {"name": self.name, "type": self.kind, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericColumn:
        """Inverse of `to_dict`."""
        where = f"preprocessing column {data.get('name')!r}"
        return cls(_text(data, "name", where), _number(data, "mean", where),
                   _number(data, "std", where))


@dataclass(frozen=True)
class CategoricalColumn:
    """A text feature, one-hot encoded over the values seen in training (sorted).

    A missing cell encodes as all zeros; so does an unseen value unless the preprocessor's
    `handle_unknown` is "error".
    """

    name: str
    categories: tuple[str, ...]
    kind: ClassVar[str] = "categorical"

    def __post_init__(self) -> None:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"column {self.name!r}: categories must be distinct")

    @property
    def width(self) -> int:
        """Number of model inputs the column becomes."""
        return len(self.categories)

    @classmethod
    def fit(cls, name: str, cells: Sequence[str]) -> CategoricalColumn:
        """The sorted distinct present values."""
        return cls(name, tuple(sorted({c for c in cells if not is_missing(c)})))

    def encode(self, cells: Sequence[str], where: str,
               handle_unknown: UnknownPolicy = "ignore") -> np.ndarray:
        """An (n, len(categories)) float64 block of one-hot rows."""
        index = {c: i for i, c in enumerate(self.categories)}
        out = np.zeros((len(cells), len(index)), dtype=np.float64)
        for k, cell in enumerate(cells):
            i = index.get(cell)
            if i is not None:
                out[k, i] = 1.0
            elif handle_unknown == "error" and not is_missing(cell):
                known = ", ".join(map(repr, self.categories[:10]))
                more = ", ..." if len(self.categories) > 10 else ""
                raise ValueError(f"{where}: column {self.name!r}, data row {k + 1}: category "
                                 f"{cell!r} was not seen in training (known: {known}{more})")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: name, type, categories."""
        return {"name": self.name, "type": self.kind, "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalColumn:
        """Inverse of `to_dict`."""
        where = f"preprocessing column {data.get('name')!r}"
        return cls(_text(data, "name", where), _texts(data, "categories", where))


Column = Union[NumericColumn, CategoricalColumn]


def column_from_dict(data: Mapping[str, Any]) -> Column:
    """A NumericColumn or CategoricalColumn from its JSON form (chosen by "type")."""
    if not isinstance(data, Mapping):
        raise TypeError(f"preprocessing: a column must be a JSON object, got {data!r}")
    kind = data.get("type")
    if kind == NumericColumn.kind:
        return NumericColumn.from_dict(data)
    if kind == CategoricalColumn.kind:
        return CategoricalColumn.from_dict(data)
    raise ValueError(f"preprocessing column {data.get('name')!r}: unknown type {kind!r} "
                     f"(expected 'numeric' or 'categorical')")


# ---------------------------------------------------------------------------------------------
# Target encodings

@dataclass(frozen=True)
class ClassTarget:
    """Class labels: class k is `names[k]`.

    For a numeric target `values[k]` is the number behind `names[k]`, and cells are matched
    by value ('1', '1.0' and '1e0' are the same class); for a text target `values` is None and
    cells are matched as text.
    """

    names: tuple[str, ...]
    values: tuple[float, ...] | None = None
    task: ClassVar[Task] = "classification"

    def __post_init__(self) -> None:
        if len(self.names) < 2:
            raise ValueError(f"a classification target needs at least two classes, got "
                             f"{list(self.names)}")
        if self.values is not None and len(self.values) != len(self.names):
            raise ValueError(f"class values ({len(self.values)}) and class names "
                             f"({len(self.names)}) differ in number")

    def encode(self, cells: Sequence[str], target: str, where: str) -> np.ndarray:
        """int64 class indices; an unseen class is an error."""
        index: dict[Any, int]
        keys: Sequence[Any]
        if self.values is not None:
            index = {v: i for i, v in enumerate(self.values)}
            keys = [as_float(c) for c in cells]
        else:
            index = {v: i for i, v in enumerate(self.names)}
            keys = cells
        out = np.empty(len(cells), dtype=np.int64)
        for k, key in enumerate(keys):
            if key not in index:
                raise ValueError(f"{where}: data row {k + 1}: class {cells[k]!r} of {target!r} "
                                 f"was not seen in training")
            out[k] = index[key]
        return out

    def decode(self, y: np.ndarray) -> np.ndarray:
        """Class names for class indices (1-D) or for per-class scores (2-D, by argmax)."""
        y = np.asarray(y)
        if y.ndim == 2:
            if y.shape[1] != len(self.names):
                raise ValueError(f"y: expected {len(self.names)} class scores per row, got "
                                 f"shape {y.shape}")
            y = np.argmax(y, axis=1)
        if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
            raise ValueError(f"y: expected class indices, got dtype {y.dtype}")
        index = y.astype(np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self.names)):
            raise ValueError(f"y: class indices must be in [0, {len(self.names)}), got "
                             f"{index.min()}..{index.max()}")
        return np.array(self.names, dtype=object)[index]


@dataclass(frozen=True)
class RegressionTarget:
    """A numeric target, standardised with its training mean and standard deviation."""

    mean: float
    std: float
    task: ClassVar[Task] = "regression"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"target mean and std must be finite and std positive, got "
                             f"mean {self.mean!r}, std {self.std!r}")

    def encode(self, cells: Sequence[str], target: str, where: str) -> np.ndarray:
        """float32 standardised values; a missing or non-numeric cell is an error."""
        values = [as_float(c) for c in cells]
        bad = [k for k, v in enumerate(values) if v is None]
        if bad:
            raise ValueError(f"{where}: data row {bad[0] + 1}: target {target!r} is not a "
                             f"number ({cells[bad[0]]!r})")
        y = (np.array(values, dtype=np.float64) - self.mean) / self.std
        return y.astype(np.float32)

    def decode(self, y: np.ndarray) -> np.ndarray:
        """float64 values on the original scale."""
        return np.asarray(y).astype(np.float64) * self.std + self.mean


TargetEncoding = Union[ClassTarget, RegressionTarget]


# ---------------------------------------------------------------------------------------------
# Tables

@dataclass(frozen=True)
class TabularPreprocessor:
    """How rows of a table become model inputs and targets; fitted on training rows only.

    Build one with `TabularPreprocessor.fit(table, target)`. Features come out in the order
    of `columns`: one value per numeric column, one per category for a categorical column.
    """

    target: str
    columns: tuple[Column, ...]
    target_encoding: TargetEncoding
    dropped: tuple[str, ...] = ()
    handle_unknown: UnknownPolicy = "ignore"
    kind: ClassVar[str] = "table"

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError(f"{self.target}: no feature columns left to learn from")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names) or self.target in names:
            raise ValueError("columns: names must be distinct and differ from the target")
        if self.handle_unknown not in ("ignore", "error"):
            raise ValueError(f"handle_unknown: expected 'ignore' or 'error', got "
                             f"{self.handle_unknown!r}")

    # -- fitting ---------------------------------------------------------------------------

    @classmethod
    def fit(cls, table: TableLike, target: str, task: TaskChoice = "auto", *,
            handle_unknown: UnknownPolicy = "ignore") -> TabularPreprocessor:
        """Learns the encodings from `table`, whose rows are training rows.

        `task` "auto" picks classification for a text target or one with at most
        MAX_INTEGER_CLASSES distinct integer values, regression otherwise. Rows without a
        target value are left out. Numeric columns are those whose present cells are all
        finite numbers; other columns are categorical, except identifier-like ones (more than
        MAX_ID_CATEGORIES values and more than one per two rows), which are dropped.
        """
        if task not in ("auto", "classification", "regression"):
            raise ValueError(f"task: expected 'auto', 'classification' or 'regression', got "
                             f"{task!r}")
        tab = _as_table(table, "table")
        header = list(tab.header)
        if target not in header:
            raise ValueError(f"--target: no column {target!r}; the columns are "
                             f"{', '.join(header)}")
        ti = header.index(target)
        rows = [r for r in tab.rows if not is_missing(r[ti])]
        if len(rows) < 2:
            raise ValueError(f"--target {target}: fewer than two rows have a value")
        ys = [r[ti] for r in rows]
        numeric_target = _numeric_cells(ys)
        if task == "auto":
            if not numeric_target:
                task = "classification"
            else:
                distinct = {float(v) for v in ys}
                integral = all(v.is_integer() for v in distinct)
                task = ("classification" if integral and len(distinct) <= MAX_INTEGER_CLASSES
                        else "regression")
        if task == "regression" and not numeric_target:
            raise ValueError(f"--task regression: the target column {target!r} is not numeric")

        encoding: TargetEncoding
        if task == "classification":
            if numeric_target:
                values = tuple(sorted({float(v) for v in ys}))
                names = tuple(_label_text(v) for v in values)
                encoding_values: tuple[float, ...] | None = values
            else:
                names, encoding_values = tuple(sorted(set(ys))), None
            if len(names) < 2:
                raise ValueError(f"--target {target}: only one class ({names[0]!r}) in the "
                                 f"training rows")
            encoding = ClassTarget(names, encoding_values)
        else:
            y = np.array([float(v) for v in ys])
            encoding = RegressionTarget(float(y.mean()), float(y.std()) or 1.0)

        columns: list[Column] = []
        dropped: list[str] = []
        for j, name in enumerate(header):
            if j == ti:
                continue
            cells = [r[j] for r in rows]
            if _numeric_cells(cells):
                columns.append(NumericColumn.fit(name, cells))
                continue
            col = CategoricalColumn.fit(name, cells)
            if col.width > MAX_ID_CATEGORIES and col.width > 0.5 * len(rows):
                dropped.append(name)
            else:
                columns.append(col)
        if not columns:
            raise ValueError(f"{target}: no feature columns left to learn from")
        return cls(target, tuple(columns), encoding, tuple(dropped), handle_unknown)

    # -- properties ------------------------------------------------------------------------

    @property
    def task(self) -> Task:
        """"classification" or "regression"."""
        return self.target_encoding.task

    @property
    def n_features(self) -> int:
        """Width of the feature matrix `transform` returns."""
        return sum(c.width for c in self.columns)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class labels in index order; empty for regression."""
        enc = self.target_encoding
        return enc.names if isinstance(enc, ClassTarget) else ()

    @property
    def feature_names(self) -> list[str]:
        """A name per output feature: the column, or 'column=category' for one-hot inputs."""
        names: list[str] = []
        for c in self.columns:
            if isinstance(c, NumericColumn):
                names.append(c.name)
            else:
                names.extend(f"{c.name}={v}" for v in c.categories)
        return names

    # -- transforming ----------------------------------------------------------------------

    def transform(self, table: TableLike, where: str = "table") -> np.ndarray:
        """The float32 feature matrix of `table`'s rows; columns are found by name.

        Other columns (the target among them) are ignored. `where` starts error messages,
        e.g. the file name.
        """
        tab = _as_table(table, where)
        blocks = []
        for col in self.columns:
            cells = _column(tab, col.name, where)
            if isinstance(col, NumericColumn):
                blocks.append(col.encode(cells, where))
            else:
                blocks.append(col.encode(cells, where, self.handle_unknown))
        return np.ascontiguousarray(np.hstack(blocks), dtype=np.float32)

    def transform_array(self, x: np.ndarray, where: str = "x") -> np.ndarray:
        """Standardises a numeric (n, columns) array; only for all-numeric preprocessors.

        NaN stays NaN here: an array has no notion of a missing cell.
        """
        categorical = [c.name for c in self.columns if not isinstance(c, NumericColumn)]
        if categorical:
            raise ValueError(f"{where}: categorical column(s) {', '.join(categorical)} need "
                             f"a table with column names, not an array")
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise ValueError(f"{where}: expected numbers, got dtype {x.dtype}")
        cols = self.columns
        if x.ndim != 2 or x.shape[1] != len(cols):
            raise ValueError(f"{where}: expected rows of {len(cols)} numbers (columns "
                             f"{', '.join(c.name for c in cols)}), got shape {x.shape}")
        mean = np.array([c.mean for c in cols if isinstance(c, NumericColumn)])
        std = np.array([c.std for c in cols if isinstance(c, NumericColumn)])
        return ((x.astype(np.float64) - mean) / std).astype(np.float32)

    def transform_target(self, table: TableLike, where: str = "table") -> np.ndarray:
        """int64 class indices or float32 standardised values of the target column."""
        tab = _as_table(table, where)
        if self.target not in tab.header:
            raise ValueError(f"{where}: no target column {self.target!r}")
        cells = _column(tab, self.target, where)
        return self.target_encoding.encode(cells, self.target, where)

    def inverse_transform_target(self, y: np.ndarray) -> np.ndarray:
        """Back to the target's own terms: class names (an object array of str) for class
        indices or per-class scores, or float64 values on the original scale."""
        return self.target_encoding.decode(y)

    # -- storing ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to preprocessing.json (the layout every version reads)."""
        out: dict[str, Any] = {"kind": self.kind, "target": self.target, "task": self.task,
                               "columns": [c.to_dict() for c in self.columns],
                               "dropped": list(self.dropped)}
        enc = self.target_encoding
        if isinstance(enc, ClassTarget):
            if enc.values is not None:
                out["class_values"] = list(enc.values)
            out["class_names"] = list(enc.names)
        else:
            out["target_mean"] = enc.mean
            out["target_std"] = enc.std
        out["n_features"] = self.n_features
        out["handle_unknown"] = self.handle_unknown
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TabularPreprocessor:
        """Inverse of `to_dict`; also reads files written before `handle_unknown` existed.

        `n_features` is recomputed from the columns, and must match when present.
        """
        _check_kind(data, cls.kind)
        where = "preprocessing"
        task = _text(data, "task", where)
        encoding: TargetEncoding
        if task == "classification":
            names = _texts(data, "class_names", where)
            values = None
            if data.get("class_values") is not None:
                raw = _field(data, "class_values", where)
                if not isinstance(raw, list) or not all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
                    raise TypeError(f"{where}: field 'class_values' must be a list of numbers")
                values = tuple(float(v) for v in raw)
            encoding = ClassTarget(names, values)
        elif task == "regression":
            encoding = RegressionTarget(_number(data, "target_mean", where),
                                        _number(data, "target_std", where))
        else:
            raise ValueError(f"{where}: unknown task {task!r}")
        raw_columns = _field(data, "columns", where)
        if not isinstance(raw_columns, list):
            raise TypeError(f"{where}: field 'columns' must be a list")
        dropped = _texts(data, "dropped", where) if "dropped" in data else ()
        handle_unknown = data.get("handle_unknown", "ignore")
        if handle_unknown not in ("ignore", "error"):
            raise ValueError(f"{where}: field 'handle_unknown' must be 'ignore' or 'error', "
                             f"got {handle_unknown!r}")
        pre = cls(_text(data, "target", where),
                  tuple(column_from_dict(c) for c in raw_columns), encoding, dropped,
                  handle_unknown)
        stored = data.get("n_features")
        if stored is not None and stored != pre.n_features:
            raise ValueError(f"{where}: n_features is {stored!r} but the columns make "
                             f"{pre.n_features}")
        return pre

    def to_json(self, indent: int | None = 1) -> str:
        """`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> TabularPreprocessor:
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text))


# ---------------------------------------------------------------------------------------------
# Images

@dataclass(frozen=True)
class ImagePreprocessor:
    """Pixel scaling for an image data set whose labels are class indices."""

    dataset: str
    image_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    scale: float = 1 / 255
    subset: bool = False
    kind: ClassVar[str] = "images"
    task: ClassVar[Task] = "classification"

    def transform(self, x: np.ndarray) -> np.ndarray:
        """float32 pixels times `scale`."""
        return np.asarray(x).astype(np.float32) * np.float32(self.scale)

    def inverse_transform_target(self, y: np.ndarray) -> np.ndarray:
        """Class names for class indices (1-D) or per-class scores (2-D)."""
        return ClassTarget(self.class_names).decode(y)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to preprocessing.json."""
        return {"kind": self.kind, "dataset": self.dataset, "task": self.task,
                "scale": self.scale, "image_shape": list(self.image_shape),
                "class_names": list(self.class_names), "subset": self.subset}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImagePreprocessor:
        """Inverse of `to_dict`."""
        _check_kind(data, cls.kind)
        where = "preprocessing"
        shape = _field(data, "image_shape", where)
        if not isinstance(shape, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
            raise ValueError(f"{where}: field 'image_shape' must be a list of positive "
                             f"integers")
        subset = data.get("subset", False)
        if not isinstance(subset, bool):
            raise TypeError(f"{where}: field 'subset' must be true or false")
        return cls(_text(data, "dataset", where), tuple(shape),
                   _texts(data, "class_names", where), _number(data, "scale", where), subset)

    def to_json(self, indent: int | None = 1) -> str:
        """`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> ImagePreprocessor:
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text))


Preprocessor = Union[ImagePreprocessor, TabularPreprocessor]


def preprocessor_from_dict(data: Mapping[str, Any]) -> Preprocessor:
    """An ImagePreprocessor or TabularPreprocessor, chosen by the dict's "kind"."""
    kind = data.get("kind") if isinstance(data, Mapping) else None
    if kind == ImagePreprocessor.kind:
        return ImagePreprocessor.from_dict(data)
    if kind == TabularPreprocessor.kind:
        return TabularPreprocessor.from_dict(data)
    raise ValueError("not a pynn preprocessing record (expected kind 'images' or 'table')")


# ---------------------------------------------------------------------------------------------
# The dict-based functions of earlier versions of pynn.cli, kept for callers that use them

def _tabular(prep: TabularPreprocessor | Mapping[str, Any]) -> TabularPreprocessor:
    return prep if isinstance(prep, TabularPreprocessor) else TabularPreprocessor.from_dict(prep)


def fit_table(header: Sequence[str], rows: Sequence[Sequence[str]], target: str,
              task: TaskChoice = "auto") -> dict[str, Any]:
    """`TabularPreprocessor.fit(...)`, returned in its dict form."""
    return TabularPreprocessor.fit(Table(header, rows), target, task).to_dict()


def table_features(prep: TabularPreprocessor | Mapping[str, Any], header: Sequence[str],
                   rows: Sequence[Sequence[str]], where: str) -> np.ndarray:
    """The float32 feature matrix of `rows` (see `TabularPreprocessor.transform`)."""
    return _tabular(prep).transform(Table(header, rows), where)


def table_targets(prep: TabularPreprocessor | Mapping[str, Any], header: Sequence[str],
                  rows: Sequence[Sequence[str]], where: str,
                  target: str | None = None) -> np.ndarray:
    """Class indices or standardised values of the target column (or of column `target`)."""
    pre = _tabular(prep)
    if not target or target == pre.target:
        return pre.transform_target(Table(header, rows), where)
    tab = _as_table(Table(header, rows), where)
    if target not in tab.header:
        raise ValueError(f"{where}: no target column {target!r}")
    return pre.target_encoding.encode(_column(tab, target, where), target, where)
