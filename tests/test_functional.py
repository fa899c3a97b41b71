"""The functional API, nested and subclassed models, shared layers, multi-input/output
training, and Keras 3's trainable rule, on the graph engine."""
from __future__ import annotations

import io

import numpy as np
import pytest

import pynn
from pynn import layers as L


def _data(n=64, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, :3].sum(axis=1) > 0).astype(np.int32) + (x[:, 3] > 1).astype(np.int32)
    return x, y


def _two_io():
    a = pynn.Input((8,), name="a")
    b = pynn.Input((5,), name="b")
    shared = L.Dense(6, activation="tanh", name="shared")
    h = L.Concatenate(name="cat")([shared(a), L.Dense(6, name="proj")(b)])
    h = L.Add(name="skip")([L.Dense(12, activation="relu", name="hid")(h), h])
    cls = L.Dense(3, activation="softmax", name="cls")(h)
    reg = L.Dense(2, name="reg")(L.Multiply(name="gate")([shared(a), shared(a)]))
    return pynn.Model({"a": a, "b": b}, [cls, reg], name="two_io")


def test_functional_mlp_matches_sequential_bitwise():
    x, y = _data()
    pynn.utils.set_random_seed(3)
    seq = pynn.Sequential([pynn.Input((8,)), L.Dense(16, activation="relu"),
                           L.Dense(3, activation="softmax")])
    inp = pynn.Input((8,))
    out = L.Dense(3, activation="softmax")(L.Dense(16, activation="relu")(inp))
    fun = pynn.Model(inp, out)
    fun.set_weights(seq.get_weights())
    for m in (seq, fun):
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    h1 = seq.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    h2 = fun.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    assert h1.history == h2.history
    for w1, w2 in zip(seq.get_weights(), fun.get_weights()):
        assert np.array_equal(w1, w2)


def test_two_inputs_two_outputs_history_keys_and_loss_weights():
    pynn.utils.set_random_seed(1)
    model = _two_io()
    assert model.output_names == ["cls", "reg"]
    assert model.input_names == ["a", "b"]
    rng = np.random.default_rng(0)
    xa = rng.normal(size=(40, 8)).astype(np.float32)
    xb = rng.normal(size=(40, 5)).astype(np.float32)
    yc = rng.integers(0, 3, 40)
    yr = rng.normal(size=(40, 2)).astype(np.float32)
    model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy", "mse"],
                  loss_weights={"cls": 1.0, "reg": 0.25}, metrics={"cls": ["accuracy"]})
    logs = model.evaluate({"a": xa, "b": xb}, [yc, yr], batch_size=40, verbose=0,
                          return_dict=True)
    assert set(logs) == {"loss", "cls_loss", "reg_loss", "cls_accuracy"}
    # the total is the weighted sum of the outputs' losses (no regularisers here)
    assert logs["loss"] == pytest.approx(logs["cls_loss"] + 0.25 * logs["reg_loss"], rel=1e-5)
    # each output's loss is the plain loss of that output's predictions
    pc, pr = model.predict({"a": xa, "b": xb}, verbose=0)
    assert logs["reg_loss"] == pytest.approx(float(np.mean((pr - yr) ** 2)), rel=1e-4)
    ce = -np.mean(np.log(np.clip(pc[np.arange(40), yc], 1e-7, 1)))
    assert logs["cls_loss"] == pytest.approx(ce, rel=1e-4)
    hist = model.fit([xa, xb], {"cls": yc, "reg": yr}, epochs=3, batch_size=8, verbose=0)
    assert set(hist.history) == {"loss", "cls_loss", "reg_loss", "cls_accuracy"}
    assert hist.history["loss"][-1] < hist.history["loss"][0]


def test_shared_layer_weights_counted_once_and_summary_connections():
    model = _two_io()
    names = [w.path for w in model.weights]
    assert len(names) == len(set(names))
    assert sum(1 for n in names if n.startswith("shared/")) == 2
    buf = io.StringIO()
    model.summary(print_fn=lambda s: buf.write(s + "\n"))
    text = buf.getvalue()
    assert "Connected to" in text
    assert "shared[0][0], proj[0][0]" in text      # the concatenate's inputs
    assert "shared[1][0], shared[2][0]" in text    # the gate reads the 2nd and 3rd calls
    assert model.get_layer("cls").units == 3
    with pytest.raises(ValueError, match="no layer named"):
        model.get_layer("nope")


def test_nested_models_share_weights_autoencoder():
    pynn.utils.set_random_seed(5)
    encoder = pynn.Sequential([pynn.Input((8,)), L.Dense(3, activation="tanh")], name="enc")
    dinp = pynn.Input((3,))
    decoder = pynn.Model(dinp, L.Dense(8)(dinp), name="dec")
    auto = pynn.Sequential([encoder, decoder], name="auto")
    x, _ = _data()
    codes_before = encoder.predict(x, verbose=0)
    auto.compile(optimizer="adam", loss="mse")
    h = auto.fit(x, x, epochs=5, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    codes_after = encoder.predict(x, verbose=0)
    assert not np.allclose(codes_before, codes_after)   # training the whole trained the part
    np.testing.assert_allclose(decoder.predict(codes_after, verbose=0),
                               auto.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # the Keras tutorial's probability model: a trained model wrapped with a Softmax
    probs = pynn.Sequential([decoder, L.Softmax()])
    p = probs.predict(codes_after, verbose=0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_functional_save_load_round_trip(tmp_path):
    pynn.utils.set_random_seed(2)
    model = _two_io()
    model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy", "mse"])
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(10, 8)).astype(np.float32), rng.normal(size=(10, 5)).astype(np.float32)]
    model.fit(xs, [rng.integers(0, 3, 10), rng.normal(size=(10, 2))], epochs=1, verbose=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    back = pynn.load_model(path)
    for a, b in zip(model.predict(xs, verbose=0), back.predict(xs, verbose=0)):
        assert np.array_equal(a, b)
    assert [lay.name for lay in back.layers] == [lay.name for lay in model.layers]


def test_nested_save_load_round_trip(tmp_path):
    enc = pynn.Sequential([pynn.Input((4,)), L.Dense(3)], name="e")
    inp = pynn.Input((4,))
    out = L.Dense(2, activation="softmax")(enc(inp))
    model = pynn.Model(inp, out)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    model.save(tmp_path / "n.safetensors")
    back = pynn.load_model(tmp_path / "n.safetensors")
    assert np.array_equal(model.predict(x, verbose=0), back.predict(x, verbose=0))


def test_gan_recipe_trainable_switch_takes_effect_without_recompiling():
    pynn.utils.set_random_seed(4)
    gen = pynn.Sequential([pynn.Input((4,)), L.Dense(6, activation="tanh")], name="g")
    disc = pynn.Sequential([pynn.Input((6,)), L.Dense(1, activation="sigmoid")], name="d")
    disc.compile(optimizer=pynn.optimizers.SGD(0.1), loss="binary_crossentropy")
    gan = pynn.Sequential([gen, disc])
    gan.compile(optimizer=pynn.optimizers.SGD(0.1), loss="binary_crossentropy")
    z = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    ones = np.ones((8, 1), np.float32)
    d0, g0 = disc.get_weights(), gen.get_weights()
    disc.trainable = False
    gan.train_on_batch(z, ones)
    assert all(np.array_equal(a, b) for a, b in zip(disc.get_weights(), d0))
    assert not all(np.array_equal(a, b) for a, b in zip(gen.get_weights(), g0))
    disc.trainable = True
    disc.train_on_batch(gen.predict(z, verbose=0), np.zeros((8, 1), np.float32))
    assert not all(np.array_equal(a, b) for a, b in zip(disc.get_weights(), d0))


def test_subclassed_model_is_traced():
    class Net(pynn.Model):
        def __init__(self):
            super().__init__()
            self.h = L.Dense(8, activation="relu")
            self.o = L.Dense(3, activation="softmax")

        def call(self, x):
            return self.o(self.h(x) + self.h(x))

    pynn.utils.set_random_seed(0)
    net = Net()
    x, y = _data()
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    h = net.fit(x, y, epochs=3, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert len(net.weights) == 4
    assert net.predict(x[:2], verbose=0).shape == (2, 3)


def test_subclassed_model_with_data_dependent_control_flow_is_refused():
    class Bad(pynn.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            y = self.d(x)
            if y:   # needs a value the trace does not have
                return y
            return x

    with pytest.raises(TypeError, match="control flow"):
        Bad().predict(np.ones((1, 3), np.float32))


def test_bad_graphs_give_clear_errors():
    a = pynn.Input((4,))
    b = pynn.Input((5,))
    with pytest.raises(ValueError, match=r"add.*\(None, 4\).*\(None, 5\)"):
        L.Add(name="add")([a, b])
    other = pynn.Input((4,))
    y = L.Dense(2)(other)
    with pytest.raises(ValueError, match="Graph disconnected"):
        pynn.Model(a, y)
    with pytest.raises(ValueError, match="must come from pynn.Input"):
        pynn.Model(y, L.Dense(1)(y))
    dense = L.Dense(3)
    dense(a)
    with pytest.raises(ValueError, match="4 features"):
        dense(b)
    model = pynn.Model([a, b], [L.Dense(1)(a), L.Dense(1)(b)])
    with pytest.raises(ValueError, match="2 inputs"):
        model.predict(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"x\[1\]: the model expects samples of shape \(5,\)"):
        model.predict([np.ones((2, 4), np.float32), np.ones((2, 4), np.float32)])
    with pytest.raises(TypeError, match="inputs and outputs"):
        pynn.Model()


def test_unregistered_and_lambda_classes_are_refused_on_load():
    with pytest.raises(ValueError, match="unknown layer type 'MyLayer'"):
        L.deserialize({"class_name": "MyLayer", "config": {}})
    with pytest.raises(ValueError, match="Lambda layer cannot be loaded"):
        L.deserialize({"class_name": "Lambda", "config": {"function": "..."}})

    @pynn.saving.register_serializable(package="tests")
    class Twice(L.Layer):
        def _emit(self, spec, inputs):
            return L.Add(name=self.name + "_add")._emit(spec, [inputs[0], inputs[0]])

    layer = L.deserialize({"class_name": "tests>Twice", "config": {"name": "tw"}})
    assert isinstance(layer, Twice)


def test_merge_and_shape_layers_compute_what_numpy_computes():
    rng = np.random.default_rng(7)
    a_np = rng.normal(size=(3, 2, 4)).astype(np.float32)
    b_np = rng.normal(size=(3, 2, 4)).astype(np.float32)
    a, b = pynn.Input((2, 4)), pynn.Input((2, 4))
    outs = [L.Add()([a, b]), L.Subtract()([a, b]), L.Multiply()([a, b]), L.Average()([a, b]),
            L.Maximum()([a, b]), L.Minimum()([a, b]), L.Concatenate(axis=1)([a, b]),
            L.Permute((2, 1))(a), L.Reshape((4, -1))(a), L.Flatten()(a),
            L.RepeatVector(3)(L.Flatten()(a)), L.Dot(axes=(2, 2))([a, b]),
            L.Dot(axes=1, normalize=True)([L.Flatten()(a), L.Flatten()(b)])]
    model = pynn.Model([a, b], outs)
    got = model.predict([a_np, b_np], verbose=0)
    fa, fb = a_np.reshape(3, -1), b_np.reshape(3, -1)
    cos = (fa * fb).sum(1, keepdims=True) / np.linalg.norm(fa, axis=1, keepdims=True) \
        / np.linalg.norm(fb, axis=1, keepdims=True)
    want = [a_np + b_np, a_np - b_np, a_np * b_np, (a_np + b_np) / 2, np.maximum(a_np, b_np),
            np.minimum(a_np, b_np), np.concatenate([a_np, b_np], axis=1),
            a_np.transpose(0, 2, 1), a_np.reshape(3, 4, 2), fa,
            np.repeat(fa[:, None, :], 3, axis=1), np.einsum("bik,bjk->bij", a_np, b_np), cos]
    for g, w in zip(got, want):
        # float32 sums of at most 8 products: well within 1e-5 relative
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_memory_info_reports_peak_activation_memory():
    model = pynn.Sequential([pynn.Input((784,)), L.Dense(256, activation="relu"),
                             L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.zeros((128, 784), np.float32)
    model.train_on_batch(x, np.zeros(128, np.int32))
    info = model.memory_info()
    assert set(info) >= {"train_activation_bytes", "predict_activation_bytes"}
    # training keeps every layer's output for backward: at least the three outputs of the batch
    assert info["train_activation_bytes"] >= 4 * 128 * (256 + 128 + 10)
    buf = io.StringIO()
    model.summary(print_fn=lambda s: buf.write(s + "\n"))
    assert "Peak activation memory" in buf.getvalue()


def test_functional_training_is_bitwise_identical_on_one_and_two_threads():
    def run(threads):
        pynn.set_num_threads(threads)
        pynn.utils.set_random_seed(9)
        model = _two_io()
        model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy", "mse"])
        rng = np.random.default_rng(2)
        xs = [rng.normal(size=(300, 8)).astype(np.float32),
              rng.normal(size=(300, 5)).astype(np.float32)]
        model.fit(xs, [rng.integers(0, 3, 300), rng.normal(size=(300, 2))], epochs=2,
                  batch_size=64, verbose=0)
        return model.get_weights()

    before = pynn.get_num_threads()
    try:
        one, two = run(1), run(2)
    finally:
        pynn.set_num_threads(before)
    for a, b in zip(one, two):
        assert np.array_equal(a, b)


def test_frozen_weights_add_no_penalty_in_training_or_evaluation():
    # Keras counts the regularisation of trainable weights only; the old engine's test step
    # added the penalty of frozen ones (train 0.274 vs test 3.383 on one batch and weights)
    pynn.utils.set_random_seed(8)
    frozen = L.Dense(4, kernel_regularizer=pynn.regularizers.L2(1.0), name="frozen")
    frozen.trainable = False
    model = pynn.Sequential([pynn.Input((3,)), frozen, L.Dense(1, name="head")])
    model.compile(optimizer=pynn.optimizers.SGD(1e-30), loss="mse")
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    y = np.zeros((6, 1), np.float32)
    test = model.test_on_batch(x, y)
    train = model.train_on_batch(x, y)   # a vanishing rate: the same weights in both
    mse = float(np.mean(model.predict(x, verbose=0) ** 2))
    assert test == pytest.approx(mse, rel=1e-5)
    assert train == pytest.approx(mse, rel=1e-5)
    frozen.trainable = True                # now it counts: the penalty is added
    pen = float(np.sum(frozen.get_weights()[0] ** 2))
    assert model.test_on_batch(x, y) == pytest.approx(mse + pen, rel=1e-5)
