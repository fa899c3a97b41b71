"""The Sequential model: compile / fit / evaluate / predict and their contracts."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest

import pynn
from pynn import callbacks, layers


def blobs(n=600, d=8, k=3, seed=0):
    """Linearly separable Gaussian blobs: any working classifier reaches high accuracy."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 4
    y = rng.integers(0, k, n)
    x = centers[y] + rng.standard_normal((n, d))
    return x.astype(np.float32), y


def mlp(d=8, k=3, out="softmax"):
    return pynn.Sequential([pynn.Input((d,)), layers.Dense(16, activation="relu"),
                            layers.Dense(k, activation=out)])


def test_fit_learns_and_returns_history():
    pynn.utils.set_random_seed(0)
    x, y = blobs()
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    hist = model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    assert isinstance(hist, callbacks.History)
    assert model.history is hist
    assert hist.epoch == [0, 1, 2, 3, 4]
    assert set(hist.history) == {"loss", "accuracy"}
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc > 0.95
    assert math.isclose(loss, model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    proba = model.predict(x, verbose=0)
    assert proba.shape == (600, 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert np.mean(proba.argmax(1) == y) == pytest.approx(acc)


def test_evaluate_loss_matches_the_loss_function():
    pynn.utils.set_random_seed(1)
    x, y = blobs(n=100)
    model = mlp()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    proba = model.predict(x, verbose=0)
    expected = -np.mean(np.log(np.clip(proba[np.arange(100), y], 1e-7, 1)))
    # evaluate averages per-batch means weighted by batch size: the same mean over samples
    assert model.evaluate(x, y, batch_size=7, verbose=0) == pytest.approx(expected, rel=1e-5)


def test_predict_is_independent_of_batch_size_and_row():
    pynn.utils.set_random_seed(2)
    x, _ = blobs(n=97)
    model = mlp()
    full = model.predict(x, verbose=0)
    for bs in (1, 5, 32, 500):
        assert np.array_equal(model.predict(x, batch_size=bs, verbose=0), full)
    assert np.array_equal(model.predict(x[3:4], verbose=0), full[3:4])
    assert np.array_equal(model(x), full)
    assert np.array_equal(model.predict_on_batch(x), full)


def test_validation_split_and_data():
    pynn.utils.set_random_seed(3)
    x, y = blobs()
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    h = model.fit(x, y, epochs=2, validation_split=0.25, verbose=0)
    assert {"val_loss", "val_accuracy"} <= set(h.history)
    h2 = model.fit(x[:400], y[:400], epochs=1, validation_data=(x[400:], y[400:]), verbose=0)
    vloss, vacc = model.evaluate(x[400:], y[400:], verbose=0)
    assert h2.history["val_loss"][0] == pytest.approx(vloss, rel=1e-6)
    assert h2.history["val_accuracy"][0] == pytest.approx(vacc)


def test_categorical_and_binary_and_regression_losses_train():
    pynn.utils.set_random_seed(4)
    x, y = blobs(k=2)
    model = mlp(k=2)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, pynn.utils.to_categorical(y, 2), epochs=5, verbose=0)
    assert model.evaluate(x, pynn.utils.to_categorical(y, 2), verbose=0)[1] > 0.95

    binary = mlp(k=1, out="sigmoid")
    binary.compile(optimizer="adam", loss="binary_crossentropy",
                   metrics=["accuracy", "precision", "recall", "auc"])
    binary.fit(x, y, epochs=5, verbose=0)
    logs = binary.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy", "precision", "recall", "auc"}
    assert logs["accuracy"] > 0.95 and logs["auc"] > 0.98

    rng = np.random.default_rng(0)
    xr = rng.standard_normal((500, 3)).astype(np.float32)
    yr = xr @ np.array([1.0, -2.0, 0.5]) + 0.3
    reg = pynn.Sequential([pynn.Input((3,)), layers.Dense(1)])
    reg.compile(optimizer=pynn.optimizers.Adam(0.05), loss="mse", metrics=["mae"])
    reg.fit(xr, yr, epochs=30, verbose=0)
    mse, mae = reg.evaluate(xr, yr, verbose=0)
    assert mse < 1e-3 and mae < 0.05
    kernel, bias = reg.get_weights()
    np.testing.assert_allclose(kernel[:, 0], [1.0, -2.0, 0.5], atol=0.02)


def test_metrics_match_pynn_metrics_functions():
    pynn.utils.set_random_seed(5)
    x, y = blobs(k=4, seed=3)
    model = mlp(k=4)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "precision", "recall", "f1_score"])
    model.fit(x, y, epochs=1, verbose=0)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0).argmax(1)
    assert logs["precision"] == pytest.approx(pynn.metrics.precision_score(y, pred, average="macro"))
    assert logs["recall"] == pytest.approx(pynn.metrics.recall_score(y, pred, average="macro"))
    assert logs["f1_score"] == pytest.approx(pynn.metrics.f1_score(y, pred, average="macro"))


def test_sample_and_class_weights_change_the_loss():
    pynn.utils.set_random_seed(6)
    x, y = blobs(n=64)
    model = mlp()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    base = model.test_on_batch(x, y)
    w = np.where(y == 0, 3.0, 1.0)
    weighted = model.test_on_batch(x, y, sample_weight=w)
    proba = model.predict(x, verbose=0)
    per = -np.log(np.clip(proba[np.arange(64), y], 1e-7, 1))
    assert base == pytest.approx(per.mean(), rel=1e-5)
    assert weighted == pytest.approx((w * per).sum() / 64, rel=1e-5)
    # class_weight {0: 3} on train_on_batch is the same weighting
    m1, m2 = mlp(), mlp()
    m2.set_weights(m1.get_weights())
    for m in (m1, m2):
        m.compile(optimizer=pynn.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    l1 = m1.train_on_batch(x, y, sample_weight=w)
    l2 = m2.train_on_batch(x, y, class_weight={0: 3.0, 1: 1.0, 2: 1.0})
    assert l1 == l2
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        assert np.array_equal(a, b)


def test_learning_rate_is_settable_between_epochs():
    pynn.utils.set_random_seed(7)
    x, y = blobs(n=64)
    model = mlp()
    model.compile(optimizer=pynn.optimizers.SGD(learning_rate=0.1),
                  loss="sparse_categorical_crossentropy")
    model.optimizer.learning_rate = 0.0 + 1e-12
    before = model.get_weights()
    model.fit(x, y, epochs=1, verbose=0)
    after = model.get_weights()
    assert max(np.abs(a - b).max() for a, b in zip(after, before)) < 1e-9
    model.optimizer.learning_rate = 0.5
    assert model.optimizer.learning_rate == 0.5
    model.fit(x, y, epochs=1, verbose=0)
    assert max(np.abs(a - b).max() for a, b in zip(model.get_weights(), after)) > 1e-3
    assert model.optimizer.iterations == 4


def test_stop_training_from_a_callback_and_early_stopping():
    pynn.utils.set_random_seed(8)
    x, y = blobs()
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

    class StopAt(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.model.stop_training = True

    model.fit(x, y, epochs=3, verbose=0, callbacks=[StopAt()])
    assert model.optimizer.iterations == 3
    es = callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    h = model.fit(x, y, epochs=10, verbose=0, callbacks=[es])
    assert len(h.epoch) == 2  # no epoch improves by 10: stops after the second


def test_keyboard_interrupt_leaves_a_consistent_model():
    pynn.utils.set_random_seed(9)
    x, y = blobs()
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

    class Interrupt(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 4:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[Interrupt()])
    assert model.optimizer.iterations == 5  # every started step completed
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    model.fit(x, y, epochs=1, verbose=0)  # and training goes on
    assert model.optimizer.iterations == 5 + math.ceil(600 / 32)


def test_progress_output_verbose_2_is_one_line_per_epoch(capsys):
    pynn.utils.set_random_seed(10)
    x, y = blobs(n=200)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, verbose=2)
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    epoch_lines = [ln for ln in lines if "loss" in ln]
    assert len(epoch_lines) == 3 and "\r" not in out
    assert all("accuracy" in ln for ln in epoch_lines)


def test_summary_lists_layers_and_parameter_counts():
    model = pynn.Sequential([pynn.Input((784,)), layers.Dense(256, activation="relu"),
                             layers.Dense(10, activation="softmax")], name="mlp")
    buf = io.StringIO()
    model.summary(print_fn=lambda line: buf.write(line + "\n"))
    text = buf.getvalue()
    assert 'Model: "mlp"' in text and "(None, 256)" in text and "(None, 10)" in text
    assert "200,960" in text and "2,570" in text and "Total params: 203,530" in text


def test_config_round_trip_rebuilds_the_same_architecture():
    model = pynn.Sequential([pynn.Input((6,)), layers.Dense(5, activation="tanh"),
                             layers.Dropout(0.2), layers.BatchNormalization(),
                             layers.Dense(2, activation="softmax")])
    clone = pynn.Sequential.from_config(model.get_config())
    assert clone.get_config() == model.get_config() or [type(a) for a in clone.layers] == [
        type(b) for b in model.layers]
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]


def test_add_and_pop_keep_existing_weights():
    model = pynn.Sequential([pynn.Input((4,)), layers.Dense(3)])
    w = model.get_weights()
    model.add(layers.Dense(2))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights()[:2], w))
    model.pop()
    assert len(model.layers) == 1
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), w))


BAD_FIT = [
    (dict(x=None), ValueError, "x"),
    (dict(x=np.zeros((0, 8), np.float32)), ValueError, "at least one sample"),
    (dict(x=np.zeros((10, 7), np.float32)), ValueError, r"samples of shape \(8,\)"),
    (dict(x=np.full((10, 8), np.nan, np.float32)), ValueError, "NaN or Inf"),
    (dict(x=np.zeros((10, 8), complex)), TypeError, "complex"),
    (dict(x=np.zeros((10, 8), object)), TypeError, "object"),
    (dict(y=np.arange(9)), ValueError, "expected 10 targets"),
    (dict(y=np.full(10, 5)), ValueError, r"labels must be in \[0, 3\)"),
    (dict(y=np.full(10, -1)), ValueError, r"labels must be in \[0, 3\)"),
    (dict(y=np.full(10, 0.5)), ValueError, "integer class labels"),
    (dict(y=np.array(["a"] * 10)), TypeError, "numeric targets"),
    (dict(y=np.full(10, np.inf)), ValueError, "NaN or Inf"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=2.5), ValueError, "batch_size"),
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(validation_split=1.0), ValueError, "validation_split"),
    (dict(validation_split=0.95), ValueError, "leaves no samples for training"),
    (dict(validation_data=(np.zeros((3, 8)),)), ValueError, "validation_data"),
    (dict(sample_weight=np.ones(3)), ValueError, "sample_weight"),
    (dict(sample_weight=-np.ones(10)), ValueError, "sample_weight"),
    (dict(class_weight=[1, 2]), TypeError, "class_weight"),
    (dict(verbose=3), ValueError, "verbose"),
    (dict(callbacks=[object()]), TypeError, "callbacks"),
]


@pytest.mark.parametrize("override,exc,match", BAD_FIT)
def test_fit_rejects_bad_input(override, exc, match):
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    args = dict(x=np.zeros((10, 8), np.float32), y=np.zeros(10, int), verbose=0)
    args.update(override)
    before = model.get_weights()
    with pytest.raises(exc, match=match):
        model.fit(**args)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


def test_compile_and_usage_errors():
    model = mlp()
    with pytest.raises(RuntimeError, match="compile the model first"):
        model.fit(np.zeros((4, 8)), np.zeros(4))
    with pytest.raises(ValueError, match="loss"):
        model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="optimizer: unknown name 'adamm'"):
        model.compile(optimizer="adamm", loss="mse")
    with pytest.raises(ValueError, match="loss: unknown name"):
        model.compile(optimizer="adam", loss="cross_entropy_typo")
    with pytest.raises(ValueError, match="metrics: unknown metric"):
        model.compile(optimizer="adam", loss="mse", metrics=["accuracyy"])
    with pytest.raises(ValueError, match="listed twice"):
        model.compile(optimizer="adam", loss="mse", metrics=["mae", "mae"])
    with pytest.raises(ValueError, match="learning_rate"):
        pynn.optimizers.Adam(learning_rate=-1)
    with pytest.raises(ValueError, match="clipnorm"):
        pynn.optimizers.SGD(clipnorm=0)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="to_categorical"):
        model.fit(np.zeros((4, 8)), np.zeros(4), verbose=0)
    empty = pynn.Sequential()
    with pytest.raises(ValueError, match="no layers|no input shape"):
        empty.build((3,))


def test_trainable_false_freezes_a_layer_and_the_model():
    pynn.utils.set_random_seed(11)
    x, y = blobs(n=128)
    frozen = layers.Dense(16, activation="relu", trainable=False)
    model = pynn.Sequential([pynn.Input((8,)), frozen, layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(after[:2], before[:2]))  # frozen
    assert not np.array_equal(after[2], before[2])  # the head trains
    buf = io.StringIO()
    model.summary(print_fn=lambda line: buf.write(line + "\n"))
    assert "Non-trainable params: 144" in buf.getvalue()
    model.trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), after))


def test_a_layer_in_two_models_shares_its_weights():
    # Keras semantics: weights belong to the layer, so training one model changes the other
    shared = layers.Dense(2)
    a = pynn.Sequential([pynn.Input((4,)), shared])
    b = pynn.Sequential([pynn.Input((4,)), shared, layers.Activation("tanh")])
    x = np.ones((3, 4), np.float32)
    before = b.predict(x, verbose=0)
    a.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse")
    a.train_on_batch(x, np.ones((3, 2), np.float32))
    after = b.predict(x, verbose=0)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, np.tanh(a.predict(x, verbose=0)), rtol=1e-6)
    with pytest.raises(ValueError, match="already in this model"):
        pynn.Sequential([pynn.Input((4,)), shared, shared])


def test_class_weight_weighs_training_but_not_validation():
    pynn.utils.set_random_seed(12)
    x, y = blobs(n=100, k=2)
    model = mlp(k=2)
    model.compile(optimizer=pynn.optimizers.SGD(1e-6), loss="sparse_categorical_crossentropy")
    h = model.fit(x, y, epochs=1, validation_split=0.2, class_weight={0: 10.0, 1: 1.0},
                  shuffle=False, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(model.evaluate(x[80:], y[80:], verbose=0),
                                                     rel=1e-4)


def test_multi_label_metrics_count_every_output():
    pynn.utils.set_random_seed(13)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((300, 6)).astype(np.float32)
    y = (rng.random((300, 3)) > 0.5).astype(np.float32)
    model = pynn.Sequential([pynn.Input((6,)), layers.Dense(3, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy",
                  metrics=["acc", "precision", "recall", "auc"])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "acc", "precision", "recall", "auc"}  # the user's spelling
    p = model.predict(x, verbose=0)
    pred, true = (p > 0.5).ravel().astype(int), y.ravel().astype(int)
    assert logs["acc"] == pytest.approx(np.mean(pred == true))
    assert logs["precision"] == pytest.approx(pynn.metrics.precision_score(true, pred))
    assert logs["recall"] == pytest.approx(pynn.metrics.recall_score(true, pred))


def test_auc_of_a_pass_is_the_exact_rank_statistic():
    pynn.utils.set_random_seed(14)
    x, y = blobs(n=400, k=2, seed=5)
    x = x + np.random.default_rng(1).standard_normal(x.shape).astype(np.float32) * 6
    model = mlp(k=1, out="sigmoid")
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["auc"])
    model.fit(x, y, epochs=2, verbose=0)
    auc = model.evaluate(x, y, verbose=0)[1]
    exact = pynn.metrics.roc_auc_score(y, model.predict(x, verbose=0)[:, 0])
    assert 0.5 < exact < 0.999  # a case where saturated scores make 200 buckets inexact
    assert auc == pytest.approx(exact, rel=1e-12)


def test_accuracy_with_a_regression_loss_as_in_the_course():
    # SPEC section 1: a sigmoid output trained with mean squared error
    pynn.utils.set_random_seed(15)
    x, y = blobs(n=200, k=2)
    model = mlp(k=1, out="sigmoid")
    model.compile(optimizer="adam", loss="mse", metrics=["accuracy"])
    model.fit(x, y, epochs=5, verbose=0)
    acc = model.evaluate(x, y, verbose=0)[1]
    assert acc == pytest.approx(np.mean((model.predict(x, verbose=0)[:, 0] > 0.5) == y))
    assert acc > 0.9


def test_a_frozen_batch_norm_runs_in_inference_mode():
    pynn.utils.set_random_seed(16)
    x, y = blobs(n=128)
    bn = layers.BatchNormalization(trainable=False)
    model = pynn.Sequential([pynn.Input((8,)), bn, layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    gamma, beta, mean, var = bn.get_weights()
    assert np.all(mean == 0) and np.all(var == 1) and np.all(gamma == 1) and np.all(beta == 0)
    # and the loss it trains on (computed before the step's update) is the inference-mode one
    expected = model.evaluate(x, y, verbose=0, batch_size=128)
    assert model.train_on_batch(x, y) == pytest.approx(expected, rel=1e-5)
