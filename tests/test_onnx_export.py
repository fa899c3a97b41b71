"""model.export(path, format="onnx"): the file runs in ONNX Runtime and computes what
model.predict computes.

Tolerance: ONNX Runtime and pynn both compute in float32 with their own summation orders and
activation formulas (gelu through erf, mish through softplus...): outputs of order 1 agree to
~1e-6; 2e-5 (atol) leaves room for a few roundings in the deeper models.
"""
from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import activations
from pynn import layers as L

onnx = pytest.importorskip("onnx")   # the pynn[onnx] extra; in [test], so this always runs
ort = pytest.importorskip("onnxruntime")
ATOL = 2e-5


def _run(model, x, tmp_path):
    path = tmp_path / "m.onnx"
    model.export(path, format="onnx")
    onnx.checker.check_model(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xs = x if isinstance(x, list) else [x]
    feeds = {i.name: v for i, v in zip(sess.get_inputs(), xs)}
    return sess.run(None, feeds)


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([np.abs(v) + 0.5 if "variance" in w.path else v for w, v in
                       zip(model.weights, (rng.normal(0, 0.5, w.shape).astype(np.float32)
                                           for w in model.weights))])


def _check(model, x, tmp_path):
    _randomize(model)
    got = _run(model, x, tmp_path)
    want = model.predict(x, verbose=0)
    want = want if isinstance(want, list) else [want]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=ATOL)


def test_conv2d_pooling_batchnorm(tmp_path):
    m = pynn.Sequential([
        L.InputLayer(shape=(9, 9, 3)),
        L.Conv2D(4, 3, padding="same", strides=2, activation="relu"),
        L.BatchNormalization(),
        L.MaxPooling2D(padding="same"),
        L.Conv2D(6, 2, dilation_rate=1, use_bias=False, activation="gelu"),
        L.AveragePooling2D(pool_size=2, strides=1, padding="same"),
        L.Conv2D(4, 1, groups=2, activation="swish"),
        L.GlobalAveragePooling2D(),
        L.Dropout(0.5),
        L.Dense(3, activation="softmax"),
    ])
    x = np.random.default_rng(1).normal(size=(5, 9, 9, 3)).astype(np.float32)
    _check(m, x, tmp_path)


def test_conv1d_and_reshaping(tmp_path):
    m = pynn.Sequential([
        L.InputLayer(shape=(12, 3)),
        L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="elu"),
        L.Conv1D(4, 3, padding="same", strides=2),
        L.BatchNormalization(),
        L.MaxPooling1D(2),
        L.AveragePooling1D(1),
        L.GlobalMaxPooling1D(keepdims=True),
        L.Permute((2, 1)),
        L.Reshape((2, 2)),
        L.Flatten(),
        L.RepeatVector(3),
        L.Dense(2),
        L.PReLU(),
        L.GlobalAveragePooling1D(),
        L.Identity(),
    ])
    x = np.random.default_rng(2).normal(size=(4, 12, 3)).astype(np.float32)
    _check(m, x, tmp_path)


def test_functional_merges_two_inputs_two_outputs(tmp_path):
    a, b = L.Input((4,), name="a"), L.Input((4,), name="b")
    inner = pynn.Sequential([L.InputLayer(shape=(4,)), L.Dense(4, activation="tanh")],
                            name="inner")
    h, g = L.Dense(4)(a), inner(b)
    merged = [L.Add()([h, g, a]), L.Subtract()([h, g]), L.Multiply()([h, g]),
              L.Average()([h, g]), L.Maximum()([h, g]), L.Minimum()([h, g])]
    cat = L.Concatenate(axis=-1)(merged)
    dots = [L.Dot(axes=1)([h, g]), L.Dot(axes=1, normalize=True)([h, g])]
    out1 = L.Dense(2, name="y1")(L.Concatenate()([cat, *dots]))
    out2 = L.Activation("sigmoid", name="y2")(g)
    m = pynn.Model([a, b], [out1, out2])
    rng = np.random.default_rng(3)
    _check(m, [rng.normal(size=(6, 4)).astype(np.float32) for _ in range(2)], tmp_path)


def test_dot_of_matrices(tmp_path):
    a, b = L.Input((3, 4)), L.Input((3, 5))
    m = pynn.Model([a, b], L.Dot(axes=(1, 1))([a, b]))
    rng = np.random.default_rng(4)
    _check(m, [rng.normal(size=(2, 3, 4)).astype(np.float32),
               rng.normal(size=(2, 3, 5)).astype(np.float32)], tmp_path)


def test_every_activation(tmp_path):
    """Each of pynn's activations (with non-default parameters where it has them) on values
    spanning both sides of every kink."""
    x_in = L.Input((7,))
    outs = []
    for name in activations.names():
        if name == "rrelu":
            act = L.Activation("rrelu")   # inference: the mean slope
        elif name == "leaky_relu":
            act = L.LeakyReLU(0.15)
        elif name == "elu":
            act = L.ELU(0.7)
        else:
            act = L.Activation(name)
        outs.append(act(x_in))
    outs.append(L.Dense(3, activation="hard_swish")(x_in))
    m = pynn.Model(x_in, L.Concatenate()(outs))
    x = np.linspace(-4, 4, 7 * 9, dtype=np.float32).reshape(9, 7)
    _check(m, x, tmp_path)


@pytest.mark.parametrize("name,params", [("softplus", [2.0]), ("gelu", [1.0]),
                                         ("hard_tanh", [-0.5, 2.0]), ("soft_shrink", [1.5]),
                                         ("hard_shrink", [0.25]), ("rrelu", [0.1, 0.5])])
def test_activation_parameters(tmp_path, name, params):
    """The parameters the engine takes (softplus's beta, gelu's tanh approximation...), set on
    the layer directly: Keras's Activation layer only names a function."""
    x_in = L.Input((5,))
    act = L.Activation(name)
    act._act_params = list(pynn._core.activation_params(name, dict(zip(_param_names(name),
                                                                       params))))
    assert act._act_params == params
    m = pynn.Model(x_in, act(x_in))
    _check(m, np.linspace(-3, 3, 20, dtype=np.float32).reshape(4, 5), tmp_path)


def _param_names(name):
    from pynn.reference import activations as ref

    return ref.get(name).param_names


def test_embedding(tmp_path):
    m = pynn.Sequential([L.InputLayer(shape=(5,)), L.Embedding(7, 3),
                         L.GlobalAveragePooling1D(), L.Dense(2)])
    x = np.random.default_rng(7).integers(0, 7, size=(4, 5)).astype(np.float32)
    _check(m, x, tmp_path)


def test_argmax_and_one_hot(tmp_path):
    x_in = L.Input((3, 4))
    a = pynn.ops.one_hot(pynn.ops.argmax(x_in, axis=-1), 4)
    b = pynn.ops.argmax(x_in, keepdims=True)
    c = pynn.ops.one_hot(pynn.ops.multiply(x_in, 3.0), 3)   # negatives, fractions, >= 3
    m = pynn.Model(x_in, [a, b, c])
    x = np.random.default_rng(8).normal(size=(5, 3, 4)).astype(np.float32)
    x[0, 0, :2] = x[0, 0, :2].max() + 1   # a tie: both take the first
    _check(m, x, tmp_path)


def test_op_without_onnx_counterpart_is_named(tmp_path, monkeypatch):
    from pynn.models import onnx_export

    monkeypatch.delitem(onnx_export._OPS, "argmax")   # every op pynn has is exported now
    x_in = L.Input((3,))
    m = pynn.Model(x_in, pynn.ops.one_hot(pynn.ops.argmax(x_in, axis=-1), 3))
    with pytest.raises(ValueError, match=r"layer '.*' \(op 'argmax'\) has no ONNX counterpart"):
        m.export(tmp_path / "m.onnx", format="onnx")
    assert not (tmp_path / "m.onnx").exists()
    seq = pynn.Sequential([L.InputLayer(shape=(4, 2)), L.LSTM(3, activation="gelu")])
    with pytest.raises(ValueError, match=r"layer 'lstm.*': .*'gelu'.* no ONNX counterpart"):
        seq.export(tmp_path / "r.onnx", format="onnx")


def test_recurrent_layers(tmp_path):
    """SimpleRNN, LSTM and GRU (both reset_after settings, activations other than the
    defaults) as ONNX's RNN / LSTM / GRU."""
    m = pynn.Sequential([
        L.InputLayer(shape=(6, 3)),
        L.LSTM(4, return_sequences=True),
        L.GRU(3, return_sequences=True),
        L.GRU(3, reset_after=False, activation="relu", return_sequences=True),
        L.SimpleRNN(2, return_sequences=True),
        L.LSTM(3, recurrent_activation="tanh", use_bias=False),
        L.Dense(2),
    ])
    x = np.random.default_rng(8).normal(size=(4, 6, 3)).astype(np.float32)
    _check(m, x, tmp_path)


def test_bad_arguments(tmp_path):
    m = pynn.Sequential([L.InputLayer(shape=(2,)), L.Dense(1)])
    with pytest.raises(ValueError, match="format"):
        m.export(tmp_path / "m.onnx", format="tf_saved_model")
    with pytest.raises(ValueError, match=r"\.onnx"):
        m.export(tmp_path / "m.pb", format="onnx")
    with pytest.raises(TypeError, match="filepath"):
        m.export(3, format="onnx")


def test_custom_layer_and_pynn_ops(tmp_path):
    """A layer written with add_weight and pynn.ops, and traced pynn.ops code: broadcasting
    across ranks, comparisons, where, reductions (a value per sample included), matmul."""
    from pynn import ops

    class Scale(L.Layer):
        def build(self, input_shape):
            self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="s")

        def call(self, x):
            return x * self.s

    x = L.Input((2, 4))
    y = Scale()(x)
    v = L.Input((4,))
    outs = [
        ops.mean(ops.sqrt(ops.abs(y)) + 1.0, axis=-1),
        ops.matmul(y, ops.transpose(y, (0, 2, 1))),
        ops.matmul(v, ops.transpose(y, (0, 2, 1))),
        ops.maximum(ops.sum(x, axis=1), ops.clip(ops.sum(y, axis=1), -1, 1)),
        ops.where(ops.greater(x, 0.0), x, 2.0 - x),
        ops.mean(x),
        ops.max(ops.square(y) / (1.0 + ops.exp(-y)), axis=1, keepdims=True),
        v - y,
        ops.not_equal(ops.sign(x), 1.0) * ops.power(ops.abs(x) + 1.0, 1.5),
    ]
    m = pynn.Model([x, v], outs)
    rng = np.random.default_rng(6)
    _check(m, [rng.normal(size=(3, 2, 4)).astype(np.float32),
               rng.normal(size=(3, 4)).astype(np.float32)], tmp_path)
