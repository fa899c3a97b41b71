"""A strict reader and an atomic writer for the safetensors file format.

Layout: an 8-byte little-endian header length N, N bytes of JSON (tensor name ->
{"dtype", "shape", "data_offsets": [begin, end]}, plus an optional "__metadata__" map of
strings), then the raw little-endian tensor bytes. Files written here open with the
`safetensors` library and the other way round.

The reader treats the file as untrusted: it never evaluates anything, bounds the header
before reading it, and checks every tensor's dtype, shape and offsets (in range, sized to the
shape, covering the data region exactly with no overlap) before touching tensor bytes. Any
violation is a `ValueError` naming the problem.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from typing import Any

import numpy as np

MAX_SHAPE_DIM = 2**40  # per axis; products are checked against the file size anyway
MAX_HEADER = 100 * 1024 * 1024  # as the reference implementation
_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"), "U8": np.dtype("u1")}
_NAMES = {v: k for k, v in _DTYPES.items()}


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file."""


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise SafetensorsError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_json(raw, what):
    """Parses untrusted JSON bytes or text. Duplicate keys, invalid UTF-8, non-finite
    constants (NaN, Infinity) and nesting deep enough to exhaust the parser's recursion are all
    refused with a `SafetensorsError` (a ValueError) rather than a RecursionError."""
    def _no_constants(name):
        raise SafetensorsError(f"non-standard JSON constant {name}")

    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except SafetensorsError as exc:
        raise SafetensorsError(f"{what} is not valid JSON ({exc})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise SafetensorsError(f"{what} is not valid JSON ({exc})") from None
    except RecursionError:
        raise SafetensorsError(f"{what} is nested too deeply") from None


def _file_mode(path):
    """The permission bits the written file gets: those of the file it replaces, else what
    open() would give a new file under the current umask (mkstemp alone gives 0600)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    umask = 0o022
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
                    break
    except (OSError, ValueError):
        pass
    return 0o666 & ~umask


def write(path, tensors: dict, metadata: dict | None = None) -> None:
    """Writes `tensors` (name -> array) and string `metadata` to `path` atomically: the data
    goes to a temporary file in the same folder, is flushed to disk, then renamed over `path`,
    so a crash mid-write leaves the previous file intact."""
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("metadata: keys and values must be strings")
        header["__metadata__"] = dict(metadata)
    arrays = []
    offset = 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dt not in _NAMES:
            raise TypeError(f"tensor {name!r}: unsupported dtype {arr.dtype}")
        arr = np.require(arr.astype(dt, copy=False), requirements="C")  # 0-d stays 0-d
        nbytes = arr.nbytes
        header[name] = {"dtype": _NAMES[dt], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + nbytes]}
        arrays.append(arr)
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".pynn-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for arr in arrays:
                # the array's own buffer (C-contiguous by construction): no second copy of a
                # large model in memory while it is written
                if arr.size:
                    f.write(arr.reshape(-1).data.cast("B"))
            f.flush()
            os.fchmod(f.fileno(), _file_mode(path))
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    # Make the rename itself durable (POSIX: the directory entry lives in the folder).
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def read(path, max_header: int = MAX_HEADER) -> tuple[dict, dict]:
    """Returns (tensors, metadata) from a safetensors file, validating everything.

    `max_header` bounds the JSON header before it is read (parsing JSON costs memory in
    proportion to its size; callers that know their headers are small pass a lower bound)."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise FileNotFoundError(f"cannot open {path!r}: {exc.strerror}") from None
    if size < 8:
        raise SafetensorsError(f"{path}: too short to be a safetensors file ({size} bytes)")
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        if hlen > max_header or hlen > size - 8:
            raise SafetensorsError(f"{path}: header length {hlen} exceeds the file "
                                   f"({size} bytes) or the {max_header}-byte limit")
        raw = f.read(hlen)
        if len(raw) != hlen:
            raise SafetensorsError(f"{path}: the file changed while it was read")
        header = parse_json(raw, f"{path}: the header")
        if not isinstance(header, dict):
            raise SafetensorsError(f"{path}: the header must be a JSON object")
        data_len = size - 8 - hlen
        metadata = header.pop("__metadata__", {})
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")
        spans = []
        for name, info in header.items():
            if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
                raise SafetensorsError(f"{path}: tensor {name!r} has a malformed entry")
            dtype = _DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
            if dtype is None:
                raise SafetensorsError(f"{path}: tensor {name!r} has unsupported dtype "
                                       f"{info['dtype']!r}")
            shape = info["shape"]
            if not isinstance(shape, list) or not all(
                    type(s) is int and 0 <= s < MAX_SHAPE_DIM for s in shape):
                raise SafetensorsError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
            offs = info["data_offsets"]
            if (not isinstance(offs, list) or len(offs) != 2
                    or not all(type(o) is int for o in offs)
                    or not 0 <= offs[0] <= offs[1] <= data_len):
                raise SafetensorsError(f"{path}: tensor {name!r} has offsets {offs!r} outside "
                                       f"the {data_len}-byte data region")
            count = 1
            for s in shape:
                count *= s
            if count * dtype.itemsize != offs[1] - offs[0]:
                raise SafetensorsError(f"{path}: tensor {name!r} of shape {shape} needs "
                                       f"{count * dtype.itemsize} bytes, its offsets span "
                                       f"{offs[1] - offs[0]}")
            spans.append((offs[0], offs[1], name, dtype, tuple(shape)))
        spans.sort(key=lambda t: (t[0], t[1]))
        cursor = 0
        for begin, end, name, _, _ in spans:
            if begin != cursor:
                kind = "overlaps another" if begin < cursor else "leaves a gap before it"
                raise SafetensorsError(f"{path}: tensor {name!r} {kind} (offset {begin})")
            cursor = end
        if cursor != data_len:
            raise SafetensorsError(f"{path}: {data_len - cursor} bytes after the last tensor "
                                   f"(truncated or padded file)")
        data = f.read(data_len)
        if len(data) != data_len:
            raise SafetensorsError(f"{path}: the file changed while it was read")
    tensors = {}
    for begin, end, name, dtype, shape in spans:
        arr = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize,
                            offset=begin).reshape(shape)
        tensors[name] = arr.astype(dtype.newbyteorder("="), copy=True)
    return tensors, metadata
