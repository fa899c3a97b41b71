"""The user's own losses, metrics and layers, written with pynn.ops.

A custom loss is traced into the training graph (its gradient comes from the ops' C++
backward), a custom metric runs eagerly on each batch's arrays, and a custom layer's call() is
traced into graph ops with its weights as trainable parameters. Each is checked against what
pynn's built-in equivalent or NumPy gives, against the NumPy graph executor and finite
differences, and through save / load.

Tolerances: a traced loss and the built-in one do the same float32 arithmetic in another
order, so losses agree to float32 rounding of sums of ~100 terms (rtol 1e-6) and weights after
a few SGD steps to 1e-5 of their size; the twin runs in float64, so engine gradients agree with
it to float32 rounding through three layers (2e-4 of the largest entry, as
tests/test_model_gradients.py argues).
"""
from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import layers, ops
from pynn.reference import graph as ref_graph

RNG = np.random.default_rng(20261207)


def _data(n=48, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)).astype(np.float32),
            rng.standard_normal((n, k)).astype(np.float32))


def _mlp(d=5, k=3, out_act=None, seed=0):
    pynn.utils.set_random_seed(seed)
    return pynn.Sequential([pynn.Input((d,)), layers.Dense(8, activation="tanh"),
                            layers.Dense(k, activation=out_act)])


def _twin(model, step, xs, targets, losses, sample_weights=None):
    """Runs `step` (one training step) and returns the twin's (total, param gradients) at the
    weights from before it, in the order of the compiled graph's parameters."""
    before = {id(w): w.numpy().astype(np.float64) for w in model.weights}
    result = step()
    spec = model._spec
    saved = [p.value for p in spec.params]
    try:
        for p in spec.params:
            if p.owner is not None and id(p.owner) in before:
                p.value = before[id(p.owner)]
        total, _, grads, _ = ref_graph.gradients(spec, xs, targets, losses, sample_weights)
    finally:
        for p, v in zip(spec.params, saved):
            p.value = v
    return result, total, grads


def my_mse(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred), axis=-1)


# --- custom loss functions ----------------------------------------------------------------
def test_custom_loss_function_trains_like_the_builtin():
    x, y = _data()
    a, b = _mlp(), _mlp()
    a.compile(optimizer=pynn.optimizers.SGD(0.1), loss=my_mse)
    b.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse")
    ha = a.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0).history
    hb = b.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0).history
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-5 * max(1.0, np.abs(wb).max()))
    # predict uses the model's own graph (no target input)
    np.testing.assert_array_equal(a.predict(x, verbose=0).shape, (48, 3))


def test_custom_loss_value_with_sample_weights_is_keras_reduction():
    # Keras 3 "sum_over_batch_size": sum of weighted per-sample losses / batch size
    x, y = _data(n=20)
    model = _mlp()
    model.compile(optimizer="sgd", loss=my_mse)
    sw = RNG.uniform(0.1, 2.0, 20).astype(np.float32)
    pred = model.predict(x, verbose=0).astype(np.float64)
    per = np.square(y - pred).mean(axis=-1)
    want = float((per * sw).sum() / 20)
    got = model.evaluate(x, y, sample_weight=sw, batch_size=20, verbose=0)
    assert got == pytest.approx(want, rel=1e-6)
    # the loss object called eagerly on arrays gives the same value
    assert model.loss(y, pred, sample_weight=sw) == pytest.approx(want, rel=1e-6)


def test_custom_loss_on_integer_labels_matches_sparse_crossentropy():
    def sparse_ce(y_true, y_pred):
        onehot = ops.one_hot(ops.reshape(y_true, (-1,)), 4)
        return -ops.sum(onehot * ops.log(ops.clip(y_pred, 1e-7, 1.0)), axis=-1)

    x, _ = _data(n=40)
    labels = RNG.integers(0, 4, 40)
    a, b = _mlp(k=4, out_act="softmax", seed=3), _mlp(k=4, out_act="softmax", seed=3)
    a.compile(optimizer="adam", loss=sparse_ce, metrics=["accuracy"])
    b.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ha = a.fit(x, labels, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    hb = b.fit(x, labels, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    # (the built-in clips at 1e-7 too; the fused softmax-CE backward differs in rounding)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-5)
    assert ha["accuracy"] == hb["accuracy"]


def test_traced_loss_gradients_match_the_twin_and_differences():
    def weird(y_true, y_pred):   # fan-out of y_pred, a comparison, a reduction over an axis
        e = y_pred - y_true
        return ops.sum(ops.where(ops.greater(e, 0.0), 2.0 * e * e, ops.abs(e)), axis=-1) / 3.0

    x, y = _data(n=9)
    model = _mlp()
    model.compile(optimizer=pynn.optimizers.SGD(1e-3), loss=weird)
    sw = RNG.uniform(0.5, 1.5, 9).astype(np.float32)
    losses = [None, ("mean_of_output", False, None, 1.0)]
    xs = [x.astype(np.float64), y.astype(np.float64)]
    loss, total, grads = _twin(model, lambda: model.train_on_batch(x, y, sample_weight=sw), xs,
                               [None, np.zeros((9, 1))], losses, [None, sw.astype(np.float64)])
    spec, graph = model._spec, model._graph
    assert len(spec.inputs) == 2 and len(spec.outputs) == 2    # + targets in, loss out
    assert loss == pytest.approx(total, rel=1e-5)
    scale = max(np.abs(g).max() for g in grads)
    for pid, want in enumerate(grads):
        got = graph.get_grad(pid)
        assert np.abs(got - want).max() <= 2e-4 * scale, spec.params[pid].name

    # the twin itself against central differences (float64)
    from test_ref_dense import numeric_grad

    kernel = np.asarray(spec.params[0].value, dtype=np.float64).copy()
    _, _, grads = _twin(model, lambda: None, xs, [None, np.zeros((9, 1))], losses,
                        [None, sw.astype(np.float64)])

    def f():
        old = spec.params[0].value
        spec.params[0].value = kernel
        try:
            return ref_graph.gradients(spec, xs, [None, np.zeros((9, 1))], losses,
                                       [None, sw.astype(np.float64)])[0]
        finally:
            spec.params[0].value = old

    np.testing.assert_allclose(grads[0], numeric_grad(f, kernel), rtol=1e-5, atol=1e-8)


def test_custom_loss_mixed_with_builtin_on_two_outputs():
    inp = pynn.Input((5,))
    h = layers.Dense(6, activation="relu")(inp)
    out_a = layers.Dense(3, name="reg")(h)
    out_b = layers.Dense(2, activation="softmax", name="cls")(h)
    pynn.utils.set_random_seed(4)
    model = pynn.Model(inp, [out_a, out_b])
    model.compile(optimizer="sgd", loss={"reg": my_mse, "cls": "sparse_categorical_crossentropy"},
                  loss_weights={"reg": 0.5, "cls": 2.0}, metrics={"cls": ["accuracy"]})
    x, y = _data(n=16)
    lab = RNG.integers(0, 2, 16)
    logs = model.evaluate(x, {"reg": y, "cls": lab}, batch_size=16, verbose=0, return_dict=True)
    pa, pb = model.predict(x, verbose=0)
    reg = float(np.square(y - pa).mean())
    cls = float(-np.log(np.clip(pb[np.arange(16), lab], 1e-7, 1.0)).mean())
    assert logs["reg_loss"] == pytest.approx(reg, rel=1e-5)
    assert logs["cls_loss"] == pytest.approx(cls, rel=1e-5)
    assert logs["loss"] == pytest.approx(0.5 * reg + 2.0 * cls, rel=1e-5)
    assert logs["cls_accuracy"] == pytest.approx(float((pb.argmax(1) == lab).mean()))


def test_custom_loss_errors_are_clear():
    x, y = _data(n=4)

    def numpy_loss(y_true, y_pred):
        return np.mean(np.square(y_true - y_pred), axis=-1)

    def returns_number(y_true, y_pred):
        return 1.0

    def branches(y_true, y_pred):
        return y_pred if ops.mean(y_pred) > 0 else y_true

    for fn, match in [(numpy_loss, "pynn.ops"), (returns_number, "must return a tensor"),
                      (branches, "control flow")]:
        model = _mlp()
        model.compile(optimizer="sgd", loss=fn)
        with pytest.raises(TypeError, match=match) as info:
            model.fit(x, y, verbose=0)
        assert fn.__name__ in str(info.value)


# --- Loss subclasses, metrics, saving -------------------------------------------------------
@pynn.saving.register_serializable(package="tests")
class ScaledMSE(pynn.losses.Loss):
    def __init__(self, factor=2.0, name="scaled_mse", **kwargs):
        super().__init__(name=name, **kwargs)
        self.factor = factor

    def call(self, y_true, y_pred):
        return self.factor * ops.mean(ops.square(y_true - y_pred), axis=-1)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@pynn.saving.register_serializable(package="tests")
class PositiveCount(pynn.metrics.Metric):
    def __init__(self, name="positive_count", **kwargs):
        super().__init__(name=name, **kwargs)
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.count.assign_add(ops.sum(ops.cast(ops.greater(y_pred, 0.0), "float32")))

    def result(self):
        return self.count.numpy()


@pynn.saving.register_serializable(package="tests")
def rmse(y_true, y_pred):
    return ops.sqrt(ops.mean(ops.square(y_true - y_pred), axis=-1))


def test_loss_subclass_and_metrics_compute_what_numpy_does():
    x, y = _data(n=30)
    model = _mlp()
    model.compile(optimizer="sgd", loss=ScaledMSE(3.0), metrics=[PositiveCount(), rmse, "mae"])
    logs = model.evaluate(x, y, batch_size=7, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0).astype(np.float64)
    assert logs["loss"] == pytest.approx(3.0 * np.square(y - pred).mean(), rel=1e-5)
    assert logs["positive_count"] == float((pred > 0).sum())
    assert logs["rmse"] == pytest.approx(np.sqrt(np.square(y - pred).mean(-1)).mean(), rel=1e-5)
    assert logs["mae"] == pytest.approx(np.abs(y - pred).mean(), rel=1e-5)
    # the metric is reset for every pass: the same count again, not twice it
    again = model.evaluate(x, y, batch_size=30, verbose=0, return_dict=True)
    assert again["positive_count"] == logs["positive_count"]
    history = model.fit(x, y, epochs=2, batch_size=10, verbose=0).history
    assert set(history) == {"loss", "positive_count", "rmse", "mae"}
    assert all(0 <= c <= y.size for c in history["positive_count"])


def test_custom_objects_round_trip_through_save_and_training_resumes(tmp_path):
    x, y = _data(n=32)
    model = _mlp()
    model.compile(optimizer="adam", loss=ScaledMSE(1.5), metrics=[rmse, PositiveCount()])
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = pynn.saving.load_model(path)
    assert isinstance(loaded.loss, ScaledMSE) and loaded.loss.factor == 1.5
    a = model.evaluate(x, y, verbose=0, return_dict=True)
    b = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert a == b
    model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert all(np.array_equal(p, q) for p, q in zip(model.get_weights(), loaded.get_weights()))


def test_unregistered_custom_loss_loads_only_when_given(tmp_path):
    def local_loss(y_true, y_pred):
        return ops.mean(ops.abs(y_true - y_pred), axis=-1)

    model = _mlp()
    model.compile(optimizer="sgd", loss=local_loss)
    path = tmp_path / "m.safetensors"
    model.save(path)
    with pytest.raises(ValueError, match="local_loss"):
        pynn.saving.load_model(path)
    assert pynn.saving.load_model(path, compile=False).compiled is False
    loaded = pynn.saving.load_model(path, custom_objects={"local_loss": local_loss})
    x, y = _data(n=8)
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_bad_metrics_are_refused_by_name():
    model = _mlp()
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        model.compile(optimizer="sgd", loss="mse", metrics=["nope"])
    with pytest.raises(TypeError, match="metrics"):
        model.compile(optimizer="sgd", loss="mse", metrics=[3])
    with pytest.raises(ValueError, match="twice"):
        model.compile(optimizer="sgd", loss="mse", metrics=[rmse, rmse])


# --- custom layers --------------------------------------------------------------------------
@pynn.saving.register_serializable(package="tests")
class TanhDense(layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                 initializer="random_normal", name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="random_normal", name="b")

    def call(self, x):
        return ops.tanh(ops.matmul(x, self.w) + self.b)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class ScaledDense(layers.Layer):
    """A layer around another layer: its weights are the scale and the inner Dense's."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(1,), initializer="ones", name="scale")
        self.inner = layers.Dense(3)

    def call(self, x):
        return self.inner(x) * self.scale + ops.square(self.scale)


def test_custom_layer_forward_and_weights():
    pynn.utils.set_random_seed(7)
    inp = pynn.Input((5,))
    out = ScaledDense()(TanhDense(4)(inp))
    model = pynn.Model(inp, out)
    assert [w.path.split("/")[-1] for w in model.weights] == ["w", "b", "scale", "kernel", "bias"]
    assert model.count_params() == 5 * 4 + 4 + 1 + 4 * 3 + 3
    x, _ = _data(n=6)
    w, b, s, k, c = [v.astype(np.float64) for v in model.get_weights()]
    want = (np.tanh(x @ w + b) @ k + c) * s + s ** 2
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    # called eagerly on arrays as well
    layer = model.layers[1]
    np.testing.assert_allclose(layer(x), np.tanh(x @ w + b), rtol=1e-5, atol=1e-6)


class BuildsItsSublayer(layers.Layer):
    """Keras's pattern: build() builds the sublayer itself, before call() uses it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = layers.Dense(3, activation="tanh")

    def build(self, input_shape):
        self.inner.build(input_shape)

    def call(self, x):
        return self.inner(x) * 2.0


def test_a_sublayer_built_directly_is_not_built_again(keras):
    inp = pynn.Input((5,))
    model = pynn.Model(inp, BuildsItsSublayer()(inp))
    # one kernel and one bias, as Keras has: the traced call must not build the Dense again
    assert [tuple(w.shape) for w in model.weights] == [(5, 3), (3,)]
    x, _ = _data(n=4)
    k, b = model.get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0), 2 * np.tanh(x @ k + b), rtol=1e-5,
                               atol=1e-6)
    dense = layers.Dense(2)
    dense.build((None, 7))
    assert dense.built and dense.input_shape == (None, 7)
    # LSTM's build calls RNN's: weights given before the build are set after all of it, so
    # the forget-gate bias of ones does not overwrite them
    lstm = layers.LSTM(2)
    weights = [np.full((3, 8), 0.1, np.float32), np.full((2, 8), 0.2, np.float32),
               np.full(8, 0.3, np.float32)]
    lstm.set_weights(weights)
    lstm.build((None, 4, 3))
    for got, want in zip(lstm.get_weights(), weights):
        np.testing.assert_array_equal(got, want)


def test_custom_layer_gradients_match_the_twin():
    pynn.utils.set_random_seed(8)
    inp = pynn.Input((5,))
    model = pynn.Model(inp, ScaledDense()(TanhDense(4)(inp)))
    model.compile(optimizer=pynn.optimizers.SGD(1e-3), loss="mse")
    x, y = _data(n=11)
    _, _, grads = _twin(model, lambda: model.train_on_batch(x, y), [x.astype(np.float64)],
                        [y.astype(np.float64)], [("mean_squared_error", False, None, 1.0)])
    spec, graph = model._spec, model._graph
    assert any(node.op == "variable" for node in spec.nodes)
    scale = max(np.abs(g).max() for g in grads)
    for pid, want in enumerate(grads):
        assert np.abs(graph.get_grad(pid) - want).max() <= 2e-4 * scale, spec.params[pid].name
    # every weight trains
    before = model.get_weights()
    model.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse")
    model.train_on_batch(x, y)
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_custom_layer_frozen_and_saved(tmp_path):
    pynn.utils.set_random_seed(9)
    inp = pynn.Input((5,))
    custom = TanhDense(3)
    model = pynn.Model(inp, layers.Dense(2)(custom(inp)))
    model.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse")
    x, y = _data(n=12, k=2)
    custom.trainable = False
    frozen = [w.copy() for w in custom.get_weights()]
    model.train_on_batch(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(frozen, custom.get_weights()))
    custom.trainable = True
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = pynn.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_custom_layer_errors_are_clear():
    class NoCall(layers.Layer):
        pass

    class ReturnsArray(layers.Layer):
        def call(self, x):
            return np.zeros(3)

    with pytest.raises(NotImplementedError, match="call"):
        NoCall()(pynn.Input((3,)))
    with pytest.raises(TypeError, match="must return tensors"):
        ReturnsArray()(pynn.Input((3,)))


def test_freezing_a_custom_layer_freezes_its_sublayers():
    pynn.utils.set_random_seed(10)
    inp = pynn.Input((5,))
    custom = ScaledDense()
    model = pynn.Model(inp, custom(inp))
    model.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse")
    assert custom._sublayers() == [custom.inner]
    x, y = _data(n=6)
    custom.trainable = False
    assert not custom.inner.trainable and model.trainable_weights == []
    before = model.get_weights()
    model.train_on_batch(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    custom.trainable = True
    model.train_on_batch(x, y)
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_models_with_custom_losses_and_metrics_pickle():
    import pickle

    x, y = _data(n=24)
    model = _mlp()
    model.compile(optimizer="adam", loss=my_mse, metrics=[rmse, PositiveCount()])
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.loss.fn is my_mse
    assert clone.evaluate(x, y, verbose=0, return_dict=True) == \
        model.evaluate(x, y, verbose=0, return_dict=True)
    model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    clone.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), clone.get_weights()))


def test_custom_loss_compiled_after_the_model_already_ran():
    x, y = _data(n=8)
    model = _mlp()
    model.predict(x, verbose=0)          # the graph exists before compile
    model.compile(optimizer="sgd", loss=my_mse)
    pred = model.predict(x, verbose=0).astype(np.float64)
    assert model.evaluate(x, y, batch_size=8, verbose=0) == pytest.approx(
        float(np.square(y - pred).mean()), rel=1e-5)
    model.compile(optimizer="sgd", loss="mae")   # and back to a built-in loss
    assert model.evaluate(x, y, batch_size=8, verbose=0) == pytest.approx(
        float(np.abs(y - pred).mean()), rel=1e-5)


class SetsBuiltItself(layers.Layer):
    """A build() that sets `built` itself, as Keras 2 code did."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 2), initializer="ones", name="w")
        self.built = True

    def call(self, x):
        return ops.matmul(x, self.w)


def test_weights_given_before_a_build_that_sets_built_itself_are_kept():
    layer = SetsBuiltItself()
    layer.build((None, 3))
    assert layer.input_shape == (None, 3)
    pending = SetsBuiltItself()
    pending.set_weights([np.full((3, 2), 0.5, np.float32)])   # before any build: kept
    inp = pynn.Input((3,))
    model = pynn.Model(inp, pending(inp))
    np.testing.assert_array_equal(model.get_weights()[0], np.full((3, 2), 0.5, np.float32))
