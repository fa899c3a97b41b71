"""Convolutional networks beyond the op: the Fashion-MNIST convnet example's data path, the
CLI's `train --model cnn`, and the plots of a convolution's filters and feature maps."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")  # before matplotlib is imported: no display needed

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import pynn  # noqa: E402
from pynn import layers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def one_thread():
    before = pynn.get_num_threads()
    pynn.set_num_threads(1)
    yield
    pynn.set_num_threads(before)


def tiny_convnet(seed=0, filters=6):
    pynn.utils.set_random_seed(seed)
    return pynn.Sequential([pynn.Input((8, 8, 1)), layers.Conv2D(filters, 3, activation="relu"),
                            layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3)])


# --- pynn.plot ------------------------------------------------------------------------------
def test_conv_filters_draws_each_filter_of_the_first_conv2d():
    from pynn import plot

    model = tiny_convnet()
    kernel = model.layers[0].get_weights()[0]
    fig = plot.conv_filters(model, n=4)
    assert len(fig.axes) == 4
    for f, ax in enumerate(fig.axes):
        np.testing.assert_array_equal(ax.get_images()[0].get_array(), kernel[:, :, 0, f])
    assert len(plot.conv_filters(model).axes) == 6      # n is capped by the filter count
    with pytest.raises(ValueError, match="channel"):
        plot.conv_filters(model, channel=1)
    with pytest.raises(ValueError, match="no Conv2D"):
        plot.conv_filters(pynn.Sequential([pynn.Input((4,)), layers.Dense(2)]))


def test_feature_maps_are_the_first_layers_outputs_for_one_image():
    from pynn import plot

    model = tiny_convnet()
    image = np.random.default_rng(1).random((8, 8, 1)).astype(np.float32)
    conv = model.layers[0]
    kernel, bias = conv.get_weights()
    # the layer's output computed here: valid 3x3 cross-correlation, relu
    want = np.zeros((6, 6, 6))
    for i in range(6):
        for j in range(6):
            want[i, j] = np.tensordot(image[i:i + 3, j:j + 3, :], kernel, axes=3) + bias
    want = np.maximum(want, 0)
    fig = plot.feature_maps(model, image, n=5)
    assert len(fig.axes) == 6                             # the input, then 5 maps
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), image[:, :, 0])
    for f, ax in enumerate(fig.axes[1:]):
        np.testing.assert_allclose(ax.get_images()[0].get_array(), want[:, :, f], atol=1e-5)
    with pytest.raises(ValueError, match="image"):
        plot.feature_maps(model, np.zeros((7, 8, 1)))


# --- the example and the CLI ----------------------------------------------------------------
def load_example():
    spec = importlib.util.spec_from_file_location("fashion_mnist_cnn",
                                                  ROOT / "examples" / "fashion_mnist_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_data_path_and_model_on_the_shipped_subset(tmp_path):
    example = load_example()
    (x_train, y_train), (x_test, y_test) = example.load(small=True)
    assert x_train.shape == (1000, 28, 28, 1) and x_train.dtype == np.float32
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0 and x_test.shape[1:] == (28, 28, 1)
    model = example.build_model()
    assert [type(layer).__name__ for layer in model.layers][:4] == \
        ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D"]
    assert model.output_shape == (None, 10)
    result = example.main(small=True, epochs=1, out_dir=str(tmp_path))
    # one epoch on 1,000 images learns something: well above chance (0.1) on ten classes
    assert result["accuracy"] > 0.3
    names = sorted(os.path.basename(p) for p in result["files"])
    assert names == ["confusion_matrix.png", "conv_filters.png", "feature_maps.png",
                     "history.png"]


def test_cli_train_model_cnn_on_the_subset(tmp_path, monkeypatch, capsys):
    from pynn import cli

    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from test_cli import offline_without_full_set
    finally:
        sys.path.remove(str(ROOT / "tests"))
    offline_without_full_set(monkeypatch, tmp_path)
    out_dir = tmp_path / "out"
    code = cli.main(["train", "--model", "cnn", "--epochs", "1", "--output", str(out_dir),
                     "--threads", "1", "--verbose", "0", "--no-plots"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "conv2d" in out.lower()                        # the summary shows the convnet
    model = pynn.load_model(str(out_dir / "model.safetensors"))
    assert "Conv2D" in [type(layer).__name__ for layer in model.layers]
    assert model.input_shape == (None, 28, 28)            # images go in as the MLP's do
    assert cli.main(["train", "--model", "resnet"]) != 0
    assert "--model" in capsys.readouterr().err


# DepthwiseConv / SeparableConv against Keras 3: tests/test_conv_keras.py


def test_depthwise_layers_save_load_and_config_round_trip(tmp_path):
    model = pynn.Sequential([
        pynn.Input((8, 8, 2)),
        layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu"),
        layers.SeparableConv2D(4, 3, depth_multiplier=2),
        layers.Reshape((36, 4)),
        layers.DepthwiseConv1D(2),
        layers.SeparableConv1D(3, 3, padding="same")])
    x = np.random.default_rng(2).standard_normal((2, 8, 8, 2)).astype(np.float32)
    want = model.predict(x, verbose=0)
    path = str(tmp_path / "m.safetensors")
    model.save(path)
    again = pynn.load_model(path)
    np.testing.assert_array_equal(again.predict(x, verbose=0), want)
    assert [type(layer).__name__ for layer in again.layers] == \
        [type(layer).__name__ for layer in model.layers]
    for layer in model.layers:
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="depth_multiplier"):
        layers.DepthwiseConv2D(3, depth_multiplier=0)
    with pytest.raises(ValueError, match="padding"):
        layers.DepthwiseConv1D(4, padding="causal")   # Keras refuses it too


# --- BatchNormalization and Dropout on image-shaped inputs ----------------------------------
# Keras 3.15's Variable.numpy() calls np.array(variable), which NumPy 2 flags with this
# warning (Keras's own code, not pynn's): ignored here only.
KERAS_NUMPY2 = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"


@pytest.mark.filterwarnings(KERAS_NUMPY2)
def test_batchnorm_and_dropout_on_4d_inputs_follow_keras():
    import keras

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((6, 5, 4, 3)) * 2 + 1).astype(np.float32)
    k = keras.Sequential([keras.Input((5, 4, 3)), keras.layers.BatchNormalization()])
    p = pynn.Sequential([pynn.Input((5, 4, 3)), layers.BatchNormalization()])
    weights = [w + 0.3 * rng.standard_normal(w.shape).astype(np.float32)
               for w in k.get_weights()]
    weights[3] = np.abs(weights[3]) + 0.5                 # a positive moving variance
    k.set_weights(weights)
    p.set_weights(weights)
    np.testing.assert_allclose(p.predict(x, verbose=0), k.predict(x, verbose=0), atol=1e-5)
    # training: statistics over batch, height and width per channel; the moving averages
    # after one step at a negligible learning rate show which axes were reduced
    k.compile(optimizer=keras.optimizers.SGD(1e-12), loss="mse")
    p.compile(optimizer=pynn.optimizers.SGD(1e-12), loss="mse")
    k.train_on_batch(x, x)
    p.fit(x, x, batch_size=6, epochs=1, verbose=0)
    for a, b in zip(p.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    drop = pynn.Sequential([pynn.Input((5, 4, 3)), layers.Dropout(0.5)])
    ones = np.ones((40, 5, 4, 3), np.float32)
    np.testing.assert_array_equal(drop.predict(ones, verbose=0), ones)   # inference: identity
    drop.compile(optimizer="sgd", loss="mse")
    # in training each value is dropped or scaled by 1 / (1 - rate) = 2 on its own, so the
    # squared error against 0 averages 0.5 * 4 = 2 (identity would give 1); over 2,400
    # values its standard deviation is 2 / 49, and the bounds are 5 of those
    loss = drop.fit(ones, np.zeros_like(ones), batch_size=40, verbose=0).history["loss"][0]
    assert 1.8 < loss < 2.2
