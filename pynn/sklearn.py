"""scikit-learn estimators backed by a pynn multi-layer perceptron (``pip install pynn[sklearn]``).

`PynnClassifier` and `PynnRegressor` build a `pynn.Sequential` of Dense layers in `fit` and
behave like any scikit-learn estimator: they work in `Pipeline`, `ColumnTransformer`,
`GridSearchCV`, `cross_val_score` (with ``n_jobs``) and pass `check_estimator`.

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from pynn.sklearn import PynnClassifier

    clf = make_pipeline(StandardScaler(), PynnClassifier(hidden_layer_sizes=(64,),
                                                         random_state=0))
    clf.fit(X_train, y_train)
    clf.score(X_test, y_test)

Randomness. pynn draws initial weights, dropout masks and the shuffling order from one
process-wide stream (`pynn.utils.set_random_seed`). With an integer ``random_state``, `fit`
seeds that stream (via `set_random_seed`) for the draws it makes and then puts every global
generator it touched (pynn's, NumPy's legacy one, Python's `random`) back as it found them, so a
seeded fit is reproducible bitwise — whatever the thread count — and has no side effect on the
caller's random state. Concurrent fits in threads of one process are serialised only while they
draw (a few milliseconds), so they stay reproducible; the training itself runs in parallel.
With ``random_state=None`` the draws continue pynn's global stream, so
``pynn.utils.set_random_seed(s)`` before an unseeded fit also makes it reproducible.

Threads. Each fit runs pynn's kernels with ``pynn.get_num_threads()`` threads, which
follows ``OMP_NUM_THREADS``: joblib's process workers and Dask's nanny-spawned workers set it
(to ``cpu_count // n_jobs`` and to 1 respectively), so parallel searches do not oversubscribe.
"""
from __future__ import annotations

import math
import numbers
import os
import random
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from typing import Self

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("pynn.sklearn needs scikit-learn >= 1.6: pip install 'pynn[sklearn]'"
                      ) from exc

from pynn import _random, layers, optimizers, regularizers
from pynn.callbacks import Callback, EarlyStopping
from pynn.models import Sequential

__all__ = ["PynnClassifier", "PynnRegressor"]

# Serialises the sections that seed and draw from pynn's process-wide random stream, so two
# fits running in threads of one process cannot take each other's draws.
_RANDOM_LOCK = threading.Lock()


def _fresh_lock_in_child():
    # A fit in another thread may hold the lock when the process forks; that thread does not
    # exist in the child, so the child starts with a free lock.
    global _RANDOM_LOCK
    _RANDOM_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_in_child)


class _SeededSection:
    """Holds `_RANDOM_LOCK` with pynn's stream seeded from `seed` (or left as is for None), and
    restores every global generator on `release` (idempotent)."""

    def __init__(self, seed):
        self._seed = seed
        self._held = False

    def acquire(self) -> _SeededSection:
        _RANDOM_LOCK.acquire()
        self._held = True
        if self._seed is not None:
            self._saved = (random.getstate(), np.random.get_state(), _random._state["rng"])
            from pynn.utils import set_random_seed

            set_random_seed(self._seed)
        return self

    def release(self) -> None:
        if not self._held:
            return
        if self._seed is not None:
            py_state, np_state, pynn_rng = self._saved
            random.setstate(py_state)
            np.random.set_state(np_state)
            _random._state["rng"] = pynn_rng
        self._held = False
        _RANDOM_LOCK.release()


class _EndSeededSection(Callback):
    """`Sequential.fit` draws its shuffling seed before `on_train_begin`: after that no random
    draw is left, so the seeded section can end and other threads may draw."""

    def __init__(self, section):
        super().__init__()
        self._section = section

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._section.release()


def _seed_from(random_state):
    """An integer seed for pynn from an sklearn-style random_state (None stays None)."""
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state: expected None, a non-negative integer or a "
                             f"numpy RandomState, got {random_state!r}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    raise ValueError(f"random_state: expected None, a non-negative integer or a numpy "
                     f"RandomState, got {random_state!r}")


def _check_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _check_real(value, name, low, high=None, low_open=False, high_open=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high))
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}" \
            if high is not None else f"{'>' if low_open else '>='} {low}"
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return value


class _PynnMLP(BaseEstimator):
    """Shared machinery: parameter checks, the network, the training loop, pickling."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", optimizer="adam",
                 learning_rate=1e-3, epochs=200, batch_size=32, early_stopping=True,
                 validation_fraction=0.1, patience=10, alpha=1e-4, dropout=0.0,
                 random_state=None, verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.alpha = alpha
        self.dropout = dropout
        self.random_state = random_state
        self.verbose = verbose

    # --- subclass hooks -------------------------------------------------------------------------
    # _output(): (units, activation, loss) of the output layer, from what _encode_targets learnt.
    # _encode_targets(y, sample_weight) -> targets as given to Sequential.fit.
    # _stratify(targets) -> labels to stratify the validation split on, or None.

    # --- parameters -----------------------------------------------------------------------------
    def _checked_params(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        if isinstance(sizes, str):
            sizes = None
        elif not isinstance(sizes, (list, tuple)):
            try:
                sizes = tuple(sizes)
            except TypeError:
                sizes = None
        if sizes is None:
            raise ValueError(f"hidden_layer_sizes: expected a tuple of positive integers, got "
                             f"{self.hidden_layer_sizes!r}")
        sizes = tuple(_check_int(s, "hidden_layer_sizes", 1) for s in sizes)
        batch_size = self.batch_size
        if batch_size != "auto":
            batch_size = _check_int(batch_size, "batch_size", 1)
        if not isinstance(self.early_stopping, (bool, np.bool_)):
            raise ValueError(f"early_stopping: expected True or False, got "
                             f"{self.early_stopping!r}")
        if self.verbose not in (0, 1, 2) or isinstance(self.verbose, float):
            raise ValueError(f"verbose: expected 0, 1 or 2, got {self.verbose!r}")
        return {
            "sizes": sizes,
            "learning_rate": _check_real(self.learning_rate, "learning_rate", 0.0,
                                         low_open=True),
            "epochs": _check_int(self.epochs, "epochs", 1),
            "batch_size": batch_size,
            "validation_fraction": _check_real(self.validation_fraction, "validation_fraction",
                                               0.0, 1.0, high_open=True),
            "patience": _check_int(self.patience, "patience", 0),
            "alpha": _check_real(self.alpha, "alpha", 0.0),
            "dropout": _check_real(self.dropout, "dropout", 0.0, 1.0, high_open=True),
            "seed": _seed_from(self.random_state),
            "verbose": int(self.verbose),
        }

    def _make_optimizer(self, learning_rate):
        """A fresh optimizer (never the caller's object, which fit must not modify)."""
        opt = self.optimizer
        if isinstance(opt, optimizers.Optimizer):
            config = dict(opt.get_config(), learning_rate=learning_rate)
            return type(opt).from_config(config)
        if isinstance(opt, str):
            cls = type(optimizers.get(opt))
            return cls(learning_rate=learning_rate)
        raise ValueError(f"optimizer: expected a name such as 'adam' or a "
                         f"pynn.optimizers.Optimizer, got {opt!r}")

    def _build_model(self, params, n_features):
        units, out_activation, loss = self._output()
        reg = regularizers.L2(params["alpha"]) if params["alpha"] > 0 else None
        model = Sequential([layers.Input((n_features,))])
        for size in params["sizes"]:
            model.add(layers.Dense(size, activation=self.activation, kernel_regularizer=reg))
            if params["dropout"] > 0:
                model.add(layers.Dropout(params["dropout"]))
        model.add(layers.Dense(units, activation=out_activation, kernel_regularizer=reg))
        model.compile(optimizer=self._make_optimizer(params["learning_rate"]), loss=loss)
        return model

    # --- training -------------------------------------------------------------------------------
    def _split(self, n, params, targets, sample_weight, seed):
        """Indices (train, validation) for early stopping, or None to train on everything."""
        if not self.early_stopping:
            return None
        n_val = math.ceil(params["validation_fraction"] * n)
        if n_val < 1 or n - n_val < 1:
            return None  # too few samples to hold any out
        index = np.arange(n)
        stratify = self._stratify(targets)
        try:
            train, val = train_test_split(index, test_size=n_val, random_state=seed,
                                          stratify=stratify)
        except ValueError:  # a class too small to stratify on
            train, val = train_test_split(index, test_size=n_val, random_state=seed)
        if sample_weight is not None and not np.any(sample_weight[val] > 0):
            return None  # a validation loss of weightless samples is meaningless
        return np.sort(train), np.sort(val)

    def _fit(self, X, y, sample_weight):
        params = self._checked_params()
        X, y = self._validate_fit_data(X, y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        targets = self._encode_targets(y, sample_weight)
        X = np.asarray(X, dtype=np.float32)
        n = X.shape[0]
        batch_size = min(200, n) if params["batch_size"] == "auto" else params["batch_size"]

        section = _SeededSection(params["seed"]).acquire()
        try:
            # Every draw happens in this section: the split seed, the initial weights and
            # dropout seeds (at build), and the shuffling seed (at the start of model.fit).
            split_seed = _random.next_seed() % 2**32
            split = self._split(n, params, targets, sample_weight, split_seed)
            model = self._build_model(params, X.shape[1])
            callbacks = [_EndSeededSection(section)]
            fit_kwargs = {}
            if split is not None:
                train, val = split
                sw_val = None if sample_weight is None else sample_weight[val]
                fit_kwargs["validation_data"] = (X[val], targets[val], sw_val)
                callbacks.append(EarlyStopping(monitor="val_loss", patience=params["patience"],
                                               restore_best_weights=True))
                X_fit, t_fit = X[train], targets[train]
                sw_fit = None if sample_weight is None else sample_weight[train]
            else:
                X_fit, t_fit, sw_fit = X, targets, sample_weight
            history = model.fit(X_fit, t_fit, sample_weight=sw_fit, batch_size=batch_size,
                                epochs=params["epochs"], verbose=params["verbose"],
                                callbacks=callbacks, shuffle=True, **fit_kwargs)
        finally:
            section.release()

        self.model_ = model
        self.loss_curve_ = [float(v) for v in history.history.get("loss", [])]
        val_curve = history.history.get("val_loss")
        self.validation_loss_curve_ = None if val_curve is None else [float(v)
                                                                      for v in val_curve]
        self.n_iter_ = len(self.loss_curve_)
        self.best_loss_ = min(self.validation_loss_curve_ or self.loss_curve_)
        return self

    def _forward(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
        return self.model_.predict(np.asarray(X, dtype=np.float32), verbose=0)

    # --- pickling -------------------------------------------------------------------------------
    # The fitted network pickles itself through its state (`pynn.Model.get_state`: config,
    # weights, compile configuration, optimizer state) and is rebuilt without running any
    # initializer, so unpickling leaves the caller's random streams untouched.
    def __setstate__(self, state):
        model = state.get("model_")
        if isinstance(model, dict) and "__pynn_model__" in model:
            # pickled by an older pynn: architecture, weights by position, compile config
            from pynn.models.state import restoring

            with restoring():
                rebuilt = Sequential.from_config(model["config"])
            rebuilt.set_weights(model["weights"])
            if model["compile"] is not None:
                rebuilt.compile_from_config(model["compile"])
            state = dict(state)
            state["model_"] = rebuilt
        super().__setstate__(state)


class PynnClassifier(ClassifierMixin, _PynnMLP):
    """A multi-layer perceptron classifier trained by pynn.

    The network is ``Dense(h, activation)`` (plus ``Dropout(dropout)``) for each ``h`` in
    `hidden_layer_sizes`, then one sigmoid unit with binary cross-entropy for two classes, or a
    softmax over the classes with sparse categorical cross-entropy for more. Labels may be of
    any type scikit-learn accepts for classification (integers, strings, ...).

    Args:
        hidden_layer_sizes: units of each hidden layer, e.g. ``(100,)`` or ``(64, 32)``.
        activation: hidden-layer activation (a `pynn.activations` name: "relu", "tanh", ...).
        optimizer: a `pynn.optimizers` name or an `Optimizer` (copied; its learning rate is
            replaced by `learning_rate`).
        learning_rate: the optimizer's step size.
        epochs: maximum number of passes over the training data.
        batch_size: samples per gradient step, or "auto" for ``min(200, n_samples)``.
        early_stopping: hold out `validation_fraction` of the training data (stratified) and
            stop once its loss has not improved for `patience` epochs, keeping the weights of
            the best epoch. When too few samples remain to hold any out, all `epochs` run.
        validation_fraction: fraction held out for early stopping, in [0, 1).
        patience: epochs without improvement of the validation loss before stopping.
        alpha: L2 penalty on every kernel, with Keras's meaning: ``alpha * sum(w**2)`` is added
            to each batch's mean loss (scikit-learn's MLP divides its alpha by the sample count).
        dropout: dropout rate after each hidden layer, in [0, 1).
        random_state: None, an integer or a `numpy.random.RandomState`; see the module notes.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.

    Attributes:
        classes_: the class labels, sorted.
        model_: the fitted `pynn.Sequential`.
        loss_curve_: training loss of each epoch.
        validation_loss_curve_: validation loss of each epoch (None without early stopping).
        best_loss_: the lowest validation loss (training loss without early stopping).
        n_iter_: number of epochs run.
        n_features_in_, feature_names_in_: as in every scikit-learn estimator.

    Example:
        >>> clf = PynnClassifier(hidden_layer_sizes=(32,), random_state=0).fit(X, y)
        >>> clf.predict_proba(X[:2])
    """

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Self:
        """Builds and trains a new network on (X, y); returns self."""
        return self._fit(X, y, sample_weight)

    def _validate_fit_data(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64])
        check_classification_targets(y)
        return X, y

    def _encode_targets(self, y, sample_weight):
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        codes = encoder.transform(y)
        present = codes if sample_weight is None else codes[sample_weight > 0]
        if sample_weight is not None and not present.size:
            raise ValueError("sample_weight: all weights are zero; expected at least one "
                             "positive weight")
        if np.unique(present).size < 2:
            which = "has" if sample_weight is None else "has non-zero sample_weight in"
            raise ValueError(f"y: a classifier needs samples of at least 2 classes, but only "
                             f"1 class {which} the data ({self.classes_[present[0]]!r})")
        if self.classes_.size == 2:
            return codes.astype(np.float32)
        return codes.astype(np.int32)

    def _output(self):
        if self.classes_.size == 2:
            return 1, "sigmoid", "binary_crossentropy"
        return self.classes_.size, "softmax", "sparse_categorical_crossentropy"

    def _stratify(self, targets):
        return targets

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in `classes_` order."""
        out = self._forward(X).astype(np.float64)
        if self.classes_.size == 2:
            p = np.clip(out[:, 0], 0.0, 1.0)
            return np.column_stack([1.0 - p, p])
        return out / out.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Logarithm of `predict_proba` (-inf where a probability underflowed to 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The most probable class of each sample."""
        proba = self.predict_proba(X)  # checks fitted-ness before classes_ is read
        return self.classes_[np.argmax(proba, axis=1)]


class PynnRegressor(RegressorMixin, _PynnMLP):
    """A multi-layer perceptron regressor trained by pynn (mean squared error).

    The network is ``Dense(h, activation)`` (plus ``Dropout(dropout)``) for each ``h`` in
    `hidden_layer_sizes`, then one linear unit per target. `y` may have one target
    (shape ``(n,)``) or several (``(n, k)``); `predict` returns the same layout. Targets are
    standardised for training (each column by its mean and standard deviation, computed
    without sample weights) and mapped back in `predict`, so the defaults work whatever their
    scale; `loss_curve_` is in standardised units.

    Args: as `PynnClassifier` (the validation split is not stratified).

    Attributes:
        model_: the fitted `pynn.Sequential` (its outputs are standardised targets).
        loss_curve_, validation_loss_curve_, best_loss_, n_iter_: as `PynnClassifier`.
        n_features_in_, feature_names_in_: as in every scikit-learn estimator.
    """

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Self:
        """Builds and trains a new network on (X, y); returns self."""
        return self._fit(X, y, sample_weight)

    def _validate_fit_data(self, X, y):
        return validate_data(self, X, y, dtype=[np.float32, np.float64], multi_output=True,
                             y_numeric=True)

    def _encode_targets(self, y, sample_weight):
        y = np.asarray(y, dtype=np.float64)
        self._y_ndim = y.ndim
        y2 = y.reshape(y.shape[0], -1)
        if sample_weight is not None and not np.any(sample_weight > 0):
            raise ValueError("sample_weight: all weights are zero; expected at least one "
                             "positive weight")
        mean = y2.mean(axis=0)
        scale = y2.std(axis=0)
        scale[~(scale > 1e-12 * np.maximum(np.abs(mean), 1.0))] = 1.0  # constant column
        self._y_mean, self._y_scale = mean, scale
        return ((y2 - mean) / scale).astype(np.float32)

    def _output(self):
        return self._y_mean.size, None, "mean_squared_error"

    def _stratify(self, targets):
        return None

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted targets: shape (n_samples,) or (n_samples, n_targets), as `y` in fit."""
        out = self._forward(X).astype(np.float64) * self._y_scale + self._y_mean
        return out[:, 0] if self._y_ndim == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y of shape (n, k) is supported
        return tags
