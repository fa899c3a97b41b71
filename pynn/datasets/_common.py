"""What MNIST and Fashion-MNIST share: where to look for the files, how to download them, and
the checks every loaded array passes.

Search order for `load_data(path=None)`:
  1. `path`, when given: a directory holding the four IDX files (gzipped or not), or a Keras-style
     `.npz` with x_train, y_train, x_test, y_test. An explicit path that does not hold the data is
     an error; we do not quietly load something else.
  2. the cache: `$PYNN_DATA/<name>` (or `$PYNN_DATA` itself) when PYNN_DATA is set, otherwise
     `$XDG_CACHE_HOME/pynn/<name>` (default `~/.cache/pynn/<name>`).
  3. the system directories of the Debian packages (`/usr/share/datasets/<name>`).
  4. a download into the cache directory, each file checked against its published MD5 and
     written atomically.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from pynn.datasets.idx import IdxFormatError, read_idx

# The four parts of a split data set, in the order load_data returns them.
KEYS = ("train_images", "train_labels", "test_images", "test_labels")
_NPZ_KEYS = {"train_images": "x_train", "train_labels": "y_train",
             "test_images": "x_test", "test_labels": "y_test"}

_CHUNK = 1 << 16
_TIMEOUT_S = 30.0

# Indirection so tests can serve files without a network; the signature is urlopen's.
_urlopen = urllib.request.urlopen


class DataNotFoundError(FileNotFoundError):
    """The data set is neither on disk nor downloadable; the message says how to get it."""


class DownloadError(OSError):
    """A download failed (network error, HTTP error, or a file that fails its checksum)."""


class ChecksumMismatchError(DownloadError):
    """A downloaded file's MD5 differs from the published one; nothing was written."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything the generic loader needs to know about one IDX data set.

    Attributes:
        name: directory name under the cache and under /usr/share/datasets.
        title: the name shown to people.
        files: KEYS -> (file name as published, MD5 of that .gz file).
        mirrors: base URLs tried in order; each file is fetched as mirror + "/" + file name.
        system_dirs: directories installed by system packages, searched after the cache.
        install_hint: how to install the data with the system package manager, or "".
        download_mb: approximate size of the four .gz files, for messages.
        num_classes: labels must lie in [0, num_classes).
    """
    name: str
    title: str
    files: dict
    mirrors: tuple
    system_dirs: tuple
    install_hint: str = ""
    download_mb: int = 0
    num_classes: int = 10
    image_shape: tuple = (28, 28)


# ---------------------------------------------------------------------------------------------
# Where the files are

def cache_dir(spec: DatasetSpec) -> Path:
    """The directory downloads go to (created only when something is downloaded)."""
    root = os.environ.get("PYNN_DATA")
    if root:
        return Path(root).expanduser() / spec.name
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pynn" / spec.name


def _search_dirs(spec: DatasetSpec) -> list[Path]:
    dirs = [cache_dir(spec)]
    root = os.environ.get("PYNN_DATA")
    if root:
        dirs.append(Path(root).expanduser())
    dirs.extend(Path(d) for d in spec.system_dirs)
    return dirs


def _file_in(directory: Path, filename: str) -> Path | None:
    """The file under its published .gz name or decompressed (name without .gz), if present."""
    for candidate in (filename, filename[:-3] if filename.endswith(".gz") else None):
        if candidate and (directory / candidate).is_file():
            return directory / candidate
    return None


def _complete_set(spec: DatasetSpec, directory: Path) -> dict | None:
    found = {key: _file_in(directory, spec.files[key][0]) for key in KEYS}
    return found if all(found.values()) else None


def locate(spec: DatasetSpec) -> dict | None:
    """The first directory in the search order (without `path`) holding all four files."""
    for directory in _search_dirs(spec):
        found = _complete_set(spec, directory)
        if found:
            return found
    return None


# ---------------------------------------------------------------------------------------------
# Reading and checking

def _check_split(spec: DatasetSpec, images, labels, split: str, where: str):
    h, w = spec.image_shape
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (h, w):
        raise IdxFormatError(f"{where}: {split} images: expected uint8 of shape (n, {h}, {w}), "
                             f"got {images.dtype} of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IdxFormatError(f"{where}: {split} labels: expected a 1-D uint8 array, got "
                             f"{labels.dtype} of shape {labels.shape}")
    if len(labels) != len(images):
        raise IdxFormatError(f"{where}: {split} set has {len(images)} images but "
                             f"{len(labels)} labels")
    if labels.size and int(labels.max()) >= spec.num_classes:
        raise IdxFormatError(f"{where}: {split} labels: expected values in [0, "
                             f"{spec.num_classes}), found {int(labels.max())}")


def read_split_files(spec: DatasetSpec, files: dict):
    """Reads the four IDX files named in `files` (KEYS -> path) and checks them together."""
    arrays = {key: read_idx(files[key]) for key in KEYS}
    where = str(Path(files["train_images"]).parent)
    _check_split(spec, arrays["train_images"], arrays["train_labels"], "training", where)
    _check_split(spec, arrays["test_images"], arrays["test_labels"], "test", where)
    return ((arrays["train_images"], arrays["train_labels"]),
            (arrays["test_images"], arrays["test_labels"]))


def read_npz(spec: DatasetSpec, path) -> tuple:
    """Reads a Keras-style .npz (x_train, y_train, x_test, y_test) and checks it."""
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _NPZ_KEYS.values() if k not in z.files]
            if missing:
                raise IdxFormatError(f"{where}: missing arrays {missing}; expected x_train, "
                                     f"y_train, x_test and y_test")
            arrays = {key: z[name] for key, name in _NPZ_KEYS.items()}
    except (OSError, ValueError) as exc:
        if isinstance(exc, IdxFormatError):
            raise
        raise IdxFormatError(f"{where}: not a readable .npz file ({exc})") from None
    _check_split(spec, arrays["train_images"], arrays["train_labels"], "training", where)
    _check_split(spec, arrays["test_images"], arrays["test_labels"], "test", where)
    return ((arrays["train_images"], arrays["train_labels"]),
            (arrays["test_images"], arrays["test_labels"]))


# ---------------------------------------------------------------------------------------------
# Downloading

class _Progress:
    """A download progress bar on stderr: redrawn in place on a terminal, and just a start and
    an end line elsewhere (logs and notebooks are not flooded)."""

    def __init__(self, label: str, total: int | None, stream=None):
        self.label, self.total = label, total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self._last_draw = 0.0
        if not self.tty:
            size = f" ({total / 1e6:.1f} MB)" if total else ""
            self.stream.write(f"Downloading {label}{size} ...\n")
            self.stream.flush()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and now - self._last_draw >= 0.1:
            self._last_draw = now
            self._draw()

    def _draw(self) -> None:
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(30 * frac)
            self.stream.write(f"\r{self.label} [{bar:<30}] {100 * frac:5.1f}% "
                              f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB")
        else:
            self.stream.write(f"\r{self.label} {self.done / 1e6:.1f} MB")
        self.stream.flush()

    def close(self, ok: bool) -> None:
        if self.tty:
            self._draw()
            self.stream.write(" done\n" if ok else " failed\n")
        elif ok:
            self.stream.write(f"Downloaded {self.label} ({self.done / 1e6:.1f} MB)\n")
        self.stream.flush()


def _fetch(url: str, dest: Path, md5: str, label: str, stream=None) -> None:
    """Streams `url` into a temporary file beside `dest`, checks its MD5, then renames it."""
    fd, tmp = tempfile.mkstemp(prefix="." + dest.name + ".", suffix=".part", dir=dest.parent)
    ok = False
    progress = None
    try:
        with os.fdopen(fd, "wb") as out, _urlopen(url, timeout=_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length") if hasattr(response, "headers") \
                else None
            progress = _Progress(label, int(length) if length and length.isdigit() else None,
                                 stream)
            # MD5 only matches what the publishers list; it is not a security boundary.
            digest = hashlib.md5(usedforsecurity=False)
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                progress.update(len(chunk))
        got = digest.hexdigest()
        if got != md5.lower():
            raise ChecksumMismatchError(f"{url}: MD5 {got} differs from the published {md5}; "
                                        f"the file was discarded")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        ok = True
    finally:
        if progress is not None:
            progress.close(ok)
        if not ok:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def download(spec: DatasetSpec, directory: Path | None = None, stream=None) -> dict:
    """Downloads the files of `spec` missing from `directory` (default: the cache directory),
    trying each mirror in turn, and returns KEYS -> path.

    Raises:
        ChecksumMismatchError: every mirror served a file whose MD5 is wrong.
        DownloadError: no mirror could serve a file (network or HTTP errors).
    """
    directory = Path(directory) if directory is not None else cache_dir(spec)
    created = [d for d in (directory, *directory.parents) if not d.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the download directory {directory}: {exc}") from None
    try:
        return _download_into(spec, directory, stream)
    except BaseException:
        # Leave no empty directories behind after a failed first download.
        for d in created:
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _download_into(spec: DatasetSpec, directory: Path, stream) -> dict:
    paths = {}
    for key in KEYS:
        filename, md5 = spec.files[key]
        present = _file_in(directory, filename)
        if present is not None:
            paths[key] = present
            continue
        dest = directory / filename
        failures: list[DownloadError] = []
        for mirror in spec.mirrors:
            url = mirror.rstrip("/") + "/" + filename
            try:
                _fetch(url, dest, md5, f"{spec.title} {filename}", stream)
                break
            except ChecksumMismatchError as exc:
                failures.append(exc)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                # URLError/HTTPError are OSErrors; ValueError covers malformed URLs.
                failures.append(DownloadError(f"{url}: {exc}"))
        else:
            reasons = "; ".join(str(f) for f in failures) or "no mirrors configured"
            cls = ChecksumMismatchError if failures and all(
                isinstance(f, ChecksumMismatchError) for f in failures) else DownloadError
            raise cls(f"could not download {filename} of {spec.title}: {reasons}")
        paths[key] = dest
    return paths


# ---------------------------------------------------------------------------------------------
# The whole search

def how_to_get(spec: DatasetSpec) -> str:
    ways = []
    if spec.install_hint:
        ways.append(f"install it system-wide: {spec.install_hint}")
    names = ", ".join(spec.files[k][0] for k in KEYS)
    ways.append(f"pass load_data(path=DIR) with DIR holding {names}")
    ways.append(f"put those files in {cache_dir(spec)} (or set PYNN_DATA to a directory that "
                f"holds them)")
    source = spec.mirrors[0] if spec.mirrors else "a mirror"
    ways.append(f"connect to the internet and call load_data() again to download them "
                f"(~{spec.download_mb} MB from {source})")
    return "\n".join(f"  - {w}" for w in ways)


def load(spec: DatasetSpec, path=None, *, download_if_missing: bool = True, stream=None):
    """Finds (or downloads) and reads the data set; see the module docstring for the order."""
    if path is not None:
        p = Path(os.fspath(path)).expanduser()
        if p.is_file() and p.suffix == ".npz":
            return read_npz(spec, p)
        if p.is_dir():
            found = _complete_set(spec, p)
            if found:
                return read_split_files(spec, found)
            missing = [spec.files[k][0] for k in KEYS if _file_in(p, spec.files[k][0]) is None]
            raise DataNotFoundError(f"path={str(path)!r}: {spec.title} files missing there: "
                                    f"{', '.join(missing)}")
        raise DataNotFoundError(f"path={str(path)!r}: expected a directory holding the "
                                f"{spec.title} IDX files or a .npz file; nothing usable there")
    found = locate(spec)
    if found:
        return read_split_files(spec, found)
    searched = ", ".join(str(d) for d in _search_dirs(spec))
    if not download_if_missing:
        raise DataNotFoundError(f"{spec.title} not found (searched {searched}) and downloading "
                                f"is disabled. To get it:\n{how_to_get(spec)}")
    try:
        files = download(spec, stream=stream)
    except ChecksumMismatchError:
        raise
    except DownloadError as exc:
        raise DataNotFoundError(f"{spec.title} not found (searched {searched}) and the download "
                                f"failed ({exc}). To get it:\n{how_to_get(spec)}") from None
    return read_split_files(spec, files)
