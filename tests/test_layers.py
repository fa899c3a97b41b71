"""Layers: constructor validation, config round trips, weights in Keras's order, build."""
from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import layers

ALL = [
    lambda: layers.Dense(4, activation="relu", kernel_regularizer="l2"),
    lambda: layers.Dense(3, use_bias=False, kernel_initializer="he_normal"),
    lambda: layers.Activation("gelu"),
    lambda: layers.Dropout(0.25, seed=3),
    lambda: layers.BatchNormalization(momentum=0.9, epsilon=1e-5),
    lambda: layers.BatchNormalization(center=False),
    lambda: layers.Flatten(),
    lambda: layers.LeakyReLU(negative_slope=0.1),
    lambda: layers.PReLU(),
    lambda: layers.ELU(alpha=0.5),
    lambda: layers.Softmax(),
    lambda: layers.ReLU(),
]


@pytest.mark.parametrize("make", ALL)
def test_config_round_trip(make):
    layer = make()
    cfg = layer.get_config()
    again = type(layer).from_config(cfg)
    assert again.get_config() == cfg
    ser = layers.serialize(layer)
    assert layers.deserialize(ser).get_config() == cfg


def test_dense_weights_have_keras_shapes_and_order():
    model = pynn.Sequential([pynn.Input((5,)), layers.Dense(3)])
    kernel, bias = model.get_weights()
    assert kernel.shape == (5, 3) and bias.shape == (3,)
    assert np.all(bias == 0)  # zeros initializer
    # glorot_uniform: |w| <= sqrt(6 / (fan_in + fan_out))
    assert np.abs(kernel).max() <= np.sqrt(6 / 8)
    assert np.abs(kernel).max() > 0


def test_batchnorm_weights_order_and_counts():
    model = pynn.Sequential([pynn.Input((4,)), layers.BatchNormalization()])
    gamma, beta, mean, var = model.get_weights()
    assert np.all(gamma == 1) and np.all(beta == 0) and np.all(mean == 0) and np.all(var == 1)
    model.summary(print_fn=lambda *_: None)
    assert model.count_params() == 16


def test_set_weights_round_trip_and_validation():
    model = pynn.Sequential([pynn.Input((3,)), layers.Dense(2), layers.Dense(1)])
    rng = np.random.default_rng(0)
    new = [rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="expected 4 arrays"):
        model.set_weights(new[:3])
    with pytest.raises(ValueError, match=r"expected shape \(3, 2\)"):
        model.set_weights([np.zeros((2, 3))] + new[1:])
    bad = [w.copy() for w in new]
    bad[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.set_weights(bad)


def test_get_weights_returns_copies():
    model = pynn.Sequential([pynn.Input((3,)), layers.Dense(2)])
    w = model.get_weights()
    w[0][:] = 123.0
    assert not np.any(model.get_weights()[0] == 123.0)


def test_layer_weights_before_build_are_applied_at_build():
    layer = layers.Dense(2)
    layer.set_weights([np.ones((3, 2)), np.full(2, 0.5)])
    model = pynn.Sequential([layer])
    model.build((3,))
    kernel, bias = model.get_weights()
    assert np.all(kernel == 1) and np.all(bias == 0.5)


def test_flatten_accepts_images():
    model = pynn.Sequential([pynn.Input((4, 5)), layers.Flatten(), layers.Dense(2)])
    assert model.output_shape == (None, 2)
    x = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(model.predict(x), x.reshape(3, 20) @ kernel + bias, rtol=1e-5)


def test_dense_on_images_acts_on_the_last_axis():
    # Keras 3: Dense on (batch, 4, 5) multiplies the last axis, giving (batch, 4, 2)
    model = pynn.Sequential([pynn.Input((4, 5)), layers.Dense(2)])
    assert model.output_shape == (None, 4, 2)
    x = np.random.default_rng(1).random((3, 4, 5)).astype(np.float32)
    kernel, bias = model.get_weights()
    assert kernel.shape == (5, 2)
    np.testing.assert_allclose(model.predict(x), x @ kernel + bias, rtol=1e-5, atol=1e-6)


def test_input_shape_argument_on_first_layer():
    model = pynn.Sequential([layers.Dense(2, input_shape=(7,))])
    assert model.input_shape == (None, 7)
    assert model.get_weights()[0].shape == (7, 2)


def test_activation_layers_compute_their_functions():
    x = np.linspace(-3, 3, 13, dtype=np.float32)[None, :]
    cases = [
        (layers.LeakyReLU(negative_slope=0.1), np.where(x > 0, x, 0.1 * x)),
        (layers.ELU(alpha=0.5), np.where(x > 0, x, 0.5 * (np.exp(x) - 1))),
        (layers.ReLU(), np.maximum(x, 0)),
        (layers.Activation("tanh"), np.tanh(x)),
        (layers.Softmax(), np.exp(x) / np.exp(x).sum()),
        (layers.PReLU(), np.maximum(x, 0)),  # alpha starts at zero
    ]
    for layer, expected in cases:
        model = pynn.Sequential([pynn.Input((13,)), layer])
        np.testing.assert_allclose(model.predict(x), expected, rtol=2e-6, atol=2e-7,
                                   err_msg=type(layer).__name__)


def test_dropout_is_identity_at_inference_and_drops_in_training():
    model = pynn.Sequential([pynn.Input((1000,)), layers.Dropout(0.5, seed=1)])
    x = np.ones((4, 1000), np.float32)
    assert np.array_equal(model.predict(x), x)


def test_batchnorm_uses_moving_statistics_at_inference():
    model = pynn.Sequential([pynn.Input((2,)), layers.BatchNormalization(epsilon=1e-3)])
    model.set_weights([np.array([2.0, 1.0]), np.array([0.5, 0.0]), np.array([1.0, -1.0]),
                       np.array([4.0, 1.0])])
    x = np.array([[3.0, 0.0]], np.float32)
    expected = np.array([[2.0 * (3 - 1) / np.sqrt(4.001) + 0.5, (0 + 1) / np.sqrt(1.001)]])
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: layers.Dense(0), ValueError, "units=0"),
    (lambda: layers.Dense(-3), ValueError, "units"),
    (lambda: layers.Dense(2.5), ValueError, "units"),
    (lambda: layers.Dense("8"), ValueError, "units"),
    (lambda: layers.Dense(4, activation="nope"), ValueError, "activation: unknown name 'nope'"),
    (lambda: layers.Dense(4, activation=3), TypeError, "activation"),
    (lambda: layers.Dense(4, kernel_initializer="nope"), ValueError, "initializer"),
    (lambda: layers.Dense(4, kernel_regularizer="l3"), ValueError, "regularizer"),
    (lambda: layers.Dense(4, foo=1), TypeError, "foo"),
    (lambda: layers.Dropout(1.0), ValueError, "rate"),
    (lambda: layers.Dropout(-0.1), ValueError, "rate"),
    (lambda: layers.Dropout("0.5"), TypeError, "rate"),
    (lambda: layers.BatchNormalization(momentum=1.5), ValueError, "momentum"),
    (lambda: layers.BatchNormalization(epsilon=0), ValueError, "epsilon"),
    (lambda: layers.LeakyReLU(negative_slope=-1), ValueError, "negative_slope"),
    (lambda: layers.Activation("softmaxx"), ValueError, "softmaxx"),
    (lambda: layers.Input((0,)), ValueError, "shape"),
    (lambda: layers.Input((None, 3)), ValueError, "without the batch axis"),
    (lambda: pynn.regularizers.L2(-1), ValueError, "l2"),
])
def test_bad_constructor_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("make", [lambda: [layers.Activation("rrelu")],
                                  lambda: [layers.Dense(1000, activation="rrelu",
                                                        kernel_initializer="identity",
                                                        use_bias=False)]])
def test_rrelu_random_slopes_in_training_mean_slope_at_inference(make):
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([pynn.Input((1000,))] + make())
    model.compile(optimizer=pynn.optimizers.SGD(1e-9), loss="mse")
    x = -np.ones((3, 1000), np.float32)
    lower, upper = 1 / 8, 1 / 3
    np.testing.assert_allclose(model.predict(x), -(lower + upper) / 2, rtol=1e-6)
    # the training-mode output of one step (the graph returns it on request)
    out = model._net.train_step([x], [np.zeros((3, 1000), np.float32)], [None], None, True)[3]
    slopes = -out[0]
    assert slopes.min() >= lower and slopes.max() <= upper
    # uniform on [1/8, 1/3]: mean 0.229, std 0.060; 3000 draws put the sample mean within
    # 0.0011 (one standard error) of it, so 0.01 is a > 9-sigma margin
    assert abs(slopes.mean() - (lower + upper) / 2) < 0.01
    assert slopes.std() > 0.05
