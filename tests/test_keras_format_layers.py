"""Keras 3 files holding the normalization, noise, regularization and preprocessing layers,
weight constraints and learning-rate schedules, moving between pynn and real Keras 3 (torch
backend) both ways.

Tolerances: as in test_keras_format.py, both sides compute in float32 with different
summation orders; outputs of order 1 agree to ~1e-6, so 1e-5 (atol) leaves a few roundings
of room. A resumed optimizer step compares weights of order 1 after the same step from the
same state: rounding only (2e-6).
"""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import test_keras_format as base

import pynn
from pynn import layers as L

pytestmark = base.pytestmark
keras = base.keras   # the module-scoped fixture giving Keras (torch backend)
ATOL = base.ATOL
_h5_tree = base._h5_tree


def _rng():
    return np.random.default_rng(1)


def _keras_model(keras):
    """Every layer of this file's scope in one Keras model; the Normalization adapted."""
    kl = keras.layers
    rng = _rng()
    i = keras.Input((6,))
    h = kl.Dense(8, kernel_constraint=keras.constraints.MaxNorm(2.0),
                 bias_constraint="non_neg")(i)
    h = kl.LayerNormalization(epsilon=1e-2)(h)
    h = kl.GroupNormalization(groups=2)(kl.Reshape((2, 4))(h))
    h = kl.UnitNormalization()(kl.Flatten()(h))
    h = kl.GaussianNoise(0.3)(h)
    h = kl.GaussianDropout(0.2)(h)
    h = kl.AlphaDropout(0.2)(h)
    h = kl.ActivityRegularization(l1=0.01, l2=0.02)(h)
    norm = kl.Normalization()
    norm.adapt(rng.normal(1.0, 3.0, size=(40, 8)).astype(np.float32))
    h = kl.Rescaling(0.5, offset=0.25)(norm(h))
    km = keras.Model(i, kl.Dense(3)(h))
    for w in km.trainable_weights:   # non-trivial gammas/betas, constraints respected
        w.assign(np.abs(rng.normal(size=w.shape)).astype(np.float32) * 0.5)
    return km, rng.normal(size=(5, 6)).astype(np.float32)


def _both_ways(keras, km, x, tmp_path, atol=ATOL):
    """Keras's file into pynn and pynn's re-save back into Keras, each predicting what `km`
    predicts; returns (pynn's model, Keras's model from pynn's file)."""
    want = np.asarray(km.predict(x, verbose=0))
    km.save(tmp_path / "k.keras")
    model = pynn.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(model.predict(x, verbose=0), want, atol=atol)
    model.save(tmp_path / "p.keras")
    back = keras.saving.load_model(tmp_path / "p.keras")
    np.testing.assert_allclose(np.asarray(back.predict(x, verbose=0)), want, atol=atol)
    return model, back


def test_new_layers_from_keras_and_back(keras, tmp_path):
    km, x = _keras_model(keras)
    model, back = _both_ways(keras, km, x, tmp_path)
    # the adapted statistics came through (Keras 3's adapt leaves its count at 0)
    kn = next(lay for lay in km.layers if type(lay).__name__ == "Normalization")
    pn = next(lay for lay in model.layers if type(lay).__name__ == "Normalization")
    assert [w.name for w in pn.weights] == ["mean", "variance", "count"]
    for kw, pw in zip(kn.weights, pn.weights):
        np.testing.assert_allclose(pw.numpy(), np.asarray(kw.numpy()), rtol=1e-6)
    dense = model.layers[1]
    assert type(dense.kernel_constraint).__name__ == "MaxNorm"
    assert dense.kernel_constraint.get_config()["max_value"] == 2.0
    assert type(dense.bias_constraint).__name__ == "NonNeg"
    assert back.layers[1].kernel_constraint.get_config() == \
        km.layers[1].kernel_constraint.get_config()
    assert type(back.layers[1].bias_constraint).__name__ == "NonNeg"
    back.save(tmp_path / "k2.keras")
    # pynn's HDF5 tree (names, shapes, dtypes: the count is int32) is Keras's
    assert _h5_tree(tmp_path / "p.keras") == _h5_tree(tmp_path / "k2.keras")
    assert ("layers/normalization/vars/2", (), "int32", {}) in _h5_tree(tmp_path / "p.keras")


def test_new_layers_from_pynn_into_keras(keras, tmp_path):
    """A model built in pynn (Normalization adapted in pynn, GroupNormalization over a
    channel axis) predicts the same in Keras."""
    rng = _rng()
    norm = L.Normalization()
    norm.adapt(rng.normal(-2.0, 0.5, size=(30, 4)).astype(np.float32))
    model = pynn.Sequential([
        L.InputLayer(shape=(3, 4)), norm, L.Rescaling(2.0, offset=-1.0),
        L.LayerNormalization(axis=[-2, -1]), L.GroupNormalization(groups=2, epsilon=1e-2),
        L.GaussianNoise(1.0), L.GaussianDropout(0.5), L.AlphaDropout(0.5),
        L.ActivityRegularization(l2=0.1), L.Flatten(), L.UnitNormalization(),
        L.Dense(2, kernel_constraint=pynn.constraints.UnitNorm())])
    for w in model.trainable_weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    x = rng.normal(-2.0, 0.5, size=(5, 3, 4)).astype(np.float32)
    model.save(tmp_path / "p.keras")
    km = keras.saving.load_model(tmp_path / "p.keras")
    np.testing.assert_allclose(np.asarray(km.predict(x, verbose=0)),
                               model.predict(x, verbose=0), atol=ATOL)
    assert int(km.layers[0].count.numpy()) == 30
    assert type(km.layers[-1].kernel_constraint).__name__ == "UnitNorm"


def test_discretization_and_category_encoding_both_ways(keras, tmp_path):
    kl = keras.layers
    i = keras.Input((4,))
    h = kl.Discretization(bin_boundaries=[-0.5, 0.0, 0.5])(i)
    km = keras.Model(i, kl.CategoryEncoding(4, output_mode="count")(h))
    x = _rng().normal(size=(6, 4)).astype(np.float32)
    _both_ways(keras, km, x, tmp_path, atol=0)   # integer counts: exactly equal


def test_unknown_constraint_is_refused(tmp_path):
    model = pynn.Sequential([L.InputLayer(shape=(3,)), L.Dense(2, kernel_constraint="non_neg")])
    model.save(tmp_path / "p.keras")
    with zipfile.ZipFile(tmp_path / "p.keras") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    cfg = json.loads(members["config.json"])
    cfg["config"]["layers"][1]["config"]["kernel_constraint"]["class_name"] = "Bogus"
    members["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(ValueError, match="Bogus"):
        pynn.models.load_model(tmp_path / "bad.keras")


# (Keras's schedule, pynn's) of the same configuration
SCHEDULES = {
    "exponential": (lambda s: s.ExponentialDecay(0.1, 2, 0.5),
                    lambda s: s.ExponentialDecay(0.1, 2, 0.5)),
    "piecewise": (lambda s: s.PiecewiseConstantDecay([2, 4], [0.1, 0.05, 0.01]),
                  lambda s: s.PiecewiseConstantDecay([2, 4], [0.1, 0.05, 0.01])),
    "cosine": (lambda s: s.CosineDecay(0.1, 10, alpha=0.1),
               lambda s: s.CosineDecay(0.1, 10, alpha=0.1)),
    "polynomial": (lambda s: s.PolynomialDecay(0.1, 5, 0.01, power=2.0),
                   lambda s: s.PolynomialDecay(0.1, 5, 0.01, power=2.0)),
    "inverse_time": (lambda s: s.InverseTimeDecay(0.1, 2, 0.5, staircase=True),
                     lambda s: s.InverseTimeDecay(0.1, 2, 0.5, staircase=True)),
    "restarts": (lambda s: s.CosineDecayRestarts(0.1, 2, t_mul=2.0, m_mul=0.5),
                 lambda s: s.CosineDecayRestarts(0.1, 2, t_mul=2.0, m_mul=0.5)),
}


def _data():
    rng = _rng()
    return (rng.normal(size=(8, 5)).astype(np.float32),
            rng.normal(size=(8, 2)).astype(np.float32))


def _same_next_step(km, model, x, y):
    """One more full-batch step in Keras and in pynn lands on the same weights."""
    km.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    for kw, pw in zip(km.weights, model.weights):
        np.testing.assert_allclose(pw.numpy(), np.asarray(kw.numpy()), atol=2e-6,
                                   err_msg=pw.path)


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
def test_schedule_from_keras_resumes(keras, tmp_path, kind):
    km = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    km.compile(optimizer=keras.optimizers.Adam(SCHEDULES[kind][0](keras.optimizers.schedules)),
               loss="mse")
    x, y = _data()
    km.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    km.save(tmp_path / "k.keras")
    model = pynn.models.load_model(tmp_path / "k.keras")
    sched = model.get_compile_config()["optimizer"]["config"]["learning_rate"]
    assert sched["class_name"] == type(km.optimizer._learning_rate).__name__
    assert sched["config"] == km.optimizer._learning_rate.get_config()
    assert model.optimizer.get_state()["iterations"] == 3
    assert model.optimizer.learning_rate == pytest.approx(float(km.optimizer.learning_rate),
                                                          rel=1e-6)
    _same_next_step(km, model, x, y)


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
def test_schedule_from_pynn_resumes_in_keras(keras, tmp_path, kind):
    model = pynn.Sequential([L.InputLayer(shape=(5,)), L.Dense(2)])
    sched = SCHEDULES[kind][1](pynn.optimizers.schedules)
    model.compile(optimizer=pynn.optimizers.SGD(sched, momentum=0.9), loss="mse")
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    model.save(tmp_path / "p.keras")
    km = keras.saving.load_model(tmp_path / "p.keras")
    ksched = km.optimizer._learning_rate
    assert type(ksched).__name__ == type(sched).__name__
    assert ksched.get_config() == {**sched.get_config(), "name": ksched.get_config()["name"]}
    assert int(km.optimizer.iterations) == 3
    assert float(km.optimizer.learning_rate) == pytest.approx(model.optimizer.learning_rate,
                                                              rel=1e-6)
    km.save(tmp_path / "k.keras")
    assert _h5_tree(tmp_path / "p.keras") == _h5_tree(tmp_path / "k.keras")
    _same_next_step(km, model, x, y)


def test_unknown_schedule_is_refused(keras, tmp_path):
    km = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    km.compile(optimizer=keras.optimizers.SGD(
        keras.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)), loss="mse")
    km.save(tmp_path / "k.keras")
    with zipfile.ZipFile(tmp_path / "k.keras") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["config.json"] = members["config.json"].replace(b'"ExponentialDecay"',
                                                            b'"Bogus"')
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(ValueError, match="schedule 'Bogus'"):
        pynn.models.load_model(tmp_path / "bad.keras")


def test_normalization_with_given_statistics_and_more_constraints(keras, tmp_path):
    """Normalization with mean/variance in its config (no variables: the file has none) and
    invert=True; MinMaxNorm / UnitNorm constraints; both ways."""
    kl = keras.layers
    i = keras.Input((3,))
    h = kl.Normalization(mean=[1.0, -2.0, 0.5], variance=[4.0, 0.25, 1.0])(i)
    h = kl.Dense(4, kernel_constraint=keras.constraints.MinMaxNorm(0.5, 1.5, rate=0.5),
                 bias_constraint=keras.constraints.UnitNorm())(h)
    km = keras.Model(i, kl.Normalization(mean=0.5, variance=2.0, invert=True)(h))
    x = _rng().normal(size=(5, 3)).astype(np.float32)
    model, back = _both_ways(keras, km, x, tmp_path)
    for got in (model, back):
        assert got.layers[2].kernel_constraint.get_config() == \
            km.layers[2].kernel_constraint.get_config()
    assert type(back.layers[2].bias_constraint).__name__ == "UnitNorm"


def test_weights_h5_with_a_schedule_both_ways(keras, tmp_path):
    """A .weights.h5 of a model trained under a schedule carries no learning-rate variable,
    as Keras writes it; Keras resumes from pynn's file and pynn from Keras's."""
    sched = pynn.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)
    model = pynn.Sequential([L.InputLayer(shape=(5,)), L.Dense(2)])
    model.compile(optimizer=pynn.optimizers.Adam(sched), loss="mse")
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    model.save_weights(tmp_path / "p.weights.h5")
    km = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    km.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)), loss="mse")
    km.optimizer.build(km.trainable_variables)
    km.load_weights(tmp_path / "p.weights.h5")
    assert int(km.optimizer.iterations) == 3
    km.save_weights(tmp_path / "k.weights.h5")
    fresh = pynn.Sequential([L.InputLayer(shape=(5,)), L.Dense(2)])
    fresh.compile(optimizer=pynn.optimizers.Adam(
        pynn.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)), loss="mse")
    fresh.load_weights(tmp_path / "k.weights.h5")
    assert fresh.optimizer.get_state()["iterations"] == 3
    assert fresh.optimizer.learning_rate == pytest.approx(0.1 * 0.5 ** 1.5, rel=1e-6)
    _same_next_step(km, fresh, x, y)


def test_depthwise_and_separable_convolutions_both_ways(keras, tmp_path):
    kl = keras.layers
    rng = _rng()
    i = keras.Input((10, 9, 3))
    h = kl.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu")(i)
    h = kl.SeparableConv2D(4, (2, 3), strides=2, depth_multiplier=2)(h)
    h = kl.Reshape((h.shape[1] * h.shape[2], 4))(h)
    h = kl.DepthwiseConv1D(2, use_bias=False)(h)
    h = kl.SeparableConv1D(5, 3, padding="same", dilation_rate=2)(h)
    km = keras.Model(i, kl.GlobalAveragePooling1D()(h))
    for w in km.weights:    # non-zero biases, so a bias in the wrong place shows
        w.assign(rng.normal(size=w.shape).astype(np.float32) * 0.5)
    x = rng.normal(size=(4, 10, 9, 3)).astype(np.float32)
    model, _ = _both_ways(keras, km, x, tmp_path)
    names = [type(lay).__name__ for lay in model.layers]
    assert names.count("DepthwiseConv2D") == names.count("SeparableConv1D") == 1
    sep = next(lay for lay in model.layers if type(lay).__name__ == "SeparableConv2D")
    assert [w.name for w in sep.weights] == ["depthwise_kernel", "pointwise_kernel", "bias"]


# Layer classes of pynn.layers without an entry in keras_format.LAYERS, each with the reason.
NOT_IN_THE_TABLE = {
    "Lambda": "refused: Keras stores its Python code",
    "OpLayer": "written as Keras's op entries (keras_ops.py)",
    # Keras 3's lookup layers need TensorFlow and keep their vocabulary in the archive's
    # assets/, which pynn does not read: pynn writes them (vocabulary in the config) for
    # pynn to read back
    "IntegerLookup": "pynn files only", "StringLookup": "pynn files only",
    "TextVectorization": "pynn files only",
}


def test_every_layer_class_is_in_the_table_or_listed():
    from pynn import layers as layers_mod
    from pynn.models.keras_format import LAYERS

    public = {n for n in layers_mod.__all__ if isinstance(getattr(layers_mod, n), type)
              and issubclass(getattr(layers_mod, n), layers_mod.Layer) and n != "Layer"}
    classes = public | set(layers_mod._CLASSES)
    missing = classes - set(LAYERS) - set(NOT_IN_THE_TABLE)
    assert not missing, f"add these to keras_format.LAYERS: {sorted(missing)}"
    assert not set(NOT_IN_THE_TABLE) & set(LAYERS)
    assert set(NOT_IN_THE_TABLE) <= classes
