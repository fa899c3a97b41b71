"""Keras 3's metric classes in pynn.metrics: each against Keras itself (torch backend) on the
same random batches (several updates, with and without sample weights, then reset), Keras's
documented values, and their use in compile by object and by name."""
import numpy as np
import pytest

import pynn
from pynn import metrics as M

# float32 state on both sides, accumulated in different orders over a few hundred values
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _batches(kind, seed, n_batches=3, n=20, k=5):
    """Batches of (y_true, y_pred, sample_weight) for a kind of metric."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        w = rng.random(n).astype(np.float32)
        logits = rng.normal(size=(n, k)).astype(np.float32) * 2
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        labels = rng.integers(0, k, n)
        if kind == "binary":
            t = (rng.random((n, 1)) > 0.5).astype(np.float32)
            # scores on a grid so that some sit exactly on thresholds (0.5, i/199)
            p = np.round(rng.random((n, 1)) * 20) / 20
            out.append((t, p.astype(np.float32), w))
        elif kind == "multilabel":
            t = (rng.random((n, k)) > 0.5).astype(np.float32)
            out.append((t, rng.random((n, k)).astype(np.float32), w))
        elif kind == "onehot":
            out.append((np.eye(k, dtype=np.float32)[labels], probs, w))
        elif kind == "sparse":
            out.append((labels, probs, w))
        elif kind == "sparse_col":
            out.append((labels[:, None], probs, w))
        elif kind == "exact":
            t = rng.integers(0, 3, (n, 2)).astype(np.float32)
            out.append((t, rng.integers(0, 3, (n, 2)).astype(np.float32), w))
        elif kind == "regression":
            t = rng.normal(size=(n, 3)).astype(np.float32)
            out.append((t, (t + rng.normal(size=(n, 3)) * 0.5).astype(np.float32), w))
        elif kind == "positive":
            t = rng.random((n, 3)).astype(np.float32) * 3
            out.append((t, rng.random((n, 3)).astype(np.float32) * 3, w))
        elif kind == "sign":
            t = np.where(rng.random((n, 3)) > 0.5, 1.0, -1.0).astype(np.float32)
            out.append((t, rng.normal(size=(n, 3)).astype(np.float32), w))
    return out


# (class name, constructor arguments, kind of data)
CASES = [
    ("Accuracy", {}, "exact"),
    ("BinaryAccuracy", {}, "binary"),
    ("BinaryAccuracy", {"threshold": 0.7}, "multilabel"),
    ("CategoricalAccuracy", {}, "onehot"),
    ("SparseCategoricalAccuracy", {}, "sparse"),
    ("SparseCategoricalAccuracy", {}, "sparse_col"),
    ("TopKCategoricalAccuracy", {"k": 2}, "onehot"),
    ("SparseTopKCategoricalAccuracy", {"k": 3}, "sparse"),
    ("SparseTopKCategoricalAccuracy", {}, "sparse_col"),
    ("Precision", {}, "binary"),
    ("Precision", {"thresholds": [0.2, 0.5, 0.75]}, "multilabel"),
    ("Precision", {"class_id": 2}, "onehot"),
    # evenly spaced thresholds take the bucketed path (scores on the grid hit them exactly)
    ("Precision", {"thresholds": [0.0, 0.25, 0.5, 0.75, 1.0]}, "binary"),
    ("Recall", {"thresholds": [0.0, 0.25, 0.5, 0.75, 1.0]}, "binary"),
    ("Precision", {"top_k": 2}, "multilabel"),
    ("Recall", {}, "binary"),
    ("Recall", {"thresholds": [0.1, 0.9]}, "multilabel"),
    ("Recall", {"class_id": 1, "top_k": 2}, "onehot"),
    ("TruePositives", {}, "binary"),
    ("FalsePositives", {"thresholds": [0.3, 0.6]}, "multilabel"),
    ("TrueNegatives", {}, "multilabel"),
    ("FalseNegatives", {"thresholds": [0.25, 0.5, 0.75]}, "binary"),
    ("AUC", {}, "binary"),
    ("AUC", {}, "multilabel"),
    ("AUC", {"curve": "PR"}, "binary"),
    ("AUC", {"curve": "PR"}, "multilabel"),
    ("AUC", {"num_thresholds": 7, "summation_method": "minoring"}, "multilabel"),
    ("AUC", {"curve": "PR", "summation_method": "majoring"}, "multilabel"),
    ("AUC", {"multi_label": True}, "multilabel"),
    ("AUC", {"multi_label": True, "curve": "PR", "label_weights": [1, 2, 0, 1, 3]},
     "multilabel"),
    ("AUC", {"thresholds": [0.1, 0.35, 0.8]}, "multilabel"),
    ("AUC", {"from_logits": True}, "regression"),
    ("PrecisionAtRecall", {"recall": 0.6}, "multilabel"),
    ("PrecisionAtRecall", {"recall": 0.8, "num_thresholds": 1}, "binary"),
    ("RecallAtPrecision", {"precision": 0.5}, "multilabel"),
    ("RecallAtPrecision", {"precision": 0.4, "class_id": 0, "num_thresholds": 50}, "onehot"),
    ("SensitivityAtSpecificity", {"specificity": 0.5}, "multilabel"),
    ("SpecificityAtSensitivity", {"sensitivity": 0.5}, "binary"),
    ("F1Score", {}, "onehot"),
    ("F1Score", {"average": "macro"}, "onehot"),
    ("F1Score", {"average": "weighted", "threshold": 0.4}, "multilabel"),
    ("FBetaScore", {"average": "micro", "beta": 2.0}, "multilabel"),
    ("FBetaScore", {"beta": 0.5, "threshold": 0.5}, "multilabel"),
    ("MeanSquaredError", {}, "regression"),
    ("RootMeanSquaredError", {}, "regression"),
    ("MeanAbsoluteError", {}, "regression"),
    ("MeanAbsolutePercentageError", {}, "regression"),
    ("MeanSquaredLogarithmicError", {}, "positive"),
    ("LogCoshError", {}, "regression"),
    ("R2Score", {}, "regression"),
    ("R2Score", {"class_aggregation": "variance_weighted_average"}, "regression"),
    ("R2Score", {"class_aggregation": None}, "regression"),
    ("R2Score", {"num_regressors": 2}, "regression"),
    ("CosineSimilarity", {}, "regression"),
    ("BinaryCrossentropy", {}, "multilabel"),
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "sign"),
    ("CategoricalCrossentropy", {}, "onehot"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.2}, "onehot"),
    ("SparseCategoricalCrossentropy", {}, "sparse"),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "sparse"),
    ("KLDivergence", {}, "multilabel"),
    ("Poisson", {}, "positive"),
    ("Hinge", {}, "sign"),
    ("SquaredHinge", {}, "multilabel"),
    ("CategoricalHinge", {}, "onehot"),
]


def _run(metric, batches, weighted):
    for t, p, w in batches:
        metric.update_state(t, p, sample_weight=w if weighted else None)
    return np.asarray(metric.result(), dtype=np.float64)


@pytest.mark.parametrize("name,kwargs,kind", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_metric_matches_keras(keras, name, kwargs, kind):
    batches = _batches(kind, seed=len(name) * 31 + len(kwargs))
    ours = getattr(M, name)(**kwargs)
    for weighted in (False, True):
        theirs = getattr(keras.metrics, name)(**kwargs)
        want = np.asarray(_run(theirs, batches, weighted))
        got = _run(ours, batches, weighted)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{name} {kwargs} weighted={weighted}")
        ours.reset_state()
        assert name == "R2Score" or np.all(np.asarray(ours.result()) == 0)
    # the config round-trips (Keras's keys, the same object back)
    again = M.deserialize(M.serialize(ours))
    assert type(again) is type(ours) and again.get_config() == ours.get_config()
    assert ours.dtype == "float32" and isinstance(ours.name, str)


def test_mean_sum_and_wrapper_match_keras(keras):
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(6, 3)).astype(np.float32) for _ in range(3)]
    weights = [rng.random(6).astype(np.float32) for _ in range(3)]
    for cls in ("Mean", "Sum"):
        for with_w in (False, True):
            ours, theirs = getattr(M, cls)(), getattr(keras.metrics, cls)()
            for v, w in zip(values, weights):
                ours.update_state(v, sample_weight=w if with_w else None)
                theirs.update_state(v, sample_weight=w if with_w else None)
            np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=RTOL)

    def error(y_true, y_pred):
        return np.abs(y_true - y_pred) * 2

    ours = M.MeanMetricWrapper(error, name="twice")
    theirs = keras.metrics.MeanMetricWrapper(error, name="twice")
    for v, w in zip(values, weights):
        ours.update_state(v, v[::-1], sample_weight=w)
        theirs.update_state(v, v[::-1], sample_weight=w)
    np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=RTOL)
    assert ours.name == "twice"


def test_documented_values():
    # the examples in Keras's docstrings
    m = M.Mean()
    m.update_state([1, 3, 5, 7])
    assert m.result() == 4.0
    m.reset_state()
    m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    assert m.result() == 2.0
    m = M.Sum()
    m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    assert m.result() == 4.0
    m = M.Accuracy()
    m.update_state([[1], [2], [3], [4]], [[0], [2], [3], [4]])
    assert m.result() == 0.75
    m = M.BinaryAccuracy()
    m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]])
    assert m.result() == 0.75
    m = M.CategoricalAccuracy()
    m.update_state([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]],
                   sample_weight=[0.7, 0.3])
    assert m.result() == pytest.approx(0.3)
    m = M.SparseCategoricalAccuracy()
    m.update_state([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]])
    assert m.result() == 0.5
    m = M.TopKCategoricalAccuracy(k=1)
    m.update_state([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]])
    assert m.result() == 0.5
    m = M.Precision()
    m.update_state([0, 1, 1, 1], [1, 0, 1, 1], sample_weight=[0, 0, 1, 0])
    assert m.result() == 1.0
    m = M.Precision(top_k=2)
    m.update_state([0, 0, 1, 1], [1, 1, 1, 1])
    assert m.result() == 0.0
    m = M.Precision(top_k=4)
    m.update_state([0, 0, 1, 1], [1, 1, 1, 1])
    assert m.result() == 0.5
    m = M.Recall()
    m.update_state([0, 1, 1, 1], [1, 0, 1, 1], sample_weight=[0, 0, 1, 0])
    assert m.result() == 1.0
    m = M.AUC(num_thresholds=3)
    m.update_state([0, 0, 1, 1], [0, 0.5, 0.3, 0.9])
    assert m.result() == pytest.approx(0.75)
    m = M.TruePositives()
    m.update_state([0, 1, 1, 1], [1, 0, 1, 1], sample_weight=[0, 0, 1, 0])
    assert m.result() == 1.0
    m = M.PrecisionAtRecall(0.5)
    m.update_state([0, 0, 0, 1, 1], [0, 0.3, 0.8, 0.3, 0.8], sample_weight=[2, 2, 2, 1, 1])
    assert m.result() == pytest.approx(0.33333333)
    m = M.RecallAtPrecision(0.8)
    m.update_state([0, 0, 1, 1], [0, 0.5, 0.3, 0.9], sample_weight=[1, 0, 0, 1])
    assert m.result() == 1.0
    m = M.RootMeanSquaredError()
    m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]], sample_weight=[1, 0])
    assert m.result() == pytest.approx(0.70710677)
    m = M.MeanAbsolutePercentageError()
    m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])
    assert m.result() == pytest.approx(250000000.0)
    m = M.R2Score()
    m.update_state([[1], [4], [3]], [[2], [4], [4]])
    assert m.result() == pytest.approx(0.57142854)
    m = M.CosineSimilarity(axis=1)
    m.update_state([[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]])
    assert m.result() == pytest.approx(0.5)
    m = M.F1Score(threshold=0.5)
    m.update_state(np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]], np.int32),
                   np.array([[0.2, 0.6, 0.7], [0.2, 0.6, 0.6], [0.6, 0.8, 0.0]], np.float32))
    np.testing.assert_allclose(m.result(), [0.5, 0.8, 0.6666667], rtol=1e-6)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match=r"thresholds: expected numbers in \[0, 1\]"):
        M.Precision(thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match="top_k: expected a positive integer"):
        M.Recall(top_k=0)
    with pytest.raises(ValueError, match="curve: expected 'ROC' or 'PR'"):
        M.AUC(curve="XY")
    with pytest.raises(ValueError, match="summation_method: expected one of"):
        M.AUC(summation_method="simpson")
    with pytest.raises(ValueError, match="num_thresholds: expected an integer >= 2"):
        M.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match=r"recall: expected a number in \[0, 1\]"):
        M.PrecisionAtRecall(1.5)
    with pytest.raises(ValueError, match="average: expected one of"):
        M.F1Score(average="samples")
    with pytest.raises(ValueError, match="F1Score: expected 2-D y_true and y_pred"):
        M.F1Score().update_state([1, 0], [0.2, 0.8])
    with pytest.raises(ValueError, match="class_id: 7 is out of range for 5 classes"):
        M.Precision(class_id=7).update_state(np.eye(5), np.eye(5))
    with pytest.raises(ValueError, match="metric: unknown name 'precission'"):
        M.get("precission")


# --- in compile ------------------------------------------------------------------------------
def _data(seed=0, n=96):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    labels = x[:, :3].argmax(1)
    return x, labels


def _model(units, activation):
    pynn.utils.set_random_seed(3)
    return pynn.Sequential([pynn.Input((6,)), pynn.layers.Dense(8, activation="relu"),
                            pynn.layers.Dense(units, activation=activation)])


def test_compile_by_object_and_name_gives_keras_values(keras):
    x, labels = _data()
    y = np.eye(3, dtype=np.float32)[labels]
    model = _model(3, "softmax")
    objects = [M.Precision(name="prec"), M.AUC(name="auc_obj"), M.F1Score(average="macro"),
               M.TopKCategoricalAccuracy(k=2, name="top2")]
    names = ["mse", "mae", "mape", "msle", "root_mean_squared_error", "binary_crossentropy",
             "AUC", "Precision", "Recall", "categorical_crossentropy", "kl_divergence",
             "cosine_similarity"]
    model.compile("adam", loss="categorical_crossentropy", metrics=objects + names)
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    for key, metric in [(m.name, type(m)(**{k: v for k, v in m.get_config().items()
                                             if k not in ("name", "dtype")}))
                        for m in objects] + [(n, keras.metrics.get(n)) for n in names]:
        if not isinstance(metric, M.Metric):
            ref = metric
        else:
            ref = getattr(keras.metrics, type(metric).__name__)(
                **{k: v for k, v in metric.get_config().items() if k not in ("name", "dtype")})
        if not hasattr(ref, "update_state"):
            ref = keras.metrics.MeanMetricWrapper(ref)
        for start in range(0, len(x), 32):   # evaluate's batches
            ref.update_state(y[start:start + 32], pred[start:start + 32])
        np.testing.assert_allclose(logs[key], np.asarray(ref.result()), rtol=2e-5, atol=1e-6,
                                   err_msg=key)


def test_mse_is_reported_under_a_cross_entropy_loss(keras):
    # the case: metrics=["mse"] read 0.0 whenever the loss was a cross-entropy
    x, labels = _data(1)
    y = (labels == 0).astype(np.float32)[:, None]
    model = _model(1, "sigmoid")
    model.compile("sgd", loss="binary_crossentropy", metrics=["accuracy", "mse", "mae"])
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert all(v > 0 for v in history.history["mse"])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    assert logs["mse"] == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-5)
    assert logs["mae"] == pytest.approx(float(np.mean(np.abs(pred - y))), rel=1e-5)
    # accuracy still comes from the engine's count
    assert logs["accuracy"] == pytest.approx(float(np.mean((pred > 0.5) == y)))


def test_sparse_labels_with_keras_metric_names():
    x, labels = _data(2)
    model = _model(3, "softmax")
    model.compile("adam", loss="sparse_categorical_crossentropy",
                  metrics=["sparse_top_k_categorical_accuracy",
                           M.SparseTopKCategoricalAccuracy(k=1, name="top1"), "accuracy",
                           M.SparseCategoricalAccuracy])   # a class: its default instance
    logs = model.evaluate(x, labels, verbose=0, return_dict=True)
    assert logs["sparse_categorical_accuracy"] == pytest.approx(logs["accuracy"])
    assert logs["sparse_top_k_categorical_accuracy"] == 1.0   # k=5 > 3 classes
    pred = model.predict(x, verbose=0)
    # top-1 counts ties with the best score as hits (Keras's in_top_k)
    hits = pred[np.arange(len(x)), labels] >= pred.max(axis=1)
    assert logs["top1"] == pytest.approx(float(np.mean(hits)))


def test_metric_objects_reset_between_passes_and_survive_saving(tmp_path):
    x, labels = _data(3)
    y = (labels == 1).astype(np.float32)[:, None]
    model = _model(1, "sigmoid")
    model.compile("adam", loss="binary_crossentropy",
                  metrics=[M.AUC(num_thresholds=50, name="auc50"), M.Recall(thresholds=0.3),
                           "Precision"])
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.25)
    assert set(history.history) >= {"auc50", "recall", "Precision", "val_auc50"}
    first = model.evaluate(x, y, verbose=0, return_dict=True)
    assert model.evaluate(x, y, verbose=0, return_dict=True) == first   # reset, not summed
    path = tmp_path / "m.safetensors"
    model.save(path)
    again = pynn.models.load_model(path)
    assert again.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(first)


def test_vector_results_are_logged_as_arrays():
    x, labels = _data(4)
    y = np.eye(3, dtype=np.float32)[labels]
    model = _model(3, "softmax")
    model.compile("adam", loss="categorical_crossentropy",
                  metrics=[M.F1Score(), M.Precision(thresholds=[0.2, 0.5])])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert np.shape(logs["f1_score"]) == (3,) and np.shape(logs["precision"]) == (2,)


def test_weighted_metrics_use_the_sample_weights(keras):
    x, labels = _data(5)
    y = np.eye(3, dtype=np.float32)[labels]
    w = np.random.default_rng(5).random(len(x)).astype(np.float32)
    model = _model(3, "softmax")
    model.compile("adam", loss="categorical_crossentropy", metrics=["accuracy", "mse"],
                  weighted_metrics=["accuracy", "mse", M.AUC(name="wauc")])
    logs = model.evaluate(x, y, sample_weight=w, batch_size=32, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy", "mse", "weighted_accuracy", "weighted_mse", "wauc"}
    pred = model.predict(x, verbose=0)
    for key, ref in (("weighted_accuracy", keras.metrics.CategoricalAccuracy()),
                     ("weighted_mse", keras.metrics.MeanSquaredError()),
                     ("wauc", keras.metrics.AUC())):
        for start in range(0, len(x), 32):
            ref.update_state(y[start:start + 32], pred[start:start + 32],
                             sample_weight=w[start:start + 32])
        np.testing.assert_allclose(logs[key], np.asarray(ref.result()), rtol=2e-5, err_msg=key)
    # unweighted twins ignore the weights
    assert logs["accuracy"] == pytest.approx(float(np.mean(pred.argmax(1) == labels)))
    # fit passes class weights to them too, and the compile config keeps them
    history = model.fit(x, y, class_weight={0: 1.0, 1: 0.0, 2: 0.0}, epochs=1, verbose=0)
    assert "weighted_accuracy" in history.history
    assert model.get_compile_config()["weighted_metrics"][:2] == ["accuracy", "mse"]


def test_one_element_results_are_logged_as_numbers():
    # F1Score on one sigmoid unit has a (1,) result: logged as a number
    x, labels = _data(6)
    y = (labels == 2).astype(np.float32)[:, None]
    model = _model(1, "sigmoid")
    model.compile("adam", loss="binary_crossentropy", metrics=[M.F1Score(threshold=0.5)])
    history = model.fit(x, y, epochs=1, verbose=0)
    assert isinstance(history.history["f1_score"][0], float)
