"""ONNX export of the normalization, preprocessing and noise layers, run in ONNX Runtime
against model.predict (tolerance as in test_onnx_export.py: float32 on both sides with their
own summation orders, 2e-5 atol on outputs of order 1)."""
from __future__ import annotations

import numpy as np
import pytest
import test_onnx_export as base

import pynn
from pynn import layers as L

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _op_types(model, tmp_path):
    model.export(tmp_path / "t.onnx", format="onnx")
    return [n.op_type for n in onnx.load(str(tmp_path / "t.onnx")).graph.node]


def test_layer_normalization_is_onnx_layer_normalization(tmp_path):
    """Trailing axes: ONNX's LayerNormalization (opset 17), with and without scale/center."""
    m = pynn.Sequential([
        L.InputLayer(shape=(3, 5)), L.LayerNormalization(epsilon=1e-2),
        L.LayerNormalization(axis=[-2, -1]), L.LayerNormalization(center=False, scale=False),
        L.LayerNormalization(center=False)])
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(4, 3, 5)).astype(np.float32)
    base._check(m, x, tmp_path)
    ops = _op_types(m, tmp_path)
    assert ops.count("LayerNormalization") == 4
    assert "ReduceMean" not in ops


def test_layer_normalization_over_leading_axes_and_group_normalization(tmp_path):
    m = pynn.Sequential([
        L.InputLayer(shape=(4, 3, 6)), L.LayerNormalization(axis=1),
        L.LayerNormalization(axis=[1, 3], scale=False), L.GroupNormalization(groups=3),
        L.GroupNormalization(groups=2, axis=1, center=False),
        L.GroupNormalization(groups=6, epsilon=0.1)])
    x = np.random.default_rng(1).normal(-1.0, 2.0, size=(3, 4, 3, 6)).astype(np.float32)
    base._check(m, x, tmp_path)


def test_preprocessing_and_noise_layers(tmp_path):
    """Normalization (adapted, and given as constants, and inverted) and Rescaling lower to
    Mul/Add/Sub/Div; noise and activity regularization are the identity at inference."""
    rng = np.random.default_rng(2)
    norm = L.Normalization()
    norm.adapt(rng.normal(3.0, 2.0, size=(50, 4)).astype(np.float32))
    m = pynn.Sequential([
        L.InputLayer(shape=(4,)), norm, L.Rescaling(1 / 127.5, offset=-1.0),
        L.GaussianNoise(0.5), L.GaussianDropout(0.3), L.AlphaDropout(0.3),
        L.ActivityRegularization(l1=0.1, l2=0.1), L.UnitNormalization(),
        L.Normalization(mean=0.5, variance=2.0, invert=True), L.Dense(3)])
    x = rng.normal(3.0, 2.0, size=(6, 4)).astype(np.float32)
    want = m.predict(x, verbose=0)
    got = base._run(m, x, tmp_path)[0]
    np.testing.assert_allclose(got, want, atol=base.ATOL)
    ops = set(_op_types(m, tmp_path))
    assert {"Sub", "Div", "Mul", "Add"} <= ops
    assert not ops & {"RandomNormal", "RandomNormalLike", "RandomUniformLike", "Dropout"}


def test_depthwise_and_separable_convolutions_are_grouped_onnx_convs(tmp_path):
    m = pynn.Sequential([
        L.InputLayer(shape=(8, 7, 3)), L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
        L.SeparableConv2D(4, 3, activation="relu"), L.Reshape((-1, 4)),
        L.SeparableConv1D(2, 2, depth_multiplier=3), L.DepthwiseConv1D(2)])
    rng = np.random.default_rng(0)
    m.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in m.get_weights()])
    base._check(m, rng.normal(size=(3, 8, 7, 3)).astype(np.float32), tmp_path)
    assert _op_types(m, tmp_path).count("Conv") == 6   # separable: depthwise + pointwise
