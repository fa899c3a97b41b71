#!/usr/bin/env python3
"""Regenerates pynn/datasets/data/fashion_mnist_subset.npz from the full Fashion-MNIST.

The subset is class-balanced and deterministic: the first 300 training and the first 100 test
images of each class, in file order, kept in their original relative order. The .npz is written
with fixed zip timestamps so the same input always gives the same bytes.

    python tools/make_fashion_subset.py [--source DIR] [--out FILE]

DIR defaults to /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

TRAIN_PER_CLASS = 300
TEST_PER_CLASS = 100
NUM_CLASSES = 10


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` examples of each class, in ascending order."""
    picks = []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)[:per_class]
        if len(idx) < per_class:
            raise SystemExit(f"class {c} has only {len(idx)} examples, need {per_class}")
        picks.append(idx)
    return np.sort(np.concatenate(picks))


def write_npz(path: Path, arrays: dict) -> None:
    """np.savez_compressed, but with fixed timestamps (reproducible bytes) and atomically."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(info, data.getvalue(), compresslevel=9)
    tmp = path.with_name("." + path.name + ".part")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def main(argv=None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="/usr/share/datasets/fashion-mnist",
                    help="directory holding the four Fashion-MNIST IDX files")
    ap.add_argument("--out", default=str(root / "pynn/datasets/data/fashion_mnist_subset.npz"))
    args = ap.parse_args(argv)

    # Import from the source tree so the tool works without the compiled core installed.
    sys.path.insert(0, str(root / "pynn" / "datasets"))
    from idx import read_idx  # noqa: E402

    src = Path(args.source)
    x_train = read_idx(src / "train-images-idx3-ubyte.gz")
    y_train = read_idx(src / "train-labels-idx1-ubyte.gz")
    x_test = read_idx(src / "t10k-images-idx3-ubyte.gz")
    y_test = read_idx(src / "t10k-labels-idx1-ubyte.gz")
    tr = first_per_class(y_train, TRAIN_PER_CLASS)
    te = first_per_class(y_test, TEST_PER_CLASS)
    out = Path(args.out)
    write_npz(out, {"x_train": x_train[tr], "y_train": y_train[tr],
                    "x_test": x_test[te], "y_test": y_test[te]})
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {len(tr)} training and {len(te)} "
          f"test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
