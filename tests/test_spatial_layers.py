"""UpSampling1D/2D, ZeroPadding1D/2D, Cropping1D/2D and SpatialDropout1D/2D against real
Keras 3 (torch backend): outputs for every argument form and data_format, gradients through
them (one SGD step of a model whose convolution sits before the layer matches Keras's step),
spatial dropout's channel masks, and .keras / .safetensors round trips.

Tolerances: padding, cropping and nearest upsampling only move values, so their outputs are
compared exactly; bilinear upsampling sums weighted copies in another order than Keras,
values of order 1 so 1e-6. The pad_crop op only copies, so the engine equals its twin exactly;
finite differences on the twin (float64, central, h 1e-6) agree to 1e-6 relative. The SGD step compares weights of order 1 after float32 convolutions summed
in different orders on both sides: 1e-5 leaves a few roundings of room.
"""
from __future__ import annotations

import numpy as np
import pytest
import test_keras_format as base
from keras_helpers import case_rng, to_numpy
from test_ref_dense import numeric_grad

import pynn
from pynn import layers as L
from pynn.models.graph_spec import GraphSpec
from pynn.reference import pad_crop as ref_pad_crop

pytestmark = base.pytestmark
keras = base.keras   # the module-scoped fixture giving Keras (torch backend)

CF = "channels_first"
CASES = [
    ("ZeroPadding1D", (7, 3), {}),
    ("ZeroPadding1D", (7, 3), {"padding": 3}),
    ("ZeroPadding1D", (7, 3), {"padding": (0, 2)}),
    ("ZeroPadding1D", (3, 7), {"padding": (2, 1), "data_format": CF}),
    ("ZeroPadding2D", (5, 6, 3), {}),
    ("ZeroPadding2D", (5, 6, 3), {"padding": 2}),
    ("ZeroPadding2D", (5, 6, 3), {"padding": (0, 2)}),
    ("ZeroPadding2D", (5, 6, 3), {"padding": ((1, 0), (2, 3))}),
    ("ZeroPadding2D", (3, 5, 6), {"padding": ((1, 2), (0, 1)), "data_format": CF}),
    ("Cropping1D", (7, 3), {}),
    ("Cropping1D", (7, 3), {"cropping": 3}),
    ("Cropping1D", (7, 3), {"cropping": (0, 6)}),
    ("Cropping2D", (5, 6, 3), {}),
    ("Cropping2D", (5, 6, 3), {"cropping": 2}),
    ("Cropping2D", (5, 6, 3), {"cropping": (1, 0)}),
    ("Cropping2D", (5, 6, 3), {"cropping": ((1, 3), (0, 5))}),
    ("Cropping2D", (3, 5, 6), {"cropping": ((0, 2), (1, 1)), "data_format": CF}),
    ("UpSampling1D", (7, 3), {}),
    ("UpSampling1D", (1, 2), {"size": 3}),
    ("UpSampling2D", (5, 6, 3), {}),
    ("UpSampling2D", (5, 6, 3), {"size": 3}),
    ("UpSampling2D", (5, 6, 3), {"size": (1, 3)}),
    ("UpSampling2D", (3, 5, 6), {"size": (2, 1), "data_format": CF}),
    ("UpSampling2D", (5, 6, 3), {"interpolation": "bilinear"}),
    ("UpSampling2D", (5, 6, 3), {"size": (3, 4), "interpolation": "bilinear"}),
    ("UpSampling2D", (1, 2, 2), {"size": (3, 1), "interpolation": "bilinear"}),
    ("UpSampling2D", (2, 4, 5), {"size": (1, 2), "interpolation": "bilinear",
                                 "data_format": CF}),
    ("SpatialDropout1D", (7, 3), {"rate": 0.5}),
    ("SpatialDropout2D", (3, 5, 6), {"rate": 0.5, "data_format": CF}),
]


def _ids(case):
    return f"{case[0]}-{case[2]}"


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_outputs_equal_keras(keras, case):
    name, shape, kwargs = case
    x = np.random.default_rng(len(str(case))).normal(size=(3,) + shape).astype(np.float32)
    want = to_numpy(getattr(keras.layers, name)(**kwargs)(x))
    model = pynn.Sequential([L.Input(shape), getattr(L, name)(**kwargs)])
    got = model.predict(x, verbose=0)
    assert got.shape == want.shape
    if kwargs.get("interpolation") == "bilinear":   # weighted sums: a few roundings
        np.testing.assert_allclose(got, want, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name,kwargs", [
    ("ZeroPadding2D", {"padding": ((1, 0), (2, 1))}),
    ("Cropping2D", {"cropping": ((1, 0), (0, 2))}),
    ("Cropping2D", {"cropping": ((0, 1), (1, 0)), "data_format": CF}),
    ("UpSampling2D", {"size": (2, 3)}),
    ("UpSampling2D", {"size": (2, 3), "interpolation": "bilinear"}),
])
def test_sgd_step_through_the_layer_matches_keras(keras, name, kwargs):
    """The convolution before the layer only learns through the layer's backward."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 6, 5, 2)).astype(np.float32)
    y = rng.normal(size=(4, 1)).astype(np.float32)
    kl = keras.layers
    km = keras.Sequential([keras.Input((6, 5, 2)), kl.Conv2D(3, 2), getattr(kl, name)(**kwargs),
                           kl.Flatten(), kl.Dense(1)])
    model = pynn.Sequential([L.Input((6, 5, 2)), L.Conv2D(3, 2), getattr(L, name)(**kwargs),
                             L.Flatten(), L.Dense(1)])
    model.set_weights([np.asarray(to_numpy(w.value)) for w in km.weights])
    km.compile(keras.optimizers.SGD(0.1), "mse")
    model.compile(pynn.optimizers.SGD(0.1), "mse")
    km.train_on_batch(x, y)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for got, w in zip(model.get_weights(), km.weights):
        np.testing.assert_allclose(got, to_numpy(w.value), atol=1e-5)


def _train_outputs(layer, shape, x, threads):
    pynn.set_num_threads(threads)
    try:
        spec = GraphSpec()
        spec.outputs = layer._emit(spec, [spec.add_input(shape)])
        g = spec.to_core([("mean_squared_error", False, 1.0, 1.0)])
        g.set_optimizer("sgd", {"learning_rate": 0.0})
        return np.asarray(g.train_step([x], [np.zeros_like(x)], want_outputs=True)[3][0])
    finally:
        pynn.set_num_threads(2)


@pytest.mark.parametrize("layer,shape,chan_axis", [
    (lambda: L.SpatialDropout1D(0.4, seed=5), (9, 6), 2),
    (lambda: L.SpatialDropout2D(0.4, seed=5), (4, 5, 6), 3),
    (lambda: L.SpatialDropout2D(0.4, data_format=CF, seed=5), (6, 4, 5), 1),
])
def test_spatial_dropout_drops_whole_channels(layer, shape, chan_axis):
    x = np.random.default_rng(0).uniform(1, 2, size=(20,) + shape).astype(np.float32)
    y = _train_outputs(layer(), shape, x, 1)
    np.testing.assert_array_equal(y, _train_outputs(layer(), shape, x, 2))
    i = L.Input(shape)
    np.testing.assert_array_equal(pynn.Model(i, layer()(i)).predict(x, verbose=0), x)
    ratio = np.asarray(y) / x
    kept = np.isclose(ratio, 1 / 0.6, rtol=1e-6)
    assert np.all(kept | (ratio == 0))
    # one decision per (sample, channel): constant over the spatial axes
    spatial = tuple(a for a in range(1, len(shape) + 1) if a != chan_axis)
    assert np.all(kept.all(axis=spatial) | (~kept).all(axis=spatial))
    frac = kept.all(axis=spatial).mean()
    assert 0.35 < frac < 0.85   # 120 channels kept with p 0.6


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="padding"):
        L.ZeroPadding2D(((1, 2), (3,)))
    with pytest.raises(ValueError, match="cropping"):
        L.Cropping1D(-1)
    with pytest.raises(ValueError, match="size"):
        L.UpSampling2D((2, 0))
    with pytest.raises(ValueError, match="interpolation"):
        L.UpSampling2D(interpolation="bicubic")
    with pytest.raises(ValueError, match="leaves nothing"):
        pynn.Sequential([L.Input((4, 3)), L.Cropping1D((2, 2))])


def test_round_trips_with_keras(keras, tmp_path):
    kl = keras.layers
    rng = np.random.default_rng(7)
    i = keras.Input((6, 5, 2))
    h = kl.ZeroPadding2D(((1, 0), (0, 2)))(i)
    h = kl.Conv2D(3, 2, data_format="channels_last")(h)
    h = kl.Cropping2D(((1, 0), (1, 1)), data_format=CF)(h)
    h = kl.UpSampling2D((2, 1))(h)
    h = kl.SpatialDropout2D(0.3)(h)
    h = kl.Reshape((-1, 3))(h)
    h = kl.UpSampling1D(2)(kl.Cropping1D((1, 2))(kl.ZeroPadding1D(1)(h)))
    h = kl.SpatialDropout1D(0.2)(h)
    km = keras.Model(i, kl.Dense(2)(kl.Flatten()(h)))
    x = rng.normal(size=(3, 6, 5, 2)).astype(np.float32)
    model, _ = base_both_ways(keras, km, x, tmp_path)
    model.save(tmp_path / "m.safetensors")
    again = pynn.models.load_model(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def base_both_ways(keras, km, x, tmp_path):
    from test_keras_format_layers import _both_ways
    return _both_ways(keras, km, x, tmp_path)


# --- the pad_crop op (ZeroPadding and Cropping): engine against its NumPy twin -------------
PAD_CROP = [
    ((7,), (2,), (-3,)),
    ((5, 6, 3), (1, -2, 0), (-1, 3, 0)),
    ((4, 3), (-3, 0), (0, 2)),              # cropped to one row
    ((1, 1, 1), (0, 2, 1), (1, 0, 0)),      # size-1 axes padded
    ((3, 70, 2), (0, -1, 0), (0, -33, 0)),
    ((2, 3, 4, 5), (1, -1, 0, 2), (-1, 1, -3, 0)),
    ((6, 17), (0, 0), (0, 0)),              # nothing to do: a plain copy
    ((3, 5), (-1, -2), (-1, -2)),           # crops on the contiguous axis too
]


def _pad_crop_spec(shape, before, after, twice=False):
    spec = GraphSpec()
    t = spec.add_input(shape)
    out = tuple(n + b + a for n, b, a in zip(shape, before, after))
    attrs = {"before": list(before), "after": list(after)}
    ys = [spec.add_node("pad_crop", [t], [out], [], attrs, f"p{i}")[0]
          for i in range(2 if twice else 1)]
    spec.outputs = spec.add_node("add", ys, [out], [], {}, "sum") if twice else ys
    return spec, out


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", PAD_CROP, ids=repr)
def test_pad_crop_matches_twin(case, batch):
    shape, before, after = case
    rng = case_rng("pad_crop", case, batch)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    spec, out = _pad_crop_spec(shape, before, after)
    got = np.empty((batch,) + out, np.float32)
    spec.to_core().predict([x], [got])
    want = ref_pad_crop.pad_crop_forward(x, before, after)
    np.testing.assert_array_equal(got, want)   # values only move
    # the kept block is the input's, the rest zeros
    assert np.count_nonzero(got) == np.count_nonzero(want)
    seed = rng.standard_normal(got.shape).astype(np.float32)
    dx = spec.to_core().input_gradient([x], [seed])[0]
    np.testing.assert_array_equal(dx, ref_pad_crop.pad_crop_backward(x.shape, seed, before,
                                                                      after))
    # two consumers of one input: the second gradient is accumulated
    spec2, _ = _pad_crop_spec(shape, before, after, twice=True)
    dx2 = spec2.to_core().input_gradient([x], [seed])[0]
    np.testing.assert_array_equal(dx2, 2 * dx)


def test_layers_take_non_contiguous_inputs():
    wide = case_rng("non-contiguous").standard_normal((3, 5, 12, 3)).astype(np.float32)
    x = wide[:, :, ::2]          # every other column: not C-contiguous
    for layer, before, after in ((L.ZeroPadding2D(((1, 0), (2, 1))), (1, 2, 0), (0, 1, 0)),
                                 (L.Cropping2D(((0, 2), (1, 3))), (0, -1, 0), (-2, -3, 0))):
        got = pynn.Sequential([L.Input((5, 6, 3)), layer]).predict(x, verbose=0)
        want = ref_pad_crop.pad_crop_forward(np.ascontiguousarray(x), before, after)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", PAD_CROP[:4], ids=repr)
def test_pad_crop_twin_gradient_matches_finite_differences(case):
    shape, before, after = case
    rng = case_rng("pad_crop_fd", case)
    x = rng.standard_normal((2,) + shape)
    r = rng.standard_normal(ref_pad_crop.pad_crop_forward(x, before, after).shape)

    def f():
        return float((r * ref_pad_crop.pad_crop_forward(x, before, after)).sum())

    np.testing.assert_allclose(ref_pad_crop.pad_crop_backward(x.shape, r, before, after),
                               numeric_grad(f, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("before,after", [((-4, 0), (0, 0)), ((0, -2), (0, -1)), ((0,), (0,))])
def test_pad_crop_refuses_bad_amounts(before, after):
    spec = GraphSpec()
    t = spec.add_input((4, 3))
    spec.outputs = spec.add_node("pad_crop", [t], [(4, 3)], [],
                                 {"before": list(before), "after": list(after)}, "bad")
    with pytest.raises(ValueError, match="bad"):
        spec.to_core()


def test_onnx_export_runs_in_onnx_runtime(tmp_path):
    pytest.importorskip("onnxruntime")
    import test_onnx_export as onnx_base

    m = pynn.Sequential([
        L.Input((6, 5, 2)), L.ZeroPadding2D(((1, 0), (2, 1))), L.Conv2D(3, 2),
        L.Cropping2D(((1, 0), (0, 2)), data_format=CF), L.UpSampling2D((2, 1)),
        L.UpSampling2D((1, 2), interpolation="bilinear"), L.SpatialDropout2D(0.3),
        L.Reshape((-1, 3)), L.Cropping1D((2, 1)), L.ZeroPadding1D((0, 3)), L.UpSampling1D(2),
        L.SpatialDropout1D(0.2)])
    x = case_rng("onnx").standard_normal((3, 6, 5, 2)).astype(np.float32)
    onnx_base._check(m, x, tmp_path)


# --- Dropout(noise_shape=...) --------------------------------------------------------------
@pytest.mark.parametrize("noise_shape,shared", [
    ((None, 1, 6), (1,)), ((20, 1, 6), (1,)), ((None, 9, 1), (2,)), ((None, 1, 1), (1, 2)),
    ((None, 9, 6), ())])
def test_dropout_noise_shape_shares_draws_along_its_unit_axes(noise_shape, shared):
    shape = (9, 6)
    x = np.random.default_rng(1).uniform(1, 2, size=(20,) + shape).astype(np.float32)
    y = _train_outputs(L.Dropout(0.4, noise_shape=noise_shape, seed=7), shape, x, 1)
    np.testing.assert_array_equal(y, _train_outputs(
        L.Dropout(0.4, noise_shape=noise_shape, seed=7), shape, x, 2))
    ratio = y / x
    kept = np.isclose(ratio, 1 / 0.6, rtol=1e-6)
    assert np.all(kept | (ratio == 0))
    if shared:   # one decision along the shared axes, different ones elsewhere
        assert np.all(kept.all(axis=shared) | (~kept).all(axis=shared))
    draws = kept.all(axis=shared) if shared else kept
    assert 0.35 < draws.mean() < 0.85 and draws.size >= 20
    # inference: the identity
    i = L.Input(shape)
    layer = L.Dropout(0.4, noise_shape=noise_shape)
    np.testing.assert_array_equal(pynn.Model(i, layer(i)).predict(x, verbose=0), x)


def test_dropout_noise_shape_is_spatial_dropout_with_the_same_seed():
    shape = (9, 6)
    x = np.random.default_rng(2).uniform(1, 2, size=(16,) + shape).astype(np.float32)
    np.testing.assert_array_equal(
        _train_outputs(L.Dropout(0.3, noise_shape=(None, 1, 6), seed=11), shape, x, 1),
        _train_outputs(L.SpatialDropout1D(0.3, seed=11), shape, x, 1))


def test_dropout_noise_shape_config_files_and_errors(tmp_path):
    layer = L.Dropout(0.25, noise_shape=(None, 1, 4), seed=3)
    cfg = layer.get_config()
    assert cfg["noise_shape"] == [None, 1, 4]
    assert L.Dropout.from_config(cfg).noise_shape == (None, 1, 4)
    assert "noise_shape" not in L.SpatialDropout1D(0.2).get_config()   # as Keras's
    m = pynn.Sequential([L.Input((3, 4)), layer, L.Flatten(), L.Dense(2)])
    m.save(tmp_path / "d.keras")
    assert pynn.saving.load_model(tmp_path / "d.keras").layers[0].noise_shape == (None, 1, 4)
    with pytest.raises(ValueError, match="whole batch"):
        L.Dropout(0.5, noise_shape=(1, 3, 4))
    with pytest.raises(TypeError, match="noise_shape"):
        L.Dropout(0.5, noise_shape=(None, 0, 4))
    with pytest.raises(TypeError, match="noise_shape"):
        L.SpatialDropout1D(0.5, noise_shape=(None, 1, 4))
    with pytest.raises(ValueError, match="noise_shape"):
        pynn.Sequential([L.Input((3, 4)), L.Dropout(0.5, noise_shape=(None, 2, 4))])
    with pytest.raises(ValueError, match="noise_shape"):
        pynn.Sequential([L.Input((3, 4)), L.Dropout(0.5, noise_shape=(None, 4))])


def test_time_distributed_dropout_noise_shape_describes_one_step():
    # Keras runs the inner layer on (batch * steps, features): noise_shape (None, 1) shares a
    # draw across the features of one step, and every step draws anew.
    shape = (7, 6)
    x = np.random.default_rng(3).uniform(1, 2, size=(12,) + shape).astype(np.float32)
    layer = L.TimeDistributed(L.Dropout(0.4, noise_shape=(None, 1), seed=5))
    y = _train_outputs(layer, shape, x, 1)
    np.testing.assert_array_equal(y, _train_outputs(
        L.TimeDistributed(L.Dropout(0.4, noise_shape=(None, 1), seed=5)), shape, x, 2))
    kept = np.isclose(y / x, 1 / 0.6, rtol=1e-6)
    assert np.all(kept | (y == 0))
    assert np.all(kept.all(axis=2) | (~kept).all(axis=2))   # one draw per (sample, step)
    per_step = kept.all(axis=2)
    assert 0 < per_step.mean() < 1 and not np.all(per_step == per_step[:, :1])   # steps differ
    with pytest.raises(ValueError, match="noise_shape"):   # the whole input's rank is wrong
        pynn.Sequential([L.Input(shape), L.TimeDistributed(L.Dropout(0.4, noise_shape=(None, 1,
                                                                                      6)))])
