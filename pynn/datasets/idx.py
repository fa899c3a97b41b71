"""Reading and writing IDX files, the format MNIST and Fashion-MNIST are distributed in.

Layout (all integers big-endian):

    bytes 0-1   zero
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions d (at least 1)
    4*d bytes   each dimension as an unsigned 32-bit integer
    then        the elements in C order, big-endian

A file may be gzip-compressed; compression is recognised from its first two bytes, not from its
name. The reader insists that the payload is exactly as long as the header says: a truncated
download or a file with trailing garbage is an error, never a silently short array.
"""
from __future__ import annotations

import gzip
import io
import os
import struct
import tempfile
import zlib
from typing import Any

import numpy as np

__all__ = ["IdxFormatError", "read_idx", "write_idx"]

_GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian NumPy dtype as stored in the file.
_CODE_TO_DTYPE: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_SIZE_TO_CODE = {(dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()}

# More dimensions than this is not an IDX file anyone wrote on purpose; refusing early also keeps
# a corrupt byte 3 from making us read a huge "header".
_MAX_NDIM = 32


class IdxFormatError(ValueError):
    """The bytes given are not a well-formed IDX file (bad magic, type, dimensions or length)."""


def _describe(source) -> str:
    return repr(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else "<file object>"


def _read_all(source) -> bytes:
    """All bytes of `source` (a path or a binary file object), gunzipped if it is gzip data."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            raw = f.read()
    elif hasattr(source, "read"):
        raw = source.read()
        if not isinstance(raw, (bytes, bytearray)):
            raise TypeError(f"source: expected a path or a binary file object, got a file that "
                            f"returns {type(raw).__name__}")
        raw = bytes(raw)
    else:
        raise TypeError(f"source: expected a path or a binary file object, got "
                        f"{type(source).__name__}")
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        # EOFError: the gzip stream stops early (truncated download); OSError/BadGzipFile and
        # zlib.error: damaged bytes or a bad CRC.
        raise IdxFormatError(f"{_describe(source)}: corrupt or truncated gzip data ({exc})") \
            from None


def read_idx(source) -> np.ndarray:
    """Reads an IDX file (plain or gzip-compressed) into a NumPy array.

    Args:
        source: a path (str or os.PathLike) or a binary file object.

    Returns:
        An array with the file's shape and element type, in native byte order (uint8 for the
        MNIST images and labels).

    Raises:
        IdxFormatError: bad magic number, unknown type code, zero dimensions, or a payload
            whose length differs from what the header declares.

    Example:
        >>> from pynn.datasets.idx import read_idx
        >>> labels = read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
        >>> labels.shape
        (10000,)
    """
    data = _read_all(source)
    where = _describe(source)
    if len(data) < 4:
        raise IdxFormatError(f"{where}: {len(data)} bytes is too short for an IDX header "
                             f"(need at least 4)")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise IdxFormatError(f"{where}: bad magic number 0x{data[:4].hex()}; an IDX file starts "
                             f"with two zero bytes")
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
        raise IdxFormatError(f"{where}: unknown IDX type code 0x{code:02X} (expected one of "
                             f"{known})")
    if ndim == 0 or ndim > _MAX_NDIM:
        raise IdxFormatError(f"{where}: the header declares {ndim} dimensions; expected 1 to "
                             f"{_MAX_NDIM}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxFormatError(f"{where}: truncated header: {ndim} dimensions need {header_len} "
                             f"bytes, the file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _CODE_TO_DTYPE[code]
    # Python ints: no overflow however large the declared dimensions are.
    expected = header_len + dtype.itemsize * int(np.prod([int(s) for s in shape], dtype=object))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise IdxFormatError(f"{where}: {what}: header declares shape {shape} of "
                             f"{dtype.newbyteorder('=').name} ({expected} bytes in all), "
                             f"the file has {len(data)} bytes")
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    # A native-order, writeable copy: frombuffer over bytes is read-only.
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path, array, *, compress: bool | None = None) -> None:
    """Writes `array` as an IDX file, atomically (temporary file in the same directory, then
    `os.replace`), so a crash never leaves a half-written file under the final name.

    Args:
        path: destination path.
        array: array-like of a type IDX can hold (uint8, int8, int16, int32, float32, float64)
            with at least one dimension, each below 2**32.
        compress: gzip the output; by default when `path` ends in ".gz".
    """
    arr = np.asarray(array)
    if arr.ndim == 0:
        raise ValueError("array: expected at least 1 dimension, got a 0-d array")
    if arr.ndim > _MAX_NDIM:
        raise ValueError(f"array: expected at most {_MAX_NDIM} dimensions, got {arr.ndim}")
    code = _KIND_SIZE_TO_CODE.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise TypeError(f"array: IDX cannot store dtype {arr.dtype}; expected uint8, int8, "
                        f"int16, int32, float32 or float64")
    if any(s >= 2**32 for s in arr.shape):
        raise ValueError(f"array: every dimension must be below 2**32, got shape {arr.shape}")
    path = os.fspath(path)
    if compress is None:
        compress = path.endswith(".gz")
    payload = io.BytesIO()
    payload.write(bytes([0, 0, code, arr.ndim]))
    payload.write(struct.pack(f">{arr.ndim}I", *arr.shape))
    payload.write(np.ascontiguousarray(arr, dtype=_CODE_TO_DTYPE[code]).tobytes())
    blob = payload.getvalue()
    if compress:
        # mtime=0 keeps the output a pure function of the array.
        blob = gzip.compress(blob, mtime=0)
    atomic_write_bytes(path, blob)


def atomic_write_bytes(path, blob: bytes) -> None:
    """Writes `blob` to `path` through a temporary file in the same directory and os.replace."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".part",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a data file need not be
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
