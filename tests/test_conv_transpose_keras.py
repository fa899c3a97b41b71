"""Conv1DTranspose and Conv2DTranspose held to Keras 3 itself (torch backend): the same layer
with the same weights (Keras's set_weights into pynn's) gives the same outputs and, after one
SGD step on the same batch, the same weights; .keras files move both ways; the ONNX export
(ConvTranspose) runs in ONNX Runtime and predicts what pynn predicts.

Tolerances: both sides compute in float32 with different summation orders over at most
kh*kw*C = 54 products of O(1) terms: outputs agree to a few 1e-7, so atol 1e-5 leaves room for
rounding only (a wrong tap or a misplaced output is O(0.1)). After one SGD step (learning
rate 0.1) the weights differ by the rounding of their gradients times 0.1: atol 1e-5.
"""
from __future__ import annotations

import numpy as np
import pytest
import test_keras_format as base
from keras_helpers import case_rng, to_numpy

import pynn
from pynn import layers as L

pytestmark = base.pytestmark
keras = base.keras   # the module-scoped fixture giving Keras (torch backend)
ATOL = 1e-5

# (class name, input sample shape, keyword arguments)
CONFIGS = [
    ("Conv2DTranspose", (5, 6, 3), {"filters": 4, "kernel_size": 3, "strides": 2,
                                    "padding": "same", "activation": "relu"}),
    ("Conv2DTranspose", (4, 5, 3), {"filters": 2, "kernel_size": (3, 2), "strides": (3, 2),
                                    "padding": "valid", "output_padding": (2, 1)}),
    ("Conv2DTranspose", (5, 4, 2), {"filters": 3, "kernel_size": 3, "dilation_rate": 2,
                                    "padding": "same", "activation": "tanh"}),
    ("Conv2DTranspose", (3, 5, 4), {"filters": 2, "kernel_size": 4, "strides": 2,
                                    "padding": "same", "output_padding": 1,
                                    "data_format": "channels_first"}),
    ("Conv2DTranspose", (4, 4, 2), {"filters": 3, "kernel_size": 2, "strides": 3,
                                    "padding": "same", "use_bias": False}),
    ("Conv1DTranspose", (7, 3), {"filters": 4, "kernel_size": 3, "strides": 2,
                                 "padding": "same", "activation": "sigmoid"}),
    ("Conv1DTranspose", (6, 2), {"filters": 3, "kernel_size": 5, "strides": 3,
                                 "output_padding": 2}),
    ("Conv1DTranspose", (3, 6), {"filters": 2, "kernel_size": 3, "dilation_rate": 2,
                                 "data_format": "channels_first"}),
]


def _pair(keras, index):
    """The same layer in Keras and pynn, Keras's random weights copied into pynn."""
    name, shape, kwargs = CONFIGS[index]
    rng = case_rng("tconv_keras", index)
    km = keras.Sequential([keras.Input(shape), getattr(keras.layers, name)(**kwargs)])
    km.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.5 for w in km.weights])
    model = pynn.Sequential([pynn.Input(shape), getattr(L, name)(**kwargs)])
    model.set_weights(km.get_weights())
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    return km, model, x, rng


@pytest.mark.parametrize("index", range(len(CONFIGS)))
def test_outputs_and_one_sgd_step_match_keras(keras, index):
    km, model, x, rng = _pair(keras, index)
    want = to_numpy(km(x))
    got = model.predict(x, verbose=0)
    assert got.shape == want.shape
    assert model.output_shape == tuple(km.output_shape)
    np.testing.assert_allclose(got, want, atol=ATOL)
    target = rng.normal(size=want.shape).astype(np.float32)
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse")
    km.train_on_batch(x, target)
    model.train_on_batch(x, target)
    for a, b in zip(model.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), atol=ATOL)


def test_keras_file_into_pynn_and_back(keras, tmp_path):
    """A Keras decoder (both layers, every argument of interest) saved by Keras predicts the
    same in pynn, and pynn's re-save predicts the same in Keras."""
    kl = keras.layers
    rng = case_rng("tconv_file")
    i = keras.Input((4, 4, 3))
    h = kl.Conv2DTranspose(5, 3, strides=2, padding="same", activation="relu")(i)
    h = kl.Conv2DTranspose(4, (2, 3), strides=(2, 3), output_padding=(1, 0),
                           kernel_regularizer="l2")(h)
    h = kl.Reshape((h.shape[1], h.shape[2] * 4))(h)
    h = kl.Conv1DTranspose(2, 3, dilation_rate=2, padding="same", activation="tanh")(h)
    km = keras.Model(i, h)
    for w in km.weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32) * 0.5)
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    want = np.asarray(km.predict(x, verbose=0))
    km.save(tmp_path / "k.keras")
    model = pynn.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(model.predict(x, verbose=0), want, atol=ATOL)
    second = model.layers[2]
    assert type(second).__name__ == "Conv2DTranspose"
    assert second.output_padding == (1, 0) and second.strides == (2, 3)
    model.save(tmp_path / "p.keras")
    back = keras.saving.load_model(tmp_path / "p.keras")
    np.testing.assert_allclose(np.asarray(back.predict(x, verbose=0)), want, atol=ATOL)


def test_pynn_file_into_keras(keras, tmp_path):
    rng = case_rng("tconv_pynn_file")
    model = pynn.Sequential([pynn.Input((2, 6, 5)),
                             L.Conv2DTranspose(3, 3, strides=2, data_format="channels_first",
                                               activation="elu"),
                             L.Reshape((3 * 13, 11)),
                             L.Conv1DTranspose(4, 2, strides=2, output_padding=1)])
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.5
                       for w in model.get_weights()])
    x = rng.normal(size=(3, 2, 6, 5)).astype(np.float32)
    model.save(tmp_path / "p.keras")
    km = keras.saving.load_model(tmp_path / "p.keras")
    np.testing.assert_allclose(np.asarray(km.predict(x, verbose=0)),
                               model.predict(x, verbose=0), atol=ATOL)


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    """Every geometry the ONNX writer has to express: "same" cropping, output_padding past
    the full output, gaps (stride > kernel), dilation, channels_first, 1-D."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    rng = case_rng("tconv_onnx")
    inp = pynn.Input((5, 4, 3))
    a = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")(inp)
    b = L.Conv2DTranspose(2, 2, strides=3, padding="same")(a)
    c = L.Conv2DTranspose(3, (3, 2), strides=(2, 3), output_padding=(1, 2))(b)
    d = L.Conv2DTranspose(2, 3, dilation_rate=2, padding="same",
                          data_format="channels_first")(c)
    e = L.Conv1DTranspose(3, 4, strides=3, padding="same", output_padding=1)(
        L.Reshape((-1, 2))(d))
    model = pynn.Model(inp, e)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.3
                       for w in model.get_weights()])
    x = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
    path = tmp_path / "m.onnx"
    model.export(path, format="onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    want = model.predict(x, verbose=0)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())
