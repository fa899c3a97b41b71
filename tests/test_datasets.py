"""pynn.datasets: the IDX format, where the loaders look, the download, the shipped subset and
the real Fashion-MNIST when it is installed."""
import dataclasses
import gzip
import hashlib
import io
import os
import struct
import subprocess
import sys
import urllib.error
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from pynn.datasets import (
    ChecksumMismatchError,
    DataNotFoundError,
    DownloadError,
    IdxFormatError,
    _common,
    fashion_mnist,
    mnist,
)
from pynn.datasets.idx import read_idx, write_idx

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")
FILES = {key: fashion_mnist.SPEC.files[key][0] for key in _common.KEYS}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Only file:// URLs may be opened; anything else fails the way an offline machine does."""
    real = _common._urlopen

    def guarded(url, *args, **kwargs):
        if not str(url).startswith("file:"):
            raise urllib.error.URLError("network disabled in tests")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(_common, "_urlopen", guarded)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """An empty cache and no system directories: the loaders see no data unless a test adds it."""
    monkeypatch.setenv("PYNN_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(fashion_mnist, "SPEC",
                        dataclasses.replace(fashion_mnist.SPEC, system_dirs=()))
    monkeypatch.setattr(mnist, "SPEC", dataclasses.replace(mnist.SPEC, system_dirs=()))
    return tmp_path


def make_fake_set(directory, marker, n_train=20, n_test=10, compress=True):
    """Writes a tiny data set whose pixels all equal `marker`, so a load says where it came
    from; labels cycle through the ten classes. Returns the arrays written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": np.full((n_train, 28, 28), marker, np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": np.full((n_test, 28, 28), marker, np.uint8),
        "test_labels": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    for key, arr in arrays.items():
        name = FILES[key] if compress else FILES[key][:-3]
        write_idx(directory / name, arr)
    return arrays


def marker_of(data):
    (x_train, _), (x_test, _) = data
    assert x_train.dtype == np.uint8 and x_test.dtype == np.uint8
    assert x_train.min() == x_train.max() == x_test.min() == x_test.max()
    return int(x_train[0, 0, 0])


# ---------------------------------------------------------------------------------------------
# IDX format

def test_idx_bytes_match_the_format_by_hand(tmp_path):
    # The layout written out by hand: two zero bytes, type, ndim, big-endian dims, payload.
    write_idx(tmp_path / "l.idx", np.array([7, 8, 9], np.uint8))
    assert (tmp_path / "l.idx").read_bytes() == b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x08\x09"
    write_idx(tmp_path / "s.idx", np.array([[1, -2]], np.int16))
    assert (tmp_path / "s.idx").read_bytes() == (b"\x00\x00\x0b\x02" + struct.pack(">II", 1, 2)
                                                 + struct.pack(">hh", 1, -2))
    # And a hand-made file reads back.
    raw = b"\x00\x00\x0d\x01\x00\x00\x00\x02" + struct.pack(">ff", 1.5, -3.25)
    np.testing.assert_array_equal(read_idx(io.BytesIO(raw)), np.array([1.5, -3.25], np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
@pytest.mark.parametrize("shape", [(5,), (3, 28, 28), (2, 3, 4, 5), (0, 4), (1,)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, shape, suffix):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        arr = rng.normal(size=shape).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, arr)
    back[...] = 0  # the result is an ordinary writeable array
    # The same bytes through a file object.
    np.testing.assert_array_equal(read_idx(io.BytesIO(path.read_bytes())), arr)


def test_idx_gzip_is_recognised_by_content_not_name(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "plain.gz", arr, compress=False)
    write_idx(tmp_path / "packed.idx", arr, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed.idx"), arr)


def test_idx_write_is_atomic_and_leaves_no_temporary(tmp_path):
    write_idx(tmp_path / "x.idx", np.zeros(3, np.uint8))
    write_idx(tmp_path / "x.idx", np.ones(4, np.uint8))  # replaces
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.idx"]
    np.testing.assert_array_equal(read_idx(tmp_path / "x.idx"), np.ones(4, np.uint8))


def _valid_bytes():
    return b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + bytes(range(6))


MALFORMED = [
    (b"", "too short"),
    (b"\x00\x00", "too short"),
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x00", "bad magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated header"),
    (_valid_bytes()[:-1], "truncated"),
    (_valid_bytes() + b"\x00", "trailing bytes"),
    # 4 billion elements declared, 1 present: refused from the header, no huge allocation.
    (b"\x00\x00\x0e\x02\xff\xff\xff\xff\xff\xff\xff\xff\x00", "truncated"),
]


@pytest.mark.parametrize("data,message", MALFORMED,
                         ids=[f"{i}-{msg.split()[0]}" for i, (_, msg) in enumerate(MALFORMED)])
def test_idx_rejects_malformed(tmp_path, data, message):
    with pytest.raises(IdxFormatError, match=message):
        read_idx(io.BytesIO(data))
    # Same through a gzip wrapper: the checks are on the decompressed bytes.
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(IdxFormatError, match=message):
        read_idx(path)


def test_idx_rejects_corrupt_gzip(tmp_path):
    blob = gzip.compress(_valid_bytes() * 50, mtime=0)
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IdxFormatError, match="corrupt or truncated gzip"):
        read_idx(truncated)
    damaged = bytearray(blob)
    damaged[-6] ^= 0xFF  # inside the CRC32 trailer
    (tmp_path / "crc.gz").write_bytes(bytes(damaged))
    with pytest.raises(IdxFormatError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "crc.gz")


def test_idx_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="at least 1 dimension"):
        write_idx(tmp_path / "a", np.float32(1.0))
    with pytest.raises(TypeError, match="complex128"):
        write_idx(tmp_path / "a", np.zeros(2, np.complex128))
    with pytest.raises(TypeError, match="uint16"):
        write_idx(tmp_path / "a", np.zeros(2, np.uint16))
    with pytest.raises(TypeError, match="path or a binary file object"):
        read_idx(42)
    with pytest.raises(TypeError, match="binary file object"):
        read_idx(io.StringIO("text"))
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing.idx")


# ---------------------------------------------------------------------------------------------
# Search order

def test_explicit_path_comes_first(isolated, monkeypatch):
    make_fake_set(isolated / "mine", 1)
    make_fake_set(isolated / "cache" / "fashion-mnist", 2)
    make_fake_set(isolated / "system", 3)
    monkeypatch.setattr(fashion_mnist, "SPEC", dataclasses.replace(
        fashion_mnist.SPEC, system_dirs=(str(isolated / "system"),)))
    assert marker_of(fashion_mnist.load_data(isolated / "mine")) == 1
    assert marker_of(fashion_mnist.load_data(str(isolated / "mine"))) == 1
    # Without a path the cache wins over the system directory ...
    assert marker_of(fashion_mnist.load_data()) == 2
    # ... which is used when the cache is incomplete.
    os.unlink(isolated / "cache" / "fashion-mnist" / FILES["test_labels"])
    assert marker_of(fashion_mnist.load_data()) == 3


def test_cache_locations(isolated, monkeypatch):
    # $PYNN_DATA itself may hold the files.
    make_fake_set(isolated / "cache", 4)
    assert marker_of(fashion_mnist.load_data(download=False)) == 4
    # Without PYNN_DATA: $XDG_CACHE_HOME/pynn/<name>, else ~/.cache/pynn/<name>.
    monkeypatch.delenv("PYNN_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated / "xdg"))
    make_fake_set(isolated / "xdg" / "pynn" / "fashion-mnist", 5)
    assert marker_of(fashion_mnist.load_data(download=False)) == 5
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(isolated / "home"))
    make_fake_set(isolated / "home" / ".cache" / "pynn" / "mnist", 6)
    assert marker_of(mnist.load_data(download=False)) == 6
    assert _common.cache_dir(mnist.SPEC) == isolated / "home" / ".cache" / "pynn" / "mnist"


def test_loaded_arrays_are_what_was_written(isolated):
    written = make_fake_set(isolated / "d", 9, n_train=30, n_test=12, compress=False)
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(isolated / "d")
    assert x_train.shape == (30, 28, 28) and y_train.shape == (30,)
    assert x_test.shape == (12, 28, 28) and y_test.shape == (12,)
    assert y_train.dtype == y_test.dtype == np.uint8
    np.testing.assert_array_equal(y_train, written["train_labels"])
    np.testing.assert_array_equal(y_test, written["test_labels"])


def test_keras_style_npz_path(isolated):
    rng = np.random.default_rng(1)
    arrays = dict(x_train=rng.integers(0, 256, (8, 28, 28), dtype=np.uint8),
                  y_train=rng.integers(0, 10, 8, dtype=np.uint8),
                  x_test=rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
                  y_test=rng.integers(0, 10, 4, dtype=np.uint8))
    np.savez(isolated / "mnist.npz", **arrays)
    (x_train, y_train), (x_test, y_test) = mnist.load_data(isolated / "mnist.npz")
    for got, key in ((x_train, "x_train"), (y_train, "y_train"), (x_test, "x_test"),
                     (y_test, "y_test")):
        np.testing.assert_array_equal(got, arrays[key])
    np.savez(isolated / "partial.npz", x_train=arrays["x_train"])
    with pytest.raises(IdxFormatError, match="missing arrays"):
        mnist.load_data(isolated / "partial.npz")


def test_explicit_path_without_data_is_an_error(isolated):
    make_fake_set(isolated / "d", 1)
    os.unlink(isolated / "d" / FILES["train_images"])
    with pytest.raises(DataNotFoundError, match="missing there: train-images-idx3-ubyte.gz"):
        fashion_mnist.load_data(isolated / "d")
    with pytest.raises(DataNotFoundError, match="path="):
        fashion_mnist.load_data(isolated / "nowhere")


def test_inconsistent_files_are_rejected(isolated):
    make_fake_set(isolated / "d", 1)
    write_idx(isolated / "d" / FILES["train_labels"], np.zeros(19, np.uint8))  # 20 images
    with pytest.raises(IdxFormatError, match="20 images but 19 labels"):
        fashion_mnist.load_data(isolated / "d")
    write_idx(isolated / "d" / FILES["train_labels"], np.full(20, 10, np.uint8))
    with pytest.raises(IdxFormatError, match=r"values in \[0, 10\), found 10"):
        fashion_mnist.load_data(isolated / "d")
    write_idx(isolated / "d" / FILES["train_labels"], np.zeros(20, np.uint8))
    write_idx(isolated / "d" / FILES["test_images"], np.zeros((10, 28, 27), np.uint8))
    with pytest.raises(IdxFormatError, match=r"shape \(n, 28, 28\)"):
        fashion_mnist.load_data(isolated / "d")


def test_no_data_no_network_says_how_to_get_it(isolated):
    with pytest.raises(DataNotFoundError) as info:
        fashion_mnist.load_data()
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "path=" in msg and "PYNN_DATA" in msg and "download" in msg
    assert "network disabled in tests" in msg  # the reason the download failed
    # A failed first download leaves no empty cache directory behind.
    assert not (isolated / "cache").exists()
    with pytest.raises(DataNotFoundError, match="downloading is disabled"):
        mnist.load_data(download=False)


# ---------------------------------------------------------------------------------------------
# Download

def serve(tmp_path, marker=7):
    """A directory of .gz files served through file:// and the spec whose MD5s match them."""
    server = tmp_path / "server"
    make_fake_set(server, marker)
    files = {key: (FILES[key], hashlib.md5((server / FILES[key]).read_bytes()).hexdigest())
             for key in _common.KEYS}
    return server, files


def test_download_into_cache_with_checksums(isolated, monkeypatch, capsys):
    server, files = serve(isolated)
    monkeypatch.setattr(fashion_mnist, "SPEC", dataclasses.replace(
        fashion_mnist.SPEC, files=files,
        # The first mirror has nothing: the loader moves on to the second.
        mirrors=((isolated / "empty").as_uri(), server.as_uri())))
    assert marker_of(fashion_mnist.load_data()) == 7
    cache = isolated / "cache" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES.values())  # no temporaries
    for name in FILES.values():
        assert (cache / name).read_bytes() == (server / name).read_bytes()
    err = capsys.readouterr().err
    assert "Downloading Fashion-MNIST train-images-idx3-ubyte.gz" in err
    assert "Downloaded Fashion-MNIST t10k-labels-idx1-ubyte.gz" in err
    # Second call: found in the cache, nothing fetched.
    monkeypatch.setattr(_common, "_urlopen", None)
    assert marker_of(fashion_mnist.load_data()) == 7


def test_download_only_fetches_missing_files(isolated, monkeypatch):
    server, files = serve(isolated, marker=8)
    cache = isolated / "cache" / "fashion-mnist"
    make_fake_set(cache, 8)
    os.unlink(cache / FILES["test_images"])
    fetched = []
    real = _common._urlopen

    def counting(url, *args, **kwargs):
        fetched.append(url.rsplit("/", 1)[-1])
        return real(url, *args, **kwargs)

    monkeypatch.setattr(_common, "_urlopen", counting)
    monkeypatch.setattr(fashion_mnist, "SPEC", dataclasses.replace(
        fashion_mnist.SPEC, files=files, mirrors=(server.as_uri(),)))
    assert marker_of(fashion_mnist.load_data()) == 8
    assert fetched == [FILES["test_images"]]


def test_download_checksum_mismatch(isolated, monkeypatch):
    server, files = serve(isolated)
    files = dict(files)
    files["train_labels"] = (FILES["train_labels"], "0" * 32)
    monkeypatch.setattr(fashion_mnist, "SPEC", dataclasses.replace(
        fashion_mnist.SPEC, files=files, mirrors=(server.as_uri(),)))
    with pytest.raises(ChecksumMismatchError, match="differs from the published 0{32}"):
        fashion_mnist.load_data()
    cache = isolated / "cache" / "fashion-mnist"
    # The good file before it was kept; the bad one and its temporary file are gone.
    assert sorted(p.name for p in cache.iterdir()) == [FILES["train_images"]]
    # The CLI's helper does not hide a corrupted download behind the subset.
    with pytest.raises(ChecksumMismatchError):
        fashion_mnist.load_data_or_subset(quiet=True)
    with pytest.raises(ChecksumMismatchError):
        fashion_mnist.load_data(fallback_to_subset=True)


class FakeResponse(io.BytesIO):
    def __init__(self, payload):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


class TtyStream(io.StringIO):
    def isatty(self):
        return True


def test_download_through_monkeypatched_opener_with_progress_bar(isolated, monkeypatch):
    server, files = serve(isolated, marker=11)
    seen = []

    def opener(url, timeout):
        seen.append((url, timeout))
        return FakeResponse((server / url.rsplit("/", 1)[-1]).read_bytes())

    monkeypatch.setattr(_common, "_urlopen", opener)
    spec = dataclasses.replace(fashion_mnist.SPEC, files=files,
                               mirrors=("https://example.invalid/fmnist/",))
    stream = TtyStream()
    paths = _common.download(spec, isolated / "dl", stream=stream)
    assert [u for u, _ in seen] == [f"https://example.invalid/fmnist/{FILES[k]}"
                                    for k in _common.KEYS]
    assert all(t > 0 for _, t in seen)  # a timeout is always set
    assert marker_of(_common.read_split_files(spec, paths)) == 11
    out = stream.getvalue()
    assert "\r" in out and "100.0%" in out and out.count(" done\n") == 4


def test_download_http_error_falls_through_to_not_found(isolated, monkeypatch):
    def opener(url, timeout):
        raise urllib.error.HTTPError(url, 503, "Service Unavailable", {}, None)

    monkeypatch.setattr(_common, "_urlopen", opener)
    with pytest.raises(DataNotFoundError, match="503"):
        mnist.load_data()
    with pytest.raises(DownloadError, match="503"):
        _common.download(mnist.SPEC, isolated / "x")


# ---------------------------------------------------------------------------------------------
# The shipped subset

def test_subset_shapes_and_balance():
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_subset()
    assert x_train.shape == (3000, 28, 28) and y_train.shape == (3000,)
    assert x_test.shape == (1000, 28, 28) and y_test.shape == (1000,)
    for a in (x_train, y_train, x_test, y_test):
        assert a.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10), np.full(10, 300))
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), np.full(10, 100))
    # Real images, not blanks: Fashion-MNIST's mean pixel is about 73.
    assert 50 < x_train.mean() < 100 and x_train.max() == 255


def test_subset_ships_with_its_license():
    data = resources.files("pynn.datasets").joinpath("data")
    npz = data.joinpath("fashion_mnist_subset.npz")
    assert npz.is_file()
    with resources.as_file(npz) as p:
        assert p.stat().st_size < 2.5e6
    text = data.joinpath("LICENSE-fashion-mnist.txt").read_text()
    assert "Zalando SE" in text and "MIT" in text and "Permission is hereby granted" in text


def test_fallback_to_subset(isolated, capsys):
    with pytest.warns(fashion_mnist.SubsetFallbackWarning, match="subset"):
        (x_train, _), (x_test, _) = fashion_mnist.load_data(fallback_to_subset=True)
    assert x_train.shape == (3000, 28, 28) and x_test.shape == (1000, 28, 28)

    ((x_train, _), _), is_subset = fashion_mnist.load_data_or_subset()
    assert is_subset and len(x_train) == 3000
    err = capsys.readouterr().err
    assert "subset" in err and "apt-get install dataset-fashion-mnist" in err

    fashion_mnist.load_data_or_subset(quiet=True)
    assert capsys.readouterr().err == ""

    # A wrong explicit path is an error, not a reason to fall back.
    with pytest.raises(DataNotFoundError, match="path="):
        fashion_mnist.load_data_or_subset(isolated / "typo", quiet=True)
    with pytest.raises(DataNotFoundError, match="path="):
        fashion_mnist.load_data(isolated / "typo", fallback_to_subset=True)

    make_fake_set(isolated / "cache" / "fashion-mnist", 3)
    data, is_subset = fashion_mnist.load_data_or_subset()
    assert not is_subset and marker_of(data) == 3


# ---------------------------------------------------------------------------------------------
# The real data set (Debian's dataset-fashion-mnist, installed in CI)

needs_fashion = pytest.mark.skipif(not (SYSTEM_FASHION / FILES["train_images"]).exists(),
                                   reason="dataset-fashion-mnist is not installed")


@pytest.fixture(scope="module")
def real_fashion():
    return fashion_mnist.load_data(SYSTEM_FASHION)


@needs_fashion
def test_real_fashion_mnist(real_fashion):
    (x_train, y_train), (x_test, y_test) = real_fashion
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    for a in real_fashion[0] + real_fashion[1]:
        assert a.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), np.full(10, 1000))
    # The first training image is an ankle boot and the first test image too (as in Keras).
    assert fashion_mnist.class_names[y_train[0]] == "Ankle boot"
    assert fashion_mnist.class_names[y_test[0]] == "Ankle boot"


@needs_fashion
def test_default_search_finds_the_system_directory(monkeypatch, tmp_path, real_fashion):
    monkeypatch.setenv("PYNN_DATA", str(tmp_path))  # empty cache
    ((_, y_train), _), is_subset = fashion_mnist.load_data_or_subset(download=False, quiet=True)
    assert not is_subset
    np.testing.assert_array_equal(y_train, real_fashion[0][1])


@needs_fashion
def test_subset_is_the_first_examples_of_each_class(real_fashion):
    # Recomputes the recipe of tools/make_fashion_subset.py from the full data.
    (xs_train, ys_train), (xs_test, ys_test) = fashion_mnist.load_subset()
    for (x, y), (xs, ys), per in ((real_fashion[0], (xs_train, ys_train), 300),
                                  (real_fashion[1], (xs_test, ys_test), 100)):
        idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:per] for c in range(10)]))
        np.testing.assert_array_equal(xs, x[idx])
        np.testing.assert_array_equal(ys, y[idx])


@needs_fashion
def test_shipped_subset_is_reproduced_by_the_tool(tmp_path):
    tool = Path(__file__).resolve().parents[1] / "tools" / "make_fashion_subset.py"
    out = tmp_path / "subset.npz"
    subprocess.run([sys.executable, str(tool), "--source", str(SYSTEM_FASHION), "--out",
                    str(out)], check=True, capture_output=True)
    shipped = resources.files("pynn.datasets").joinpath("data").joinpath(
        "fashion_mnist_subset.npz")
    assert out.read_bytes() == shipped.read_bytes()


def test_class_names():
    assert fashion_mnist.class_names == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert mnist.class_names == [str(d) for d in range(10)]
