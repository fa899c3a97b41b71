"""pynn.constraints (MaxNorm, NonNeg, UnitNorm, MinMaxNorm) against Keras 3's own constraint
objects, and kernel_constraint/bias_constraint on Dense and Conv layers applied after every
optimizer step, checked against Keras training the same model from the same weights.

Tolerances: the constraints are a few float32 operations per element, compared with Keras's
float32 result: 1e-6 relative plus 1e-7 absolute. One or two SGD steps of small models in
float32 on both sides: 1e-5 absolute on O(1) weights.
"""
from __future__ import annotations

import numpy as np
import pytest
from keras_helpers import case_rng, to_numpy

import pynn
from pynn import constraints as C
from pynn import layers as L

CASES = [
    ("MaxNorm", {}, (5, 4)),
    ("MaxNorm", {"max_value": 0.7, "axis": [0, 1, 2]}, (3, 3, 2, 4)),
    ("MaxNorm", {"max_value": 1.5, "axis": -1}, (6, 3)),
    ("NonNeg", {}, (4, 7)),
    ("UnitNorm", {}, (5, 4)),
    ("UnitNorm", {"axis": 1}, (3, 6)),
    ("MinMaxNorm", {}, (5, 4)),
    ("MinMaxNorm", {"min_value": 0.5, "max_value": 0.8, "rate": 0.5, "axis": [0, 1]},
     (2, 3, 4)),
]


@pytest.mark.parametrize("name,kwargs,shape", CASES)
def test_constraints_match_keras(keras, name, kwargs, shape):
    rng = case_rng(name, repr(kwargs))
    w = rng.standard_normal(shape).astype(np.float32)
    w[0] = 0.0                                   # zero slices keep finite values
    ours = getattr(C, name)(**kwargs)
    theirs = getattr(keras.constraints, name)(**kwargs)
    want = to_numpy(theirs(keras.ops.convert_to_tensor(w)))
    got = ours(w)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert ours.get_config() == theirs.get_config()
    back = C.get(C.serialize(ours))
    assert type(back) is type(ours) and back.get_config() == ours.get_config()


def test_get_by_name_and_bad_arguments():
    assert isinstance(C.get("max_norm"), C.MaxNorm)
    assert isinstance(C.get("NonNeg"), C.NonNeg)
    assert C.get(None) is None
    with pytest.raises(ValueError, match="constraint: unknown constraint 'big'"):
        C.get("big")
    with pytest.raises(TypeError, match="constraint"):
        C.get(3)
    with pytest.raises(ValueError, match="max_value"):
        C.MaxNorm(-1)
    with pytest.raises(ValueError, match="max_value"):
        C.MinMaxNorm(min_value=2.0, max_value=1.0)
    with pytest.raises(TypeError, match="axis"):
        C.UnitNorm(axis="rows")
    with pytest.raises(TypeError, match="kernel_constraint: expected None"):
        L.Dense(2, kernel_constraint=1.5)


def _models(keras, rng):
    """The same convnet in pynn and Keras: Conv2D with a unit-norm filter constraint, Dense
    with max-norm kernel and non-negative bias constraints."""
    kw = dict(kernel_constraint="kernel", bias_constraint="bias")
    specs = [("Conv2D", dict(filters=3, kernel_size=2), ("UnitNorm", {"axis": [0, 1, 2]}),
              ("NonNeg", {})),
             ("Flatten", {}, None, None),
             ("Dense", dict(units=2), ("MaxNorm", {"max_value": 0.3}),
              ("MinMaxNorm", {"min_value": 0.1, "max_value": 0.2, "rate": 0.7, "axis": 0}))]
    pl, kl = [pynn.Input((5, 5, 2))], [keras.Input((5, 5, 2))]
    for name, args, kc, bc in specs:
        extra = {}
        kextra = {}
        for key, c in ((kw["kernel_constraint"], kc), (kw["bias_constraint"], bc)):
            if c is not None:
                extra[f"{key}_constraint"] = getattr(C, c[0])(**c[1])
                kextra[f"{key}_constraint"] = getattr(keras.constraints, c[0])(**c[1])
        pl.append(getattr(L, name)(**args, **extra))
        kl.append(getattr(keras.layers, name)(**args, **kextra))
    ours, theirs = pynn.Sequential(pl), keras.Sequential(kl)
    weights = [rng.standard_normal(w.shape).astype(np.float32) * 0.5
               for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs


def test_training_applies_constraints_after_each_step_as_keras(keras):
    rng = case_rng("train")
    ours, theirs = _models(keras, rng)
    ours.compile(pynn.optimizers.SGD(0.1), "mse")
    theirs.compile(keras.optimizers.SGD(0.1), "mse")
    x = rng.standard_normal((8, 5, 5, 2)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    for _ in range(2):
        ours.train_on_batch(x, y)
        theirs.train_on_batch(x, y)
    got = ours.get_weights()
    want = [to_numpy(v.value) for v in theirs.weights]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    kernel, bias = got[0], got[1]
    np.testing.assert_allclose(np.sqrt((kernel ** 2).sum(axis=(0, 1, 2))), 1.0, rtol=1e-5)
    assert (bias >= 0).all()
    assert (np.sqrt((got[2] ** 2).sum(axis=0)) <= 0.3 + 1e-6).all()


def test_fit_keeps_weights_constrained_and_frozen_layers_untouched():
    rng = case_rng("fit")
    frozen = L.Dense(4, kernel_constraint=C.UnitNorm(), name="frozen")
    model = pynn.Sequential([pynn.Input((6,)), frozen,
                             L.Dense(1, kernel_constraint=C.MaxNorm(0.1),
                                     bias_constraint=C.NonNeg())])
    frozen.trainable = False
    before = frozen.get_weights()[0].copy()       # not unit norm: the initializer's values
    model.compile("adam", "mse")
    x = rng.standard_normal((64, 6)).astype(np.float32)
    model.fit(x, rng.standard_normal((64, 1)).astype(np.float32) + 5, epochs=2, batch_size=16,
              verbose=0)
    w, b = model.layers[1].get_weights()
    assert np.linalg.norm(w[:, 0]) <= 0.1 + 1e-6 and b[0] >= 0
    assert np.array_equal(frozen.get_weights()[0], before)


def test_keras_file_keeps_constraints(tmp_path):
    model = pynn.Sequential([pynn.Input((3,)), L.Dense(2, kernel_constraint=C.NonNeg(),
                                                       bias_constraint=C.MaxNorm(0.5))])
    path = tmp_path / "c.keras"
    model.save(path)
    back = pynn.models.load_model(path)
    assert isinstance(back.layers[0].kernel_constraint, C.NonNeg)
    assert back.layers[0].bias_constraint.get_config() == {"max_value": 0.5, "axis": 0}


def test_configs_save_and_load(tmp_path):
    model = pynn.Sequential([pynn.Input((4, 4, 1)),
                             L.Conv2D(2, 3, kernel_constraint=C.MaxNorm(1.0, axis=[0, 1, 2])),
                             L.Flatten(), L.Dense(1, bias_constraint="non_neg")])
    path = tmp_path / "c.safetensors"
    model.save(path)
    back = pynn.models.load_model(path)
    assert isinstance(back.layers[0].kernel_constraint, C.MaxNorm)
    assert back.layers[0].kernel_constraint.get_config() == {"max_value": 1.0,
                                                             "axis": [0, 1, 2]}
    assert isinstance(back.layers[2].bias_constraint, C.NonNeg)
    assert back.layers[2].get_config() == model.layers[2].get_config()
