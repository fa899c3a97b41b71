"""The JSON of the v1 REST protocol (TensorFlow Serving / KServe v1): request bodies to float32
arrays, checked, and model outputs back to JSON.

Requests come in two layouts:

* rows: ``{"instances": [sample, sample, ...]}``; a sample is a (nested) list of numbers of the
  input's shape, or, for a model with several inputs, an object ``{"input name": value, ...}``;
* columns: ``{"inputs": value}`` with the whole batch as one array, or ``{"inputs": {"input
  name": batch, ...}}``.

A sample may also be given flattened (784 numbers for a (28, 28) input). Rows are answered with
``{"predictions": [...]}`` (one entry per sample, an object by output name for a model with
several outputs), columns with ``{"outputs": ...}``, as TensorFlow Serving does. Floats are
written with the shortest text that reads back as the same float32 value.

With orjson installed (the serve extra brings it) bodies are read and answers written with it,
several times faster than the standard library on arrays of numbers; a body orjson refuses is
read again with the standard library, whose error says exactly what is wrong.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import orjson
except ImportError:  # pragma: no cover - the standard library does the same, slower
    orjson = None  # type: ignore[assignment]  # checked with `orjson is not None` before use


class RequestError(Exception):
    """A request the server refuses: `status` (400, 404, 413...) and a message for the client."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Signature:
    """The names and per-sample shapes of a served model's inputs and outputs."""

    input_names: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    output_names: tuple[str, ...]
    output_shapes: tuple[tuple[int, ...], ...]

    @property
    def input_sizes(self) -> tuple[int, ...]:
        """Values per sample of each input."""
        return tuple(math.prod(s) for s in self.input_shapes)

    def describe(self) -> dict[str, Any]:
        """Inputs and outputs as JSON: name, shape with -1 for the batch, dtype."""
        def part(names: Sequence[str], shapes: Sequence[tuple[int, ...]]) -> list[dict[str, Any]]:
            return [{"name": n, "shape": [-1, *s], "dtype": "float32"}
                    for n, s in zip(names, shapes)]

        return {"inputs": part(self.input_names, self.input_shapes),
                "outputs": part(self.output_names, self.output_shapes)}


def _no_constant(name: str) -> Any:
    raise RequestError(f"body: {name} is not a number JSON allows; send finite numbers")


def parse_body(body: bytes) -> dict[str, Any]:
    """The request's JSON object; RequestError (400) for anything else."""
    if not body.strip():
        raise RequestError("body: empty; expected a JSON object")
    if orjson is not None:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # read it again below, for the precise error (or the value 1e400 is)
        else:
            if not isinstance(data, dict):
                raise RequestError(f"body: expected a JSON object, got {_json_type(data)}")
            return data
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except RequestError:
        raise
    except RecursionError:
        raise RequestError("body: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RequestError(f"body: malformed JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RequestError(f"body: expected a JSON object, got {_json_type(data)}")
    return data


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _first_non_number(value: Any) -> Any:
    """The first leaf of nested lists that is not an int or float (bools count as not), or
    None when every leaf is a number."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(reversed(v))
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            return ("found", v)
    return None


def to_array(value: Any, what: str, body_has_literals: bool = True,
             dtype: type = np.float32) -> np.ndarray:
    """Nested lists of numbers as a float32 (or float64) array; RequestError for strings,
    booleans, nulls, objects, ragged rows, NaN/Inf or values beyond the type's range."""
    if not isinstance(value, list):
        raise RequestError(f"{what}: expected an array of numbers, got {_json_type(value)}")
    try:
        arr = np.array(value)
        kind = arr.dtype.kind
    except (ValueError, TypeError, OverflowError):
        kind = "O"
    if kind not in "iuf" or body_has_literals:
        # Only now look at the leaves one by one: NumPy turns true/false into 1/0 beside
        # numbers, so when the body holds such literals the fast check is not enough.
        found = _first_non_number(value)
        if found is not None:
            raise RequestError(f"{what}: expected numbers, found {_json_type(found[1])}"
                               + (f" {found[1]!r}" if isinstance(found[1], str)
                                  and len(found[1]) <= 20 else ""))
        if kind not in "iuf":
            try:
                arr = np.array(value, dtype=np.float64)
            except (ValueError, TypeError):
                raise RequestError(f"{what}: rows of different lengths (a ragged array)") from None
            except OverflowError:
                raise RequestError(f"{what}: a number beyond float32's range") from None
    if arr.dtype != dtype:
        limit = float(np.finfo(dtype).max)
        with np.errstate(over="ignore"):
            big = arr.dtype.kind == "f" and bool(np.any(np.abs(arr) > limit))
            arr = arr.astype(dtype)
        if big or not np.isfinite(arr).all():
            raise RequestError(f"{what}: a number beyond {np.dtype(dtype).name}'s range")
    if not np.isfinite(arr).all():
        raise RequestError(f"{what}: NaN or Inf")
    return arr


def _fit(arr: np.ndarray, n: int | None, shape: tuple[int, ...], what: str) -> np.ndarray:
    """(n, F) C-contiguous float32 rows from an array of samples of `shape` (or flattened)."""
    size = math.prod(shape)
    if arr.ndim < 1 or arr.shape[0] < 1:
        raise RequestError(f"{what}: expected at least one sample")
    if n is not None and arr.shape[0] != n:
        raise RequestError(f"{what}: {arr.shape[0]} samples, the other inputs have {n}")
    got = tuple(arr.shape[1:])
    if got != shape and got != (size,):
        raise RequestError(f"{what}: each sample must have shape {list(shape)}"
                           + (f" (or {size} values)" if len(shape) > 1 else "")
                           + f", got {list(got)}")
    return np.ascontiguousarray(arr.reshape(arr.shape[0], size), dtype=np.float32)


def decode_inputs(payload: dict[str, Any], sig: Signature,
                  body_has_literals: bool = True) -> tuple[list[np.ndarray], bool]:
    """The model inputs of a predict request as (n, F) float32 arrays in the model's input
    order, and whether the request used the columnar ("inputs") layout."""
    has_rows, has_cols = "instances" in payload, "inputs" in payload
    if has_rows == has_cols:
        raise RequestError('body: expected exactly one of the keys "instances" and "inputs"'
                           if has_rows else 'body: missing key "instances" (or "inputs")')
    names, shapes = sig.input_names, sig.input_shapes
    if has_rows:
        rows = payload["instances"]
        if not isinstance(rows, list):
            raise RequestError(f"instances: expected an array, got {_json_type(rows)}")
        if not rows:
            raise RequestError("instances: expected at least one sample, got []")
        if any(isinstance(r, dict) for r in rows):
            arrays: list[np.ndarray] = []
            for k, r in enumerate(rows):
                if not isinstance(r, dict):
                    raise RequestError(f"instances[{k}]: expected an object by input name "
                                       f"like the other samples, got {_json_type(r)}")
                unknown = [key for key in r if key not in names]
                if unknown:
                    raise RequestError(f"instances[{k}]: unknown input {unknown[0]!r}; the "
                                       f"model's inputs are {list(names)}")
            for name, shape in zip(names, shapes):
                column = []
                for k, r in enumerate(rows):
                    if name not in r:
                        raise RequestError(f"instances[{k}]: missing key {name!r}")
                    column.append(r[name])
                arr = to_array(column, f"instances[*][{name!r}]", body_has_literals)
                arrays.append(_fit(arr, len(rows), shape, f"input {name!r}"))
            return arrays, False
        if len(names) != 1:
            raise RequestError(f"instances: the model has inputs {list(names)}; give each "
                               f"sample as an object by input name")
        arr = to_array(rows, "instances", body_has_literals)
        return [_fit(arr, None, shapes[0], "instances")], False
    value = payload["inputs"]
    if isinstance(value, dict):
        unknown = [key for key in value if key not in names]
        if unknown:
            raise RequestError(f"inputs: unknown input {unknown[0]!r}; the model's inputs are "
                               f"{list(names)}")
        arrays = []
        for name, shape in zip(names, shapes):
            if name not in value:
                raise RequestError(f"inputs: missing key {name!r}")
            arr = to_array(value[name], f"inputs[{name!r}]", body_has_literals)
            arrays.append(_fit(arr, arrays[0].shape[0] if arrays else None, shape,
                               f"inputs[{name!r}]"))
        return arrays, True
    if len(names) != 1:
        raise RequestError(f"inputs: the model has inputs {list(names)}; give an object by "
                           f"input name")
    arr = to_array(value, "inputs", body_has_literals)
    return [_fit(arr, None, shapes[0], "inputs")], True


def encode_outputs(outputs: Sequence[np.ndarray], sig: Signature, columnar: bool,
                   ids: Sequence[str] | None = None) -> bytes:
    """The JSON answer for the model's outputs on one request's samples (with "ids", one per
    sample, when given)."""
    # float32 -> float64 is exact, and Python (like orjson) writes a float64 as the shortest
    # text that reads back as the same value: the client's float32(value) is the model's output.
    wide = [o.astype(np.float64) for o in outputs]
    if orjson is not None and len(wide) == 1:
        key = "outputs" if columnar else "predictions"
        answer: dict[str, Any] = {key: wide[0]}
        if ids is not None:
            answer["ids"] = list(ids)
        return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    lists = [o.tolist() for o in wide]
    if columnar:
        body: Any = {"outputs": lists[0] if len(lists) == 1 else dict(zip(sig.output_names,
                                                                          lists))}
    elif len(lists) == 1:
        body = {"predictions": lists[0]}
    else:
        body = {"predictions": [dict(zip(sig.output_names, row)) for row in zip(*lists)]}
    if ids is not None:
        body["ids"] = list(ids)
    if orjson is not None:
        return orjson.dumps(body)
    return json.dumps(body, separators=(",", ":")).encode()


def error_body(message: str) -> bytes:
    """The JSON of an error answer: {"error": message}."""
    return json.dumps({"error": message}).encode()


def decode_labels(payload: dict[str, Any], n: int, body_has_literals: bool = True) -> np.ndarray:
    """The "labels" of a feedback request: n numbers (or n rows of numbers) as float64."""
    if "labels" not in payload:
        raise RequestError('body: missing key "labels"')
    arr = to_array(payload["labels"], "labels", body_has_literals, np.float64)
    if arr.ndim == 0 or arr.shape[0] != n:
        raise RequestError(f"labels: expected {n} labels, one per instance, got "
                           f"{arr.shape[0] if arr.ndim else 'a single number'}")
    return arr
