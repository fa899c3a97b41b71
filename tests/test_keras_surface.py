"""Smaller pieces of the Keras 3 surface (issue 14's "differs from Keras" list), each held to
what Keras 3 itself does on the same inputs: initializers from arrays and None,
VarianceScaling, layer/model ``losses``, ``utils.normalize``, ``ops.convert_to_numpy``,
``backend``, and EarlyStopping with a baseline."""
from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import callbacks, initializers, layers


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def to_np(t):
    """A Keras variable or torch tensor as a NumPy array (keras.ops.convert_to_numpy warns
    under NumPy 2 with this torch build, and warnings are errors here)."""
    t = getattr(t, "value", t)           # a Keras variable holds a torch tensor
    if hasattr(t, "detach"):
        return t.detach().cpu().numpy()
    return np.asarray(t.numpy())


def test_constant_from_an_array_broadcasts_like_keras(keras):
    prior = np.log([0.2, 0.3, 0.5])
    ours = layers.Dense(3, bias_initializer=initializers.Constant(prior))
    ours.build((None, 4))
    theirs = keras.layers.Dense(3, bias_initializer=keras.initializers.Constant(prior))
    theirs.build((None, 4))
    np.testing.assert_array_equal(ours.bias.numpy(), to_np(theirs.bias))
    grid = initializers.Constant([1.0, 2.0])((3, 2))
    np.testing.assert_array_equal(grid, np.tile([1.0, 2.0], (3, 1)).astype(np.float32))
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(4, 2\)"):
        initializers.Constant([1.0, 2.0, 3.0])((4, 2))
    with pytest.raises(ValueError, match="finite"):
        initializers.Constant([1.0, np.nan])
    # the array survives the config round trip
    cfg = initializers.serialize(initializers.Constant(prior))
    np.testing.assert_allclose(initializers.deserialize(cfg)((3,)), prior, rtol=1e-6)


def test_none_initializer_is_glorot_uniform_as_in_keras(keras):
    pynn.utils.set_random_seed(0)
    ours = layers.Dense(400, bias_initializer=None)
    ours.build((None, 4))
    theirs = keras.layers.Dense(400, bias_initializer=None)
    theirs.build((None, 4))
    b_keras = to_np(theirs.bias)
    b_ours = ours.bias.numpy()
    limit = np.sqrt(6 / (400 + 400))   # glorot-uniform of a (400,) weight: fans 400 and 400
    for b in (b_keras, b_ours):
        assert np.abs(b).max() <= limit
        assert np.abs(b).max() > 0.9 * limit   # spread over the range, not zeros
        # a uniform on [-limit, limit] has standard deviation limit / sqrt(3); with 400
        # samples the estimate is within 10% (about 3 standard errors)
        assert abs(b.std() / (limit / np.sqrt(3)) - 1) < 0.1


@pytest.mark.parametrize("distribution", ["truncated_normal", "untruncated_normal", "uniform"])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_variance_scaling_matches_keras_distribution(keras, mode, distribution):
    shape = (3, 3, 40, 60)       # a conv kernel: receptive field 9, fan_in 360, fan_out 540
    ours = initializers.VarianceScaling(2.0, mode, distribution, seed=1)(shape)
    theirs = to_np(keras.initializers.VarianceScaling(2.0, mode, distribution, seed=1)(shape))
    n = {"fan_in": 360, "fan_out": 540, "fan_avg": 450}[mode]
    std = np.sqrt(2.0 / n)
    # 21,600 samples: the standard deviation estimate is within 2% (about 4 standard errors)
    for w in (ours, theirs):
        assert w.shape == shape and w.dtype == np.float32
        assert abs(w.std() / std - 1) < 0.02
        assert abs(w.mean()) < 4 * std / np.sqrt(w.size)
    if distribution == "truncated_normal":
        assert np.abs(ours).max() <= 2 * std / 0.87962566103423978 + 1e-6
    if distribution == "uniform":
        assert np.abs(ours).max() <= np.sqrt(3) * std + 1e-6
    again = initializers.VarianceScaling(2.0, mode, distribution, seed=1)(shape)
    np.testing.assert_array_equal(ours, again)


def test_variance_scaling_arguments_and_config():
    vs = initializers.get("VarianceScaling")
    assert isinstance(vs, initializers.VarianceScaling)
    init = initializers.VarianceScaling(0.5, "fan_avg", "uniform", seed=3)
    back = initializers.deserialize(initializers.serialize(init))
    np.testing.assert_array_equal(back((5, 7)), init((5, 7)))
    with pytest.raises(ValueError, match="mode"):
        initializers.VarianceScaling(mode="fan_sum")
    with pytest.raises(ValueError, match="distribution"):
        initializers.VarianceScaling(distribution="cauchy")
    with pytest.raises(ValueError, match="scale"):
        initializers.VarianceScaling(scale=0.0)


def test_losses_lists_weight_penalties_like_keras(keras):
    ours = pynn.Sequential([pynn.Input((4,)),
                            layers.Dense(3, kernel_regularizer=pynn.regularizers.L2(0.1),
                                         bias_regularizer=pynn.regularizers.L1(0.2)),
                            layers.Dense(2)])
    theirs = keras.Sequential([keras.Input((4,)),
                               keras.layers.Dense(3, kernel_regularizer=keras.regularizers.L2(0.1),
                                                  bias_regularizer=keras.regularizers.L1(0.2)),
                               keras.layers.Dense(2)])
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    expected = [float(to_np(v)) for v in theirs.losses]
    assert len(ours.losses) == len(expected) == 2
    np.testing.assert_allclose(sorted(float(v) for v in ours.losses), sorted(expected), rtol=1e-5)
    assert ours.layers[1].losses == []


def test_normalize_matches_keras(keras):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    x[1] = 0.0
    for axis, order in [(-1, 2), (1, 2), (-1, 1)]:
        np.testing.assert_allclose(pynn.utils.normalize(x, axis, order),
                                   keras.utils.normalize(x, axis, order), rtol=1e-6)
    # axis 0 (Keras 3.15 turns axis=0 into -1 with `axis or -1`; its current source does not):
    # each column divided by its norm, the zero row left at zero
    cols = pynn.utils.normalize(x, 0)
    np.testing.assert_allclose(np.linalg.norm(cols, axis=0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(cols[1], 0.0)
    with pytest.raises(TypeError, match="x"):
        pynn.utils.normalize(np.array(["a"]))


def test_convert_to_numpy():
    w = layers.Dense(2)
    w.build((None, 3))
    arr = pynn.ops.convert_to_numpy(w.kernel)
    arr[...] = 7.0                       # a copy: the weight is unchanged
    assert not np.any(w.kernel.numpy() == 7.0)
    np.testing.assert_array_equal(pynn.ops.convert_to_numpy([1, 2]), np.array([1, 2]))
    with pytest.raises(TypeError, match="symbolic"):
        pynn.ops.convert_to_numpy(pynn.Input((3,)))


def test_backend_functions_and_clear_session():
    from pynn import backend

    assert (backend.backend(), backend.floatx(), backend.epsilon(),
            backend.image_data_format()) == ("pynn", "float32", 1e-7, "channels_last")
    layers.Dense(1)
    backend.clear_session()
    assert layers.Dense(1).name == "dense"
    assert layers.Dense(1).name == "dense_1"


class _Holder:
    stop_training = False


@pytest.mark.parametrize("baseline, patience", [(0.0, 2), (0.5, 1), (None, 2)])
def test_early_stopping_baseline_like_keras(keras, baseline, patience):
    """A loss improving every epoch but never reaching the baseline: Keras 3 runs every epoch
    (an improving epoch never stops training). Then a plateau: both stop on the same epoch."""
    losses = [1.0, 0.9, 0.8, 0.75, 0.7, 0.68, 0.66, 0.65, 0.65, 0.65, 0.65, 0.65]

    def run(cb):
        holder = _Holder()
        cb.set_model(holder)
        cb.on_train_begin()
        for epoch, loss in enumerate(losses):
            cb.on_epoch_end(epoch, {"loss": loss})
            if holder.stop_training:
                return epoch
        return None

    ours = run(callbacks.EarlyStopping(monitor="loss", patience=patience, baseline=baseline))
    theirs = run(keras.callbacks.EarlyStopping(monitor="loss", patience=patience,
                                               baseline=baseline))
    assert ours == theirs
    assert ours is not None and ours >= 8     # never during the 8 improving epochs


def _per_sample_heads(lib, x):
    """Heads that give one value per sample, written the same way in Keras and pynn."""
    ops = lib.ops
    h = lib.layers.Dense(3, kernel_initializer="ones", name="d")(x)
    return [ops.mean(h, axis=-1), ops.argmax(h, axis=-1), ops.sum(h, axis=1) * 2.0 + 1.0,
            ops.max(ops.square(h), axis=-1) - ops.min(h, axis=-1), ops.mean(h, axis=-1,
                                                                             keepdims=True)]


def test_per_sample_scalars_have_keras_shapes(keras):
    """A full reduction of a sample is (None,) symbolically and (n,) from predict, as in
    Keras; elementwise ops on such values keep that shape; keepdims keeps the (None, 1)."""
    theirs_in = keras.Input((4,))
    theirs = keras.Model(theirs_in, _per_sample_heads(keras, theirs_in))
    ours_in = pynn.Input((4,))
    ours = pynn.Model(ours_in, _per_sample_heads(pynn, ours_in))
    assert ours.output_shape == [tuple(t.shape) for t in theirs.outputs]
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    want = [to_np(v) for v in theirs(x)]
    for rows, got in ((5, ours.predict(x, verbose=0)), (5, ours(x)),
                      (1, ours.predict(x[:1], verbose=0))):
        assert [g.shape for g in got] == [w[:rows].shape for w in want]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w[:rows], rtol=1e-6)
    # nested in another model, the shape survives; the one-row fast path gives (1,)
    outer_in = pynn.Input((4,))
    single = pynn.Model(ours_in, ours.outputs[0])
    outer = pynn.Model(outer_in, single(outer_in))
    assert outer.output_shape == (None,)
    assert outer.predict(x[:1], verbose=0).shape == (1,)
    # training on (n,) targets for a (None,) output
    single.compile(optimizer="sgd", loss="mse")
    single.fit(x, np.zeros(5, np.float32), epochs=1, verbose=0)
    assert single.evaluate(x, np.zeros(5, np.float32), verbose=0) >= 0.0


@pytest.mark.parametrize("axis", [-1, 1, 2, -2])
def test_softmax_axis_matches_keras(keras, axis):
    """Softmax over any one axis of a sample, not silently over the last one."""
    x = np.random.default_rng(3).normal(size=(2, 3, 4)).astype(np.float32) * 3
    want = to_np(keras.layers.Softmax(axis=axis)(x))
    model = pynn.Sequential([pynn.Input((3, 4)), layers.Softmax(axis=axis)])
    got = model.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)   # float32 exp and divide
    np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=1e-6)   # on that axis
    with pytest.raises(ValueError, match="out of range"):
        pynn.Sequential([pynn.Input((3, 4)), layers.Softmax(axis=3)])
