"""pynn.sklearn: scikit-learn's own estimator checks, pipelines, model selection with worker
processes, accuracy on real data sets, pickling and seeding."""
import os
import pickle
import random
import threading

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.model_selection import (
    GridSearchCV,
    RandomizedSearchCV,
    StratifiedKFold,
    cross_val_score,
    train_test_split,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import pynn
from pynn import _random
from pynn.sklearn import PynnClassifier, PynnRegressor

# Small networks and few epochs keep the model-selection tests quick; the accuracy tests use
# the defaults.
FAST = dict(hidden_layer_sizes=(16,), epochs=30, random_state=0)


def _expected_failed_checks(estimator):
    return {
        # The check fits once with integer weights and once with the rows repeated, and wants
        # the same model to 1e-7. Mini-batch training cannot give that: repeating rows changes
        # the batches, their number per epoch and the held-out validation set. scikit-learn's
        # own MLPClassifier/MLPRegressor pass it only with solver="lbfgs" (full batch).
        # What weights do mean here is tested in test_sample_weight_shifts_the_decision.
        "check_sample_weight_equivalence_on_dense_data":
            "mini-batch training is not invariant to repeating samples",
    }


@parametrize_with_checks([
    PynnClassifier(),
    PynnRegressor(),
    # Other code paths: no early stopping, "auto" batches, dropout, two hidden layers, other
    # optimizers and activations, no hidden layer at all (logistic regression).
    PynnClassifier(hidden_layer_sizes=(32, 16), dropout=0.1, batch_size="auto",
                   early_stopping=False),
    PynnClassifier(hidden_layer_sizes=(), alpha=0.0),
    PynnRegressor(activation="tanh", optimizer="rmsprop", batch_size=8, dropout=0.1),
], expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check, monkeypatch):
    # check_array_api_input (NumPy namespace, dispatch on) skips itself unless this variable
    # is set; set it so that check runs too instead of being skipped.
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)


# --- accuracy on real data, with scaling -----------------------------------------------------
@pytest.mark.parametrize("loader", [load_iris, load_breast_cancer])
def test_classifier_accuracy_on_real_data(loader):
    X, y = loader(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    clf = make_pipeline(StandardScaler(), PynnClassifier(random_state=0)).fit(X_tr, y_tr)
    assert clf.score(X_te, y_te) >= 0.9
    proba = clf.predict_proba(X_te)
    assert proba.shape == (len(y_te), np.unique(y).size)
    # float32 network outputs, renormalised in float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


def test_regressor_on_diabetes():
    X, y = load_diabetes(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0)
    reg = make_pipeline(StandardScaler(), PynnRegressor(random_state=0)).fit(X_tr, y_tr)
    assert reg.score(X_te, y_te) > 0.3
    assert reg.predict(X_te).shape == y_te.shape


def test_regressor_multi_output():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    # Two targets on very different scales: both must be learnt (targets are standardised).
    Y = np.column_stack([X @ [1.0, -2.0, 0.5, 0.0], 1000.0 * X[:, 3] + 5000.0])
    reg = PynnRegressor(hidden_layer_sizes=(32,), random_state=0).fit(X[:200], Y[:200])
    pred = reg.predict(X[200:])
    assert pred.shape == (100, 2)
    for j in range(2):
        resid = np.sum((pred[:, j] - Y[200:, j]) ** 2)
        total = np.sum((Y[200:, j] - Y[200:, j].mean()) ** 2)
        assert 1 - resid / total > 0.9, j
    assert reg.model_.output_shape == (None, 2)


# --- labels, outputs, attributes -------------------------------------------------------------
def test_string_labels_binary_and_multiclass():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = PynnClassifier(random_state=0).fit(X, names)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert clf.predict(X).dtype == names.dtype
    assert clf.score(X, names) > 0.9
    assert clf.model_.layers[-1].units == 3

    binary = np.where(y == 0, "yes", "no")
    clf2 = PynnClassifier(random_state=0).fit(X, binary)
    assert list(clf2.classes_) == ["no", "yes"]
    assert clf2.model_.layers[-1].units == 1  # one sigmoid unit for two classes
    assert clf2.model_.layers[-1].activation == "sigmoid"
    proba = clf2.predict_proba(X)
    assert proba.shape == (150, 2)
    np.testing.assert_array_equal(clf2.predict(X), clf2.classes_[(proba[:, 1] > 0.5) * 1])
    assert clf2.score(X, binary) > 0.95
    np.testing.assert_allclose(np.exp(clf2.predict_log_proba(X)), proba, rtol=1e-12)


def test_training_attributes_and_early_stopping():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = PynnClassifier(epochs=300, patience=3, random_state=0).fit(X, y)
    # This easy problem stops long before 300 epochs with patience 3.
    assert 1 <= clf.n_iter_ < 300
    assert len(clf.loss_curve_) == len(clf.validation_loss_curve_) == clf.n_iter_
    assert clf.best_loss_ == min(clf.validation_loss_curve_)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.n_features_in_ == 30
    assert not hasattr(clf, "feature_names_in_")  # a plain array has no column names

    full = PynnClassifier(epochs=7, early_stopping=False, random_state=0).fit(X, y)
    assert full.n_iter_ == 7 and full.validation_loss_curve_ is None
    assert full.best_loss_ == min(full.loss_curve_)


def test_network_follows_parameters():
    X, y = load_iris(return_X_y=True)
    clf = PynnClassifier(hidden_layer_sizes=(8, 5), activation="tanh", dropout=0.2,
                         optimizer="sgd", learning_rate=0.05, alpha=0.01, epochs=2,
                         batch_size="auto", random_state=0).fit(X, y)
    kinds = [(type(layer).__name__, getattr(layer, "units", None)) for layer in clf.model_.layers]
    assert kinds == [("Dense", 8), ("Dropout", None), ("Dense", 5), ("Dropout", None),
                     ("Dense", 3)]
    assert clf.model_.layers[0].activation == "tanh"
    assert clf.model_.layers[0].kernel_regularizer.l2 == pytest.approx(0.01)
    assert type(clf.model_.optimizer).__name__ == "SGD"
    assert clf.model_.optimizer.learning_rate == pytest.approx(0.05)


def test_optimizer_object_is_not_modified():
    X, y = load_iris(return_X_y=True)
    opt = pynn.optimizers.Adam(learning_rate=0.5, beta_1=0.8)
    clf = PynnClassifier(optimizer=opt, learning_rate=0.01, epochs=2, random_state=0).fit(X, y)
    assert clf.optimizer is opt and opt._net is None and opt.learning_rate == 0.5
    assert clf.model_.optimizer is not opt
    assert clf.model_.optimizer.get_config()["beta_1"] == pytest.approx(0.8)
    assert clf.model_.optimizer.learning_rate == pytest.approx(0.01)


@pytest.mark.parametrize("param, value", [
    ("hidden_layer_sizes", (10, 0)), ("hidden_layer_sizes", "wide"), ("epochs", 0),
    ("batch_size", 0), ("batch_size", "big"), ("learning_rate", 0.0), ("alpha", -1.0),
    ("dropout", 1.0), ("validation_fraction", 1.0), ("patience", -1),
    ("early_stopping", "yes"), ("random_state", -3), ("optimizer", "adamm"), ("verbose", 5),
    ("activation", "relux"),
])
def test_bad_parameters_are_reported_by_fit(param, value):
    X, y = load_iris(return_X_y=True)
    clf = PynnClassifier(**{param: value})  # stored verbatim, not checked here
    assert clf.get_params()[param] == value
    with pytest.raises(ValueError, match=param):
        clf.fit(X, y)


def test_sample_weight_shifts_the_decision():
    # Labels independent of X: an unweighted fit predicts both classes about equally; giving
    # class 1 ten times the weight makes it the prediction almost everywhere.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    y = rng.integers(0, 2, size=400)
    sw = np.where(y == 1, 10.0, 1.0)
    plain = PynnClassifier(**FAST).fit(X, y)
    weighted = PynnClassifier(**FAST).fit(X, y, sample_weight=sw)
    assert 0.2 < plain.predict(X).mean() < 0.8
    assert weighted.predict(X).mean() > 0.9


# --- pipelines ---------------------------------------------------------------------------------
def _mixed_frame(n, seed):
    """Numbers and a string category; the label needs both (the category shifts a threshold)."""
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue"], size=n)
    size = rng.normal(50.0, 10.0, size=n)  # unscaled on purpose
    weight = rng.normal(size=n)
    shift = pd.Series(color).map({"red": -15.0, "green": 0.0, "blue": 15.0}).to_numpy()
    label = np.where(size - 50.0 + shift + 5.0 * weight > 0, "big", "small")
    return pd.DataFrame({"color": color, "size": size, "weight": weight}), label


def test_column_transformer_pipeline_on_mixed_types():
    X, y = _mixed_frame(600, seed=0)
    pre = ColumnTransformer([("cat", OneHotEncoder(), ["color"]),
                             ("num", StandardScaler(), ["size", "weight"])])
    pipe = Pipeline([("pre", pre), ("net", PynnClassifier(random_state=0))])
    pipe.fit(X[:400], y[:400])
    score = pipe.score(X[400:], y[400:])
    assert score >= 0.9
    assert pipe.named_steps["net"].n_features_in_ == 5  # 3 one-hot columns + 2 numbers
    assert set(pipe.predict(X[400:])) == {"big", "small"}
    # The category matters: without it the same network does clearly worse (about 0.65 here),
    # so the score above relies on the one-hot columns reaching the network.
    numbers_only = Pipeline([("pre", ColumnTransformer([("num", StandardScaler(),
                                                         ["size", "weight"])])),
                             ("net", PynnClassifier(random_state=0))]).fit(X[:400], y[:400])
    assert numbers_only.score(X[400:], y[400:]) < score - 0.15


def test_feature_names_from_a_dataframe():
    X, y = _mixed_frame(200, seed=1)
    num = X[["size", "weight"]]
    clf = PynnClassifier(**FAST).fit(num, y)
    np.testing.assert_array_equal(clf.feature_names_in_, ["size", "weight"])
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(num[["weight", "size"]])


# --- model selection in worker processes ------------------------------------------------------
def test_grid_search_in_workers_matches_sequential():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), PynnClassifier(**FAST))
    grid = {"pynnclassifier__hidden_layer_sizes": [(4,), (16,)],
            "pynnclassifier__learning_rate": [1e-3, 1e-2]}
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    par = GridSearchCV(pipe, grid, cv=cv, n_jobs=2).fit(X, y)
    seq = GridSearchCV(pipe, grid, cv=cv, n_jobs=1).fit(X, y)
    # Seeded training is bitwise reproducible whatever the process or thread count.
    np.testing.assert_array_equal(par.cv_results_["mean_test_score"],
                                  seq.cv_results_["mean_test_score"])
    assert par.best_params_ == seq.best_params_
    assert par.best_score_ > 0.8
    assert par.score(X, y) > 0.8


def test_randomized_search_and_cross_val_score_in_workers():
    X, y = load_diabetes(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), PynnRegressor(**FAST))
    search = RandomizedSearchCV(
        pipe, {"pynnregressor__alpha": [0.0, 1e-4, 1e-3], "pynnregressor__dropout": [0.0, 0.1],
               "pynnregressor__batch_size": [16, "auto"]},
        n_iter=4, cv=3, n_jobs=2, random_state=0).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_score_ > 0.2
    par = cross_val_score(pipe, X, y, cv=3, n_jobs=2)
    seq = cross_val_score(pipe, X, y, cv=3, n_jobs=1)
    np.testing.assert_array_equal(par, seq)


def _worker_threads():
    return pynn.get_num_threads()


def test_loky_workers_limit_pynn_threads():
    # joblib starts its process workers with OMP_NUM_THREADS = cpu_count // n_jobs (or the
    # parent's value, if it has one); pynn reads it at start-up as OpenMP libraries do, so it
    # must follow that limit rather than use every core in every worker.
    expected = int(os.environ.get("OMP_NUM_THREADS", max(joblib.cpu_count() // 2, 1)))
    got = joblib.Parallel(n_jobs=2)(joblib.delayed(_worker_threads)() for _ in range(4))
    assert set(got) == {expected}


# --- pickling, cloning, seeding -----------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: PynnClassifier(dropout=0.1, **FAST),
                                  lambda: PynnRegressor(**FAST)])
def test_pickle_round_trip(make):
    X, y = load_iris(return_X_y=True)
    est = make().fit(X, y)
    before = (random.getstate(), np.random.get_state()[1].copy(), _random._state["rng"])
    restored = pickle.loads(pickle.dumps(est))
    # Rebuilding the network does not disturb the caller's random streams.
    assert random.getstate() == before[0]
    np.testing.assert_array_equal(np.random.get_state()[1], before[1])
    assert _random._state["rng"] is before[2]
    assert isinstance(restored.model_, pynn.Sequential) and restored.model_ is not est.model_
    np.testing.assert_array_equal(restored.predict(X), est.predict(X))
    for w0, w1 in zip(est.model_.get_weights(), restored.model_.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    assert restored.loss_curve_ == est.loss_curve_
    # The restored model is compiled: it can still be evaluated and refitted.
    targets = y if isinstance(est, PynnClassifier) else est.model_.predict(X, verbose=0)
    assert restored.model_.evaluate(X, targets, verbose=0) == \
        est.model_.evaluate(X, targets, verbose=0)
    np.testing.assert_array_equal(restored.fit(X, y).predict(X), est.predict(X))

    fresh = clone(est)
    assert not hasattr(fresh, "model_") and fresh.get_params() == est.get_params()


def test_pickles_of_the_earlier_layout_still_load():
    # Before models pickled themselves, the estimator stored its network as a dict of config,
    # weights by position and compile config.
    X, y = load_iris(return_X_y=True)
    est = PynnClassifier(**FAST).fit(X, y)
    state = dict(est.__getstate__())
    model = state["model_"]
    state["model_"] = {"__pynn_model__": 1, "config": model.get_config(),
                       "weights": model.get_weights(), "compile": model.get_compile_config()}
    before = _random._state["rng"].bit_generator.state
    old = PynnClassifier.__new__(PynnClassifier)
    old.__setstate__(state)
    assert _random._state["rng"].bit_generator.state == before
    assert old.model_ is not model and old.model_.compiled
    np.testing.assert_array_equal(old.predict_proba(X), est.predict_proba(X))
    # and the estimator pickles its model as the model pickles itself
    assert isinstance(pickle.loads(pickle.dumps(est)).model_, pynn.Sequential)


def test_seeded_fit_is_reproducible_and_has_no_global_side_effect():
    X, y = load_iris(return_X_y=True)
    pynn.utils.set_random_seed(123)
    np_before = np.random.get_state()[1].copy()
    py_before = random.getstate()
    pynn_before = _random._state["rng"].bit_generator.state  # pynn's stream position
    a = PynnClassifier(dropout=0.1, **FAST).fit(X, y)
    b = PynnClassifier(dropout=0.1, **FAST).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.loss_curve_ == b.loss_curve_
    np.testing.assert_array_equal(np.random.get_state()[1], np_before)
    assert random.getstate() == py_before
    assert _random._state["rng"].bit_generator.state == pynn_before

    c = PynnClassifier(dropout=0.1, **dict(FAST, random_state=1)).fit(X, y)
    assert c.loss_curve_ != a.loss_curve_


def test_unseeded_fit_follows_the_global_seed():
    X, y = load_iris(return_X_y=True)
    params = dict(FAST, random_state=None)
    pynn.utils.set_random_seed(7)
    a = PynnClassifier(**params).fit(X, y)
    pynn.utils.set_random_seed(7)
    b = PynnClassifier(**params).fit(X, y)
    c = PynnClassifier(**params).fit(X, y)  # the stream moved on
    assert a.loss_curve_ == b.loss_curve_
    assert c.loss_curve_ != a.loss_curve_


def test_concurrent_seeded_fits_in_threads_are_reproducible():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    seeds = [0, 1, 2, 3]
    expected = {s: PynnClassifier(dropout=0.1, **dict(FAST, random_state=s)).fit(X, y)
                .loss_curve_ for s in seeds}
    got = []
    errors = []

    def work(seed):
        try:
            est = PynnClassifier(dropout=0.1, **dict(FAST, random_state=seed)).fit(X, y)
            got.append((seed, est.loss_curve_))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in seeds * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(got) == 2 * len(seeds)
    for seed, curve in got:
        assert curve == expected[seed], seed
