"""Every script in examples/ runs in its small mode and does what its docstring says."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import pynn  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def one_thread():
    # The small runs use tiny batches, where threads only add waiting on a busy machine.
    before = pynn.get_num_threads()
    pynn.set_num_threads(1)
    yield
    pynn.set_num_threads(before)


def test_every_example_is_tested():
    tested = {"fashion_mnist_mlp", "perceptron", "regression", "autoencoder",
              "hyperparameter_search", "cross_validation", "preprocessing_pipeline"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


def test_fashion_mnist_mlp(tmp_path, capsys):
    result = load("fashion_mnist_mlp").main(small=True, out_dir=str(tmp_path))
    # 3 epochs on 1,000 images: far from the full run's ~0.89 but far above chance (0.1).
    assert result["accuracy"] > 0.5
    assert "Ankle boot" in capsys.readouterr().out
    assert sorted(Path(f).name for f in result["files"]) == [
        "confusion_matrix.png", "first_layer_weights.png", "history.png", "saliency.png"]
    for f in result["files"]:
        assert Path(f).read_bytes()[:4] == b"\x89PNG"


def test_perceptron_separates_separable_data():
    module = load("perceptron")
    result = module.main(small=True)
    assert result["accuracy"] == 1.0 and result["mistakes"][-1] == 0
    assert result["sigmoid_accuracy"] == 1.0
    # The learned line classifies every point by the sign of w.x + b, computed here in NumPy.
    x, y = module.make_separable(60, seed=0)
    w, b = result["weights"]
    assert np.array_equal((x @ w[:, 0] + b[0] >= 0).astype(int), y)


def test_regression_on_the_diabetes_data():
    result = load("regression").main(small=True)
    # Least squares explains about a third of the variance on this split; the MLP must be in
    # the same league (a broken one scores near or below 0).
    assert result["r2_linear"] > 0.25
    assert result["r2"] > 0.2


def test_autoencoder_beats_the_mean_image(tmp_path):
    result = load("autoencoder").main(small=True, out_dir=str(tmp_path))
    assert result["mse"] < 0.85 * result["baseline_mse"]
    assert Path(result["file"]).read_bytes()[:4] == b"\x89PNG"


def test_hyperparameter_search_picks_the_best_validation_score():
    result = load("hyperparameter_search").main(small=True)
    assert len(result["results"]) == 8
    best_config, best_score = max(result["results"], key=lambda r: r[1])
    assert result["validation_accuracy"] == best_score
    assert result["best"] == dict(zip(("hidden", "learning_rate", "l2"), best_config))
    assert result["test_accuracy"] > 0.5


def test_cross_validation_gives_one_score_per_fold():
    scores = load("cross_validation").main(small=True)["scores"]
    assert scores.shape == (3,)
    assert np.all(scores > 0.5)


def test_preprocessing_pipeline():
    result = load("preprocessing_pipeline").main(small=True)
    assert result["dropped"] > 0                      # the injected data-entry errors
    assert result["n_features"] == 4 + 4 + 3          # numeric + one-hot district + heating
    assert result["r2"] > 0.4
