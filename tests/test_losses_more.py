"""The rest of Keras 3's losses: every class and function form against Keras itself (torch
backend) on random inputs, each reduction with and without sample weights, label smoothing,
and training with each of them through compile."""
import numpy as np
import pytest

import pynn
from pynn import losses

CLASSES = ["MeanSquaredError", "MeanAbsoluteError", "Huber", "KLDivergence", "Poisson",
           "LogCosh", "Hinge", "SquaredHinge", "CategoricalHinge", "CosineSimilarity",
           "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "BinaryCrossentropy",
           "CategoricalCrossentropy"]
FUNCTIONS = ["mean_squared_error", "mean_absolute_error", "huber", "kl_divergence", "poisson",
             "log_cosh", "hinge", "squared_hinge", "categorical_hinge", "cosine_similarity",
             "mean_absolute_percentage_error", "mean_squared_logarithmic_error",
             "binary_crossentropy", "categorical_crossentropy"]
REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none"]
# float32 on both sides with sums of at most a few dozen terms in different orders
RTOL, ATOL = 2e-5, 1e-6


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _data(seed, shape=(7, 4)):
    rng = np.random.default_rng(seed)
    y_soft = rng.random(shape).astype(np.float32)
    y_bin = (rng.random(shape) > 0.5).astype(np.float32)
    y_pm = 2 * y_bin - 1
    p = rng.random(shape).astype(np.float32)
    sw = rng.random(shape[0]).astype(np.float32)
    return (y_soft, y_bin, y_pm), p, sw


@pytest.mark.parametrize("name", CLASSES)
def test_classes_match_keras_for_every_reduction(keras, name):
    targets, p, sw = _data(len(name))
    if "rossentropy" in name:
        targets = targets[:2]   # torch refuses targets outside [0, 1]
    for red in REDUCTIONS:
        for t in targets:
            for w in (None, sw):
                want = np.asarray(getattr(keras.losses, name)(reduction=red)(t, p,
                                                                          sample_weight=w))
                got = np.asarray(getattr(losses, name)(reduction=red)(t, p, sample_weight=w))
                np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL,
                                           err_msg=f"{name} {red} weighted={w is not None}")


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_forms_return_per_sample_values_as_keras(keras, name):
    targets, p, _ = _data(len(name) + 100, shape=(5, 3, 4))
    for t in targets[:2] if "crossentropy" in name else targets:
        want = np.asarray(getattr(keras.losses, name)(t, p))
        got = getattr(losses, name)(t, p)
        assert got.shape == want.shape == (5, 3)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=name)


def test_sparse_categorical_crossentropy_per_sample_and_ignore_class(keras):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(9, 4)).astype(np.float32) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 4, 9)
    for col in (labels, labels[:, None]):
        for p, fl in ((probs, False), (logits, True)):
            np.testing.assert_allclose(
                losses.sparse_categorical_crossentropy(col, p, from_logits=fl),
                np.asarray(keras.losses.sparse_categorical_crossentropy(col, p, from_logits=fl)),
                rtol=RTOL, atol=ATOL)
    for red in ("sum_over_batch_size", "sum", "none"):
        want = keras.losses.SparseCategoricalCrossentropy(ignore_class=2, reduction=red)
        got = losses.SparseCategoricalCrossentropy(ignore_class=2, reduction=red)
        np.testing.assert_allclose(got(labels, probs), np.asarray(want(labels, probs)),
                                   rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("ls", [0.1, 0.5])
def test_label_smoothing_matches_keras(keras, from_logits, ls):
    (_, y, _), p, sw = _data(7)
    x = p * 6 - 3 if from_logits else p
    onehot = np.eye(4, dtype=np.float32)[np.argmax(p, 1)]
    for name, t in (("BinaryCrossentropy", y), ("CategoricalCrossentropy", onehot)):
        want = getattr(keras.losses, name)(from_logits=from_logits, label_smoothing=ls)
        got = getattr(losses, name)(from_logits=from_logits, label_smoothing=ls)
        np.testing.assert_allclose(got(t, x, sample_weight=sw),
                                   float(want(t, x, sample_weight=sw)), rtol=RTOL)


def test_documented_values():
    # the examples of Keras's docstrings
    y_true = [[0.0, 1.0], [0.0, 0.0]]
    y_pred = [[1.0, 1.0], [1.0, 0.0]]
    assert losses.MeanSquaredError()(y_true, y_pred) == pytest.approx(0.5)
    assert losses.MeanSquaredError(reduction="sum")(y_true, y_pred) == pytest.approx(1.0)
    np.testing.assert_allclose(losses.MeanSquaredError(reduction="none")(y_true, y_pred),
                               [0.5, 0.5])
    assert losses.MeanSquaredError()(y_true, y_pred, sample_weight=[0.7, 0.3]) == \
        pytest.approx(0.25)
    np.testing.assert_allclose(losses.mean_squared_error(y_true, y_pred), [0.5, 0.5])
    # cosine similarity: [[0., 1.], [1., 1.]] vs [[1., 0.], [1., 1.]] -> -(0 + 1) / 2
    assert losses.CosineSimilarity()([[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]) == \
        pytest.approx(-0.5)


def test_names_and_config_round_trip():
    for name in CLASSES:
        obj = getattr(losses, name)(reduction="sum")
        again = losses.deserialize(losses.serialize(obj))
        assert type(again) is type(obj) and again.get_config() == obj.get_config()
    for alias, cls in (("kld", losses.KLDivergence), ("mape", losses.MeanAbsolutePercentageError),
                       ("msle", losses.MeanSquaredLogarithmicError), ("logcosh", losses.LogCosh),
                       ("poisson", losses.Poisson), ("Hinge", losses.Hinge),
                       ("categorical_hinge", losses.CategoricalHinge)):
        assert type(losses.get(alias)) is cls
    assert type(losses.get(losses.kl_divergence)) is losses.KLDivergence
    # configs saved before MeanSquaredError had Keras's signature (with from_logits) still load
    old = {"class_name": "MeanSquaredError",
           "config": {"name": "mean_squared_error", "reduction": "sum_over_batch_size",
                      "from_logits": False}}
    assert type(losses.get(old)) is losses.MeanSquaredError
    with pytest.raises(ValueError, match="reduction: expected one of"):
        losses.Hinge(reduction="average")
    with pytest.raises(ValueError, match=r"label_smoothing: expected a number in \[0, 1\]"):
        losses.BinaryCrossentropy(label_smoothing=2)


def _model(units=3, activation="softmax"):
    pynn.utils.set_random_seed(5)
    return pynn.Sequential([pynn.Input((6,)), pynn.layers.Dense(8, activation="tanh"),
                            pynn.layers.Dense(units, activation=activation)])


def _xy(seed=0, n=48):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    labels = (x[:, :3].argmax(1)).astype(np.int64)
    return x, labels, np.eye(3, dtype=np.float32)[labels]


@pytest.mark.parametrize("name", ["KLDivergence", "Poisson", "LogCosh", "Hinge", "SquaredHinge",
                                  "CategoricalHinge", "CosineSimilarity",
                                  "MeanSquaredLogarithmicError"])
def test_traced_losses_train_and_report_their_value(name):
    x, _, y = _xy()
    model = _model()
    loss = getattr(losses, name)()
    model.compile(pynn.optimizers.Adam(0.05), loss=loss)
    before = model.evaluate(x, y, verbose=0, batch_size=len(x))
    # the reported loss is the loss object's value on the model's predictions
    assert before == pytest.approx(loss(y, model.predict(x, verbose=0)), rel=1e-5, abs=1e-6)
    model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0, batch_size=len(x)) < before


def test_label_smoothing_trains_as_smoothed_targets():
    x, _, y = _xy(1)
    ls = 0.2
    a, b = _model(), _model()
    a.compile(pynn.optimizers.SGD(0.1), loss=losses.CategoricalCrossentropy(label_smoothing=ls),
              metrics=["accuracy"])
    b.compile(pynn.optimizers.SGD(0.1), loss="categorical_crossentropy", metrics=["accuracy"])
    ha = a.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=False)
    hb = b.fit(x, y * (1 - ls) + ls / 3, epochs=3, batch_size=16, verbose=0, shuffle=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert ha.history["loss"] == hb.history["loss"]
    # accuracy is read from the true labels
    assert ha.history["accuracy"] == hb.history["accuracy"]


def test_binary_label_smoothing_in_compile():
    x, labels, _ = _xy(2)
    y = (labels == 0).astype(np.float32)[:, None]
    a, b = _model(1, "sigmoid"), _model(1, "sigmoid")
    a.compile(pynn.optimizers.SGD(0.1), loss=losses.BinaryCrossentropy(label_smoothing=0.3))
    b.compile(pynn.optimizers.SGD(0.1), loss="binary_crossentropy")
    a.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
    b.fit(x, y * 0.7 + 0.15, epochs=2, batch_size=16, verbose=0, shuffle=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_sum_reduction_trains_with_the_summed_gradient():
    x, _, y = _xy(3, n=40)
    a, b = _model(3, None), _model(3, None)
    a.compile(pynn.optimizers.SGD(0.01), loss=losses.MeanSquaredError(reduction="sum"))
    b.compile(pynn.optimizers.SGD(0.01 * 16), loss="mse")
    w0 = a.get_weights()
    # one step on a 16-row batch: the sum's gradient is 16 times the mean's
    a.train_on_batch(x[:16], y[:16])
    b.train_on_batch(x[:16], y[:16])
    for wa, wb, w in zip(a.get_weights(), b.get_weights(), w0):
        np.testing.assert_allclose(wa - w, wb - w, rtol=1e-4, atol=1e-7)
    # the reported value is the sum over the batch's samples
    got = a.evaluate(x, y, batch_size=len(x), verbose=0)
    want = losses.MeanSquaredError(reduction="sum")(y, a.predict(x, verbose=0))
    assert got == pytest.approx(want, rel=1e-5)
    # the traced path too
    c = _model(3, None)
    c.compile(pynn.optimizers.SGD(0.01), loss=losses.LogCosh(reduction="sum"))
    got = c.evaluate(x, y, batch_size=len(x), verbose=0)
    assert got == pytest.approx(losses.LogCosh(reduction="sum")(y, c.predict(x, verbose=0)),
                                rel=1e-5)


def test_compile_refuses_losses_without_one_number():
    model = _model()
    with pytest.raises(ValueError, match="reduction='none' does not give one number"):
        model.compile("adam", loss=losses.Hinge(reduction="none"))
    with pytest.raises(ValueError, match="ignore_class is supported when calling the loss"):
        model.compile("adam", loss=losses.SparseCategoricalCrossentropy(ignore_class=0))


def test_saved_model_keeps_its_loss(tmp_path):
    x, _, y = _xy(4)
    model = _model()
    model.compile("adam", loss=losses.KLDivergence(), metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    again = pynn.models.load_model(path)
    assert type(again.loss) is losses.KLDivergence
    assert again.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))


def test_sum_reduction_in_fit_and_evaluate_with_other_batch_sizes():
    # fit (rows picked by index) and evaluate (slices) alternate without mixing their weights
    x, _, y = _xy(5, n=40)
    model = _model(3, None)
    model.compile(pynn.optimizers.SGD(0.001), loss=losses.MeanSquaredError(reduction="sum"))
    for _ in range(2):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        got = model.evaluate(x, y, batch_size=16, verbose=0)
        pred = model.predict(x, verbose=0)
        sums = [losses.MeanSquaredError(reduction="sum")(y[s:s + 16], pred[s:s + 16])
                for s in range(0, 40, 16)]
        want = np.average(sums, weights=[16, 16, 8])
        assert got == pytest.approx(want, rel=1e-5)
