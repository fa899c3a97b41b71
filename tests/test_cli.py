"""The `pynn` command line: train / evaluate / predict / info, in-process and as `python -m pynn`.

Training runs on the Fashion-MNIST subset shipped with pynn (with the full set hidden, so the
fallback path is what runs) for one epoch, and on small CSV files written here.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest

import pynn
from pynn import cli
from pynn.datasets import _common, fashion_mnist

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny networks gain nothing from threads, and on a busy machine waiting for workers costs
    # more than the work; restore the caller's setting afterwards.
    before = pynn.get_num_threads()
    pynn.set_num_threads(1)
    yield
    pynn.set_num_threads(before)


def offline_without_full_set(mp, tmp):
    """No system directory, an empty cache and no network: only the shipped subset is left."""
    mp.setenv("PYNN_DATA", str(tmp / "empty-cache"))
    mp.setattr(fashion_mnist, "SPEC", dataclasses.replace(fashion_mnist.SPEC, system_dirs=()))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    mp.setattr(_common, "_urlopen", no_network)


def run_main(args, capsys):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_module(args, **kwargs):
    """`python -m pynn ...` from the tests folder (the repository root has no compiled core)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "pynn", *[str(a) for a in args]],
                          cwd=TESTS_DIR, capture_output=True, text=True, env=env, timeout=120,
                          **kwargs)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def accuracy_in(text):
    match = re.search(r"test accuracy: ([0-9.]+)", text)
    assert match, text
    return float(match.group(1))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of the default command on the shipped subset: (output folder, stdout, stderr)."""
    tmp = tmp_path_factory.mktemp("train")
    before = pynn.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        offline_without_full_set(mp, tmp)
        out_dir = tmp / "out"
        from io import StringIO
        out, err = StringIO(), StringIO()
        mp.setattr(sys, "stdout", out)
        mp.setattr(sys, "stderr", err)
        code = cli.main(["--epochs", "1", "--output", str(out_dir), "--threads", "1",
                         "--verbose", "2"])
    pynn.set_num_threads(before)
    assert code == 0, err.getvalue()
    return out_dir, out.getvalue(), err.getvalue()


def subset_test_images():
    _, (x_test, y_test) = fashion_mnist.load_subset()
    return x_test, y_test


# ---------------------------------------------------------------------------------------------
# train on images

def test_train_falls_back_to_the_subset_and_says_so(trained):
    _, out, err = trained
    assert "subset" in err and "apt-get install dataset-fashion-mnist" in err
    assert "shipped Fashion-MNIST subset" in out


def test_train_reports_accuracy_per_class_and_epoch_time(trained):
    _, out, _ = trained
    # fit's progress line: 2700 training images (10% held out) in batches of 128.
    assert re.search(r"^22/22 - .*accuracy.*val_accuracy", out, re.M)
    for name in fashion_mnist.class_names:
        assert re.search(rf"^\s*{re.escape(name)}\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+100$", out,
                         re.M), name
    assert re.search(r"time per epoch: [0-9.]+ m?s", out)


def test_train_saves_a_model_that_reproduces_the_reported_accuracy(trained):
    out_dir, out, _ = trained
    model = pynn.load_model(out_dir / "model.safetensors")
    x_test, y_test = subset_test_images()
    pred = np.argmax(model.predict(x_test.astype(np.float32) / 255.0, verbose=0), axis=1)
    # The printed accuracy has 4 decimals; on 1000 images it is exact.
    assert accuracy_in(out) == pytest.approx(np.mean(pred == y_test), abs=5e-5)
    # One epoch on 2700 images is far from converged but far above chance (0.1).
    assert np.mean(pred == y_test) > 0.5


def test_train_writes_plots_and_preprocessing(trained):
    out_dir, _, _ = trained
    for name in ("training_curves.png", "confusion_matrix.png"):
        data = (out_dir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    prep = json.loads((out_dir / "preprocessing.json").read_text())
    assert prep["kind"] == "images" and prep["class_names"] == fashion_mnist.class_names
    assert prep["scale"] == pytest.approx(1 / 255)


def test_evaluate_in_process_on_the_subset(trained, tmp_path, monkeypatch, capsys):
    out_dir, out, _ = trained
    offline_without_full_set(monkeypatch, tmp_path)
    code, eval_out, _ = run_main(["evaluate", out_dir / "model.safetensors", "fashion_mnist"],
                                 capsys)
    assert code == 0
    assert accuracy_in(eval_out) == accuracy_in(out)
    assert "Ankle boot" in eval_out


def test_predict_raw_images_from_npy(trained, tmp_path, capsys):
    out_dir, _, _ = trained
    x_test, _ = subset_test_images()
    np.save(tmp_path / "images.npy", x_test[:7])          # raw uint8 pixels, as trained on
    code, out, _ = run_main(["predict", out_dir, tmp_path / "images.npy"], capsys)
    assert code == 0
    model = pynn.load_model(out_dir / "model.safetensors")
    expected = np.argmax(model.predict(x_test[:7] / 255.0, verbose=0), axis=1)
    assert out.split("\n")[:7] == [fashion_mnist.class_names[c] for c in expected]

    code, _, _ = run_main(["predict", out_dir / "model.safetensors", tmp_path / "images.npy",
                           "--output", tmp_path / "pred.npy"], capsys)
    assert code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), expected)


def test_info_as_a_module(trained):
    out_dir, _, _ = trained
    result = run_module(["info", out_dir / "model.safetensors"])
    assert result.returncode == 0, result.stderr
    size_kib = (out_dir / "model.safetensors").stat().st_size / 1024
    assert re.search(rf"\({size_kib / 1024:.1f} MiB\)|\({size_kib:.1f} KiB\)", result.stdout)
    # (the layer's number depends on how many Dense layers the process made before)
    assert re.search(r"dense(_\d+)? \(Dense\)", result.stdout)
    for text in ("235,146", "Adam", "sparse_categorical_crossentropy", "fashion_mnist images"):
        assert text in result.stdout


def test_predict_as_a_module_writes_a_csv(trained, tmp_path):
    out_dir, _, _ = trained
    x_test, _ = subset_test_images()
    np.save(tmp_path / "images.npy", x_test[:3])
    result = run_module(["predict", out_dir / "model.safetensors", tmp_path / "images.npy",
                         "--output", tmp_path / "pred.csv"])
    assert result.returncode == 0, result.stderr
    rows = read_rows(tmp_path / "pred.csv")
    assert rows[0][0] == "prediction" and len(rows[0]) == 11 and len(rows) == 4
    for row in rows[1:]:
        probs = np.array(row[1:], dtype=float)
        assert probs.sum() == pytest.approx(1.0, abs=1e-4)  # 10 values printed to 6 decimals
        assert row[0] == fashion_mnist.class_names[int(np.argmax(probs))]


# ---------------------------------------------------------------------------------------------
# CSV data

def write_table(path, n=300, seed=0, regression=False):
    """An id column, two numeric columns (one with missing cells), a categorical one, and a
    target: a text class decided by colour and size, or a numeric linear function."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "size", "weight", "colour", "kind", "price"])
        for i in range(n):
            size = rng.uniform(0, 10)
            weight = rng.normal(50, 10)
            colour = rng.choice(["red", "green", "blue"])
            kind = "big" if size + (3 if colour == "red" else 0) > 6 else "small"
            price = 2.0 * size + 0.1 * weight + (5.0 if colour == "blue" else 0.0)
            w.writerow([f"item{i}", f"{size:.3f}", "" if i % 25 == 0 else f"{weight:.2f}",
                        colour, kind, f"{price:.3f}"])


def test_train_csv_classification_with_categorical_columns(tmp_path, capsys):
    write_table(tmp_path / "t.csv")
    code, out, err = run_main(["train", "--data", tmp_path / "t.csv", "--target", "kind",
                               "--output", tmp_path / "o", "--hidden", "16", "--verbose", "0",
                               "--no-plots"], capsys)
    assert code == 0, err
    assert "ignoring identifier-like column(s) id" in err
    assert re.search(r"^\s*big\s", out, re.M) and re.search(r"^\s*small\s", out, re.M)
    # The rule is learnable (a threshold on size shifted by one colour): well above the
    # majority-class rate (~0.55).
    assert accuracy_in(out) >= 0.85
    prep = json.loads((tmp_path / "o" / "preprocessing.json").read_text())
    cols = {c["name"]: c for c in prep["columns"]}
    assert set(cols) == {"size", "weight", "colour", "price"}
    assert cols["colour"] == {"name": "colour", "type": "categorical",
                              "categories": ["blue", "green", "red"]}
    assert cols["size"]["type"] == "numeric" and prep["task"] == "classification"
    assert prep["class_names"] == ["big", "small"]

    # evaluate and predict read the same raw CSV through the saved preprocessing.
    code, out, _ = run_main(["evaluate", tmp_path / "o" / "model.safetensors",
                             tmp_path / "t.csv"], capsys)
    assert code == 0 and accuracy_in(out) >= 0.85
    code, out, _ = run_main(["predict", tmp_path / "o" / "model.safetensors",
                             tmp_path / "t.csv"], capsys)
    assert code == 0
    header, *rows = read_rows(tmp_path / "t.csv")
    truth = [r[header.index("kind")] for r in rows]
    predicted = out.split()
    assert len(predicted) == len(truth)
    assert np.mean(np.array(predicted) == np.array(truth)) >= 0.85


def test_train_csv_regression_as_a_module(tmp_path):
    write_table(tmp_path / "t.csv", n=200)
    result = run_module(["train", "--data", tmp_path / "t.csv", "--target", "price",
                         "--output", tmp_path / "o", "--hidden", "16", "--epochs", "60",
                         "--no-plots"])
    assert result.returncode == 0, result.stderr
    match = re.search(r"R\^2 (-?[0-9.]+)", result.stdout)
    assert match, result.stdout
    # price is linear in the inputs; a variance-explained of 0.9 is well short of what the
    # network reaches and far above the 0 of predicting the mean.
    assert float(match.group(1)) > 0.9
    prep = json.loads((tmp_path / "o" / "preprocessing.json").read_text())
    assert prep["task"] == "regression" and "kind" in {c["name"] for c in prep["columns"]}


def test_fit_table_statistics_and_encoding():
    header = ["a", "b", "c", "y"]
    rows = [["1", "x", "", "p"], ["3", "y", "2.5", "q"], ["5", "x", "4.5", "p"],
            ["NA", "z", "3.5", "q"]]
    prep = cli.fit_table(header, rows, "y")
    a, b, c = prep["columns"]
    assert a["type"] == "numeric" and a["mean"] == pytest.approx(3.0)
    assert a["std"] == pytest.approx(np.std([1.0, 3.0, 5.0]))
    assert b == {"name": "b", "type": "categorical", "categories": ["x", "y", "z"]}
    x = cli.table_features(prep, header, [["5", "w", "?", "q"]], "test")
    # a standardised; b unseen -> all zeros; c missing -> the mean -> 0.
    np.testing.assert_allclose(x, [[(5 - 3) / np.std([1.0, 3, 5]), 0, 0, 0, 0]], rtol=1e-6)
    assert cli.table_targets(prep, header, rows, "t").tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("values, task", [
    (["1", "2", "1", "3"], "classification"),             # few integers: class labels
    ([str(v / 7) for v in range(40)], "regression"),      # many distinct reals
    ([str(v) for v in range(40)], "regression"),          # many distinct integers
    (["cat", "dog", "cat", "dog"], "classification"),
])
def test_target_kind_is_inferred(values, task):
    rows = [[str(i), v] for i, v in enumerate(values)]
    assert cli.fit_table(["f", "t"], rows, "t")["task"] == task


# ---------------------------------------------------------------------------------------------
# errors: one line on stderr, exit status 2, no traceback

def assert_clean_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pynn: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("args, fragment", [
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--hidden", "64,x"], "--hidden"),
    (["train", "--learning-rate", "-1"], "--learning-rate"),
    (["train", "--validation-split", "1.5"], "--validation-split"),
    (["train", "--activation", "nope"], "--activation"),
    (["train", "--data", "cifar"], "--data"),
    (["frobnicate"], "frobnicate"),
    (["evaluate", "missing.safetensors", "mnist"], "missing.safetensors"),
    (["info"], "MODEL"),
])
def test_bad_arguments(args, fragment, capsys):
    code, out, err = run_main(args, capsys)
    assert_clean_error(code, err, fragment)


def test_csv_errors(tmp_path, capsys):
    write_table(tmp_path / "t.csv", n=20)
    code, _, err = run_main(["train", "--data", tmp_path / "t.csv"], capsys)
    assert_clean_error(code, err, "--target")
    code, _, err = run_main(["train", "--data", tmp_path / "t.csv", "--target", "nope"], capsys)
    assert_clean_error(code, err, "nope", "colour")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3\n")
    code, _, err = run_main(["train", "--data", tmp_path / "ragged.csv", "--target", "b"],
                            capsys)
    assert_clean_error(code, err, "row 2")


def test_corrupt_and_missing_files_as_a_module(trained, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(os.urandom(64))
    for args, fragment in ((["info", bad], "bad.safetensors"),
                           (["info", tmp_path / "none.safetensors"], "no such model file"),
                           (["predict", trained[0] / "model.safetensors",
                             tmp_path / "none.npy"], "none.npy")):
        result = run_module(args)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert_clean_error(result.returncode, result.stderr, fragment)


def test_predict_one_image(trained, tmp_path, capsys):
    x_test, _ = subset_test_images()
    np.save(tmp_path / "one.npy", x_test[5])             # (28, 28): a single sample
    code, out, _ = run_main(["predict", trained[0], tmp_path / "one.npy"], capsys)
    model = pynn.load_model(trained[0] / "model.safetensors")
    expected = int(np.argmax(model.predict(x_test[5:6] / 255.0, verbose=0)))
    assert code == 0 and out.split("\n") == [fashion_mnist.class_names[expected], ""]


def test_predict_rejects_wrong_shapes(trained, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((3, 5)))
    code, _, err = run_main(["predict", trained[0], tmp_path / "x.npy"], capsys)
    assert_clean_error(code, err, "784")


def test_help_and_version(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0 and "train" in out and "predict" in out
    code, out, _ = run_main(["train", "--help"], capsys)
    assert code == 0 and "--hidden" in out and "--validation-split" in out
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0 and pynn.__version__ in out
