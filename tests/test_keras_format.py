"""Keras 3 files (.keras, .weights.h5, to_json) moving between pynn and real Keras 3 (torch
backend), both ways; loading refuses what it must.

Tolerances: both sides compute in float32 with different summation orders (Keras calls torch's
kernels), so outputs of these small models agree to ~1e-6; 1e-5 (atol, values of order 1)
leaves room for a few roundings more. One resumed optimizer step compares updated weights:
the same Adam step from the same state differs by rounding only (1e-6 of weights of order 1).
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import pynn
from pynn import layers as L

pytestmark = [
    # Keras's torch backend calls np.array on tensors, which numpy 2 flags as deprecated
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning:keras"),
]
ATOL = 1e-5


@pytest.fixture(scope="module")
def keras():
    import keras

    assert keras.backend.backend() == "torch"
    return keras


def _rng():
    return np.random.default_rng(0)


def _randomize(model):
    """Non-trivial weights (moving variances positive) so that every weight matters."""
    rng = _rng()
    values = []
    for w in model.weights:
        v = rng.normal(0, 0.5, w.shape).astype(np.float32)
        values.append(np.abs(v) + 0.5 if "variance" in w.path else v)
    model.set_weights(values)


def _conv_model():
    m = pynn.Sequential([
        L.InputLayer(shape=(8, 8, 3)),
        L.Conv2D(4, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.BatchNormalization(),
        L.Conv2D(6, (2, 2), strides=(2, 2), use_bias=False),
        L.AveragePooling2D(pool_size=1),
        L.GlobalMaxPooling2D(keepdims=True),
        L.Flatten(),
        L.Dropout(0.2),
        L.Dense(5, activation="tanh"),
        L.PReLU(),
        L.LeakyReLU(0.1),
        L.Dense(3),
        L.Softmax(),
    ])
    _randomize(m)
    return m, _rng().normal(size=(6, 8, 8, 3)).astype(np.float32)


def _seq1d_model():
    m = pynn.Sequential([
        L.InputLayer(shape=(10, 2)),
        L.Conv1D(3, 3, padding="causal", activation="elu"),
        L.MaxPooling1D(2, padding="same"),
        L.Conv1D(4, 2, dilation_rate=2),
        L.AveragePooling1D(),
        L.Permute((2, 1)),
        L.Reshape((-1,)),
        L.ELU(0.5),
        L.Dense(4),
        L.RepeatVector(2),
        L.GlobalAveragePooling1D(),
        L.ReLU(),
        L.Identity(),
        L.Activation("sigmoid"),
    ])
    _randomize(m)
    return m, _rng().normal(size=(5, 10, 2)).astype(np.float32)


def _functional_model():
    inner = pynn.Sequential([L.InputLayer(shape=(4,)), L.Dense(4, activation="relu"),
                             L.Dense(4)], name="inner")
    a = L.Input((4,), name="a")
    b = L.Input((4,), name="b")
    h = L.Dense(4, name="h")(a)
    g = inner(b)
    merged = [L.Add()([h, g]), L.Subtract()([h, g]), L.Multiply()([h, g]),
              L.Average()([h, g]), L.Maximum()([h, g]), L.Minimum()([h, g])]
    cat = L.Concatenate()(merged)
    dot = L.Dot(axes=1, normalize=True)([h, g])
    out = L.Dense(2, name="out")(L.Concatenate()([cat, dot]))
    m = pynn.Model([a, b], out, name="two_inputs")
    _randomize(m)
    rng = _rng()
    return m, [rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)]


def _nested_model():
    """A functional model inside a functional one (called twice: shared weights) and a
    Sequential inside a Sequential."""
    ei = L.Input((4,), name="ei")
    enc = pynn.Model(ei, L.Dense(3, activation="relu")(ei), name="enc")
    mid = pynn.Sequential([L.InputLayer(shape=(3,)), L.Dense(3),
                           pynn.Sequential([L.InputLayer(shape=(3,)), L.Dense(2)],
                                           name="deep")], name="mid")
    x = L.Input((4,), name="x")
    m = pynn.Model(x, L.Add()([mid(enc(x)), L.Dense(2)(enc(x))]))
    _randomize(m)
    return m, _rng().normal(size=(5, 4)).astype(np.float32)


MODELS = {"conv2d": _conv_model, "conv1d": _seq1d_model, "functional": _functional_model,
          "nested": _nested_model}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_pynn_file_loads_in_keras_and_predicts_the_same(keras, tmp_path, kind):
    model, x = MODELS[kind]()
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    km = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(km.predict(x, verbose=0)),
                               model.predict(x, verbose=0), atol=ATOL)
    # and back into pynn
    back = pynn.models.load_model(path)
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=0)


def _h5_tree(path):
    """[(name, shape, dtype, attributes)] of every object in a .keras archive's weights or in
    a .weights.h5 file."""
    import h5py

    if str(path).endswith(".keras"):
        with zipfile.ZipFile(path) as zf:
            data = zf.read("model.weights.h5")
    else:
        with open(path, "rb") as f:
            data = f.read()
    out = []
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, obj: out.append(
            (name, getattr(obj, "shape", None), str(getattr(obj, "dtype", "")),
             dict(obj.attrs))))
    return out


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_hdf5_layout_is_the_one_keras_writes(keras, tmp_path, kind):
    """pynn's file and Keras's re-save of it hold the same groups, datasets (names, shapes,
    dtypes) and attributes, the optimizer's included."""
    model, x = MODELS[kind]()
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, model.predict(x, verbose=0), epochs=1, verbose=0)
    model.save(tmp_path / "p.keras")
    keras.saving.load_model(tmp_path / "p.keras").save(tmp_path / "k.keras")
    ours, theirs = _h5_tree(tmp_path / "p.keras"), _h5_tree(tmp_path / "k.keras")
    assert any(name.startswith("optimizer/vars/") for name, *_ in ours)
    assert ours == theirs


def _keras_models(keras):
    kl = keras.layers
    seq = keras.Sequential([
        keras.Input((8, 8, 3)), kl.Conv2D(4, 3, padding="same", activation="relu"),
        kl.MaxPooling2D(), kl.BatchNormalization(), kl.Flatten(), kl.Dropout(0.3),
        kl.Dense(5), kl.PReLU(), kl.Dense(3, activation="softmax")])
    a = keras.Input((6,), name="a")
    inner = keras.Sequential([keras.Input((3,)), kl.Dense(3, activation="tanh")], name="inner")
    h = kl.Dense(3)(a)
    h2 = kl.Dense(3)(a)
    out = kl.Concatenate()([kl.Add()([inner(h), h2]), kl.Multiply()([h, h2])])
    func = keras.Model(a, kl.Dense(2)(out))
    rng = _rng()
    return {"sequential": (seq, rng.normal(size=(4, 8, 8, 3)).astype(np.float32)),
            "functional": (func, rng.normal(size=(4, 6)).astype(np.float32))}


def _keras_every_layer(keras):
    """A Keras model (two inputs, two outputs) with every layer class pynn reads."""
    kl = keras.layers
    a = keras.Input((10, 3), name="a")
    h = kl.Conv1D(4, 3, padding="causal", activation="relu")(a)
    h = kl.AveragePooling1D(1)(kl.MaxPooling1D(2, padding="same")(h))
    h = kl.Reshape((5, 4))(kl.Permute((2, 1))(h))
    g1, g2 = kl.GlobalAveragePooling1D()(h), kl.GlobalMaxPooling1D()(h)
    h = kl.Dense(6)(kl.Dropout(0.1)(kl.Flatten()(h)))
    h = kl.PReLU()(kl.ELU()(kl.LeakyReLU(0.2)(kl.ReLU()(h))))
    h = kl.BatchNormalization()(kl.Identity()(kl.Activation("gelu")(h)))
    r = kl.GlobalAveragePooling1D()(kl.RepeatVector(2)(kl.Dense(4)(h)))
    merged = [kl.Add()([r, g1]), kl.Subtract()([r, g2]), kl.Multiply()([r, g1]),
              kl.Average()([r, g2]), kl.Maximum()([r, g1]), kl.Minimum()([r, g2]),
              kl.Dot(axes=1)([r, g1])]
    out = kl.Softmax()(kl.Dense(3)(kl.Concatenate()(merged)))
    b = keras.Input((6, 6, 2), name="b")
    c = kl.AveragePooling2D(1)(kl.MaxPooling2D()(kl.Conv2D(3, 2, padding="same")(b)))
    c = kl.Concatenate()([kl.GlobalMaxPooling2D()(c), kl.GlobalAveragePooling2D()(b)])
    km = keras.Model([a, b], [out, c])
    rng = _rng()
    for w in km.weights:   # moving variances positive, everything else random
        w.assign(rng.normal(size=w.shape).astype(np.float32) * 0.5
                 + (1.0 if "variance" in w.path else 0.0))
    return km, [rng.normal(size=(4, 10, 3)).astype(np.float32),
                rng.normal(size=(4, 6, 6, 2)).astype(np.float32)]


def test_every_layer_class_from_keras_and_back(keras, tmp_path):
    km, x = _keras_every_layer(keras)
    km.save(tmp_path / "k.keras")
    model = pynn.models.load_model(tmp_path / "k.keras")
    want = [np.asarray(v) for v in km.predict(x, verbose=0)]
    for got, ref in zip(model.predict(x, verbose=0), want):
        np.testing.assert_allclose(got, ref, atol=ATOL)
    model.save(tmp_path / "p.keras")
    for got, ref in zip(keras.saving.load_model(tmp_path / "p.keras").predict(x, verbose=0),
                        want):
        np.testing.assert_allclose(np.asarray(got), ref, atol=ATOL)


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_keras_file_loads_in_pynn_and_predicts_the_same(keras, tmp_path, kind):
    km, x = _keras_models(keras)[kind]
    km.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    y = np.asarray(km.predict(x, verbose=0))
    km.fit(x, y + 0.1, epochs=2, verbose=0)   # moving statistics and Adam slots not fresh
    path = tmp_path / "k.keras"
    km.save(path)
    model = pynn.models.load_model(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.asarray(km.predict(x, verbose=0)),
                               atol=ATOL)
    cc = model.get_compile_config()
    assert cc["optimizer"]["class_name"] == "Adam"
    assert cc["optimizer"]["config"]["learning_rate"] == pytest.approx(0.01)
    assert cc["loss"]["class_name"] == "MeanSquaredError"
    assert cc["metrics"] == ["mae"]
    assert model.optimizer.get_state()["iterations"] == int(km.optimizer.iterations)


def _same_step(keras, km, model, x, y):
    km.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    for kw, pw in zip(km.weights, model.weights):
        np.testing.assert_allclose(pw.numpy(), np.asarray(kw.numpy()), atol=2e-6,
                                   err_msg=pw.path)


# (Keras's optimizer, pynn's) of the same configuration, whose slots the files carry
OPTIMIZERS = {
    "adam": (lambda k: k.optimizers.Adam(0.05), lambda: pynn.optimizers.Adam(0.05)),
    "adamw": (lambda k: k.optimizers.AdamW(0.05), lambda: pynn.optimizers.AdamW(0.05)),
    "sgd_momentum": (lambda k: k.optimizers.SGD(0.05, momentum=0.9),
                     lambda: pynn.optimizers.SGD(0.05, momentum=0.9)),
    "rmsprop": (lambda k: k.optimizers.RMSprop(0.01), lambda: pynn.optimizers.RMSprop(0.01)),
    "adagrad": (lambda k: k.optimizers.Adagrad(0.1), lambda: pynn.optimizers.Adagrad(0.1)),
    "adam_amsgrad": (lambda k: k.optimizers.Adam(0.05, amsgrad=True),
                     lambda: pynn.optimizers.Adam(0.05, amsgrad=True)),
    "rmsprop_momentum_centered": (
        lambda k: k.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
        lambda: pynn.optimizers.RMSprop(0.01, momentum=0.5, centered=True)),
    "rmsprop_centered": (lambda k: k.optimizers.RMSprop(0.01, centered=True),
                         lambda: pynn.optimizers.RMSprop(0.01, centered=True)),
    "adadelta": (lambda k: k.optimizers.Adadelta(1.0), lambda: pynn.optimizers.Adadelta(1.0)),
    "adamax": (lambda k: k.optimizers.Adamax(0.05), lambda: pynn.optimizers.Adamax(0.05)),
    "nadam": (lambda k: k.optimizers.Nadam(0.05), lambda: pynn.optimizers.Nadam(0.05)),
}


def _train_three_steps(model, optimizer):
    """Compiles with `optimizer` and takes three full-batch steps; returns (x, y)."""
    model.compile(optimizer=optimizer, loss="mse")
    rng = _rng()
    x = rng.normal(size=(8, 5)).astype(np.float32)
    y = rng.normal(size=(8, 2)).astype(np.float32)
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    return x, y


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_training_resumes_from_keras_optimizer_state(keras, tmp_path, optimizer):
    kl = keras.layers
    km = keras.Sequential([keras.Input((5,)), kl.Dense(4, activation="tanh"),
                           kl.BatchNormalization(), kl.Dense(2)])
    x, y = _train_three_steps(km, OPTIMIZERS[optimizer][0](keras))
    km.save(tmp_path / "k.keras")
    model = pynn.models.load_model(tmp_path / "k.keras")
    state = model.optimizer.get_state()
    assert state["iterations"] == 3
    assert any(np.any(s != 0) for slots in state["slots"].values() for s in slots)
    _same_step(keras, km, model, x, y)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_training_resumes_in_keras_from_pynn_optimizer_state(keras, tmp_path, optimizer):
    model = pynn.Sequential([L.InputLayer(shape=(5,)), L.Dense(4, activation="tanh"),
                             L.BatchNormalization(), L.Dense(2)])
    x, y = _train_three_steps(model, OPTIMIZERS[optimizer][1]())
    model.save(tmp_path / "p.keras")
    km = keras.saving.load_model(tmp_path / "p.keras")
    assert type(km.optimizer).__name__ == type(model.optimizer).__name__
    assert int(km.optimizer.iterations) == 3
    assert type(km.loss).__name__ == "MeanSquaredError"
    _same_step(keras, km, model, x, y)


def test_weights_h5_both_ways(keras, tmp_path):
    model, x = _conv_model()
    model.save_weights(tmp_path / "p.weights.h5")
    km = keras.saving.load_model(_save_keras_arch(model, tmp_path))
    km.load_weights(tmp_path / "p.weights.h5")
    np.testing.assert_allclose(np.asarray(km.predict(x, verbose=0)),
                               model.predict(x, verbose=0), atol=ATOL)
    # Keras's weights into a fresh pynn model of the same architecture
    for w in km.weights:
        w.assign(np.asarray(w.numpy()) * 0.5 + (0.3 if "variance" in w.path else 0.0))
    km.save_weights(tmp_path / "k.weights.h5")
    fresh = pynn.models.model_from_json(model.to_json())
    fresh.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(fresh.predict(x, verbose=0), np.asarray(km.predict(x, verbose=0)),
                               atol=ATOL)


def test_weights_h5_carries_the_optimizer_state_as_keras_does(keras, tmp_path):
    kl = keras.layers
    km = keras.Sequential([keras.Input((5,)), kl.Dense(4, activation="tanh"), kl.Dense(2)])
    x, y = _train_three_steps(km, OPTIMIZERS["adam"][0](keras))
    km.save_weights(tmp_path / "k.weights.h5")
    model = pynn.Sequential([L.InputLayer(shape=(5,)), L.Dense(4, activation="tanh"),
                             L.Dense(2)])
    model.compile(optimizer=OPTIMIZERS["adam"][1](), loss="mse")
    model.load_weights(tmp_path / "k.weights.h5")
    assert model.optimizer.get_state()["iterations"] == 3
    _same_step(keras, km, model, x, y)
    # and pynn's compiled weights file holds what Keras's does
    model.save_weights(tmp_path / "p.weights.h5")
    km.save_weights(tmp_path / "k2.weights.h5")
    # (the layers' names differ: each session numbers its default names on)
    assert [t[:3] for t in _h5_tree(tmp_path / "p.weights.h5")] == \
        [t[:3] for t in _h5_tree(tmp_path / "k2.weights.h5")]


def _save_keras_arch(model, tmp_path):
    path = tmp_path / "arch.keras"
    model.save(path)
    return path


def test_to_json_both_ways(keras):
    model, x = _functional_model()
    km = keras.models.model_from_json(model.to_json())
    assert [layer.name for layer in km.layers] == [layer.name for layer in model.layers]
    km.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(km.predict(x, verbose=0)),
                               model.predict(x, verbose=0), atol=ATOL)
    back = pynn.models.model_from_json(km.to_json())
    back.set_weights([np.asarray(w) for w in km.get_weights()])
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=ATOL)


def test_model_checkpoint_writes_keras_and_weights_h5(tmp_path):
    model = pynn.Sequential([L.InputLayer(shape=(3,)), L.Dense(2)])
    model.compile("sgd", "mse")
    x = np.ones((4, 3), np.float32)
    cbs = [pynn.callbacks.ModelCheckpoint(str(tmp_path / "e{epoch}.keras")),
           pynn.callbacks.ModelCheckpoint(str(tmp_path / "w.weights.h5"), save_weights_only=True)]
    model.fit(x, np.zeros((4, 2), np.float32), epochs=2, verbose=0, callbacks=cbs)
    assert sorted(os.listdir(tmp_path)) == ["e1.keras", "e2.keras", "w.weights.h5"]
    again = pynn.models.load_model(tmp_path / "e2.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    fresh = pynn.models.clone_model(model)
    fresh.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))


def test_safetensors_stays(tmp_path):
    model, x = _seq1d_model()
    model.save(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(pynn.models.load_model(tmp_path / "m.safetensors")
                                  .predict(x, verbose=0), model.predict(x, verbose=0))


# --- refusals ---------------------------------------------------------------------------------
def _small_keras_file(tmp_path):
    model = pynn.Sequential([L.InputLayer(shape=(3,)), L.Dense(2)])
    path = tmp_path / "s.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_lambda_layer_in_a_keras_config_is_refused(tmp_path):
    members = _small_keras_file(tmp_path)
    cfg = json.loads(members["config.json"])
    cfg["config"]["layers"].insert(1, {"module": "keras.layers", "class_name": "Lambda",
                                       "config": {"name": "evil", "function": {
                                           "class_name": "__lambda__", "config": {
                                               "code": "4wEAAAAAAAAAAAAAAAEAAAADAAAA"}}}})
    members["config.json"] = json.dumps(cfg).encode()
    with pytest.raises(ValueError, match="Lambda layer.*never runs code"):
        pynn.models.load_model(_zip(tmp_path / "l.keras", members))


@pytest.mark.parametrize("name", ["/etc/passwd", "../up.json", "a/../../b", "assets/x.bin",
                                  "extra.json"])
def test_unsafe_or_unknown_zip_members_are_refused(tmp_path, name):
    members = _small_keras_file(tmp_path)
    members[name] = b"{}"
    with pytest.raises(ValueError, match="unsafe member|unknown member"):
        pynn.models.load_model(_zip(tmp_path / "z.keras", members))


def test_zip_bomb_is_refused_before_reading(tmp_path):
    members = _small_keras_file(tmp_path)
    members["config.json"] = b" " * (8 * 2**20) + members["config.json"]
    with pytest.raises(ValueError, match="zip bomb"):
        pynn.models.load_model(_zip(tmp_path / "b.keras", members, zipfile.ZIP_DEFLATED))


def test_dataset_shape_checked_against_config(tmp_path):
    import h5py

    members = _small_keras_file(tmp_path)
    buf = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buf, "a") as f:
        del f["layers/dense/vars/0"]
        f.create_dataset("layers/dense/vars/0", data=np.zeros((4, 2), np.float32))
    members["model.weights.h5"] = buf.getvalue()
    with pytest.raises(ValueError, match=r"shape \(4, 2\), the model config gives \(3, 2\)"):
        pynn.models.load_model(_zip(tmp_path / "s.keras", members))


def test_files_pynn_does_not_read_are_named(tmp_path):
    import h5py

    h5 = tmp_path / "legacy.h5"
    with h5py.File(h5, "w") as f:
        f.attrs["model_config"] = "{}"
    with pytest.raises(ValueError, match="an HDF5 file; pynn reads models from .keras"):
        pynn.models.load_model(h5)
    junk = tmp_path / "model.bin"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a model file pynn reads"):
        pynn.models.load_model(junk)
    with pytest.raises(ValueError, match=r"\.keras"):
        pynn.Sequential([L.InputLayer(shape=(2,)), L.Dense(1)]).save(tmp_path / "m.h5")


def test_common_formats_pynn_does_not_read_are_named(tmp_path):
    import pickle

    import torch

    model = pynn.Sequential([L.InputLayer(shape=(2,)), L.Dense(1)])
    model.export(tmp_path / "m.onnx", format="onnx")
    torch.save({"w": torch.ones(2)}, tmp_path / "m.pt")
    np.savez(tmp_path / "w.npz", w=np.ones(2))
    (tmp_path / "m.pkl").write_bytes(pickle.dumps({"w": 1}))
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"\x08\x01")
    (tmp_path / "m.json").write_text(model.to_json())
    for name, what in [("m.onnx", "an ONNX model"), ("m.pt", "a PyTorch file"),
                       ("w.npz", "a NumPy .npz archive"), ("m.pkl", "a Python pickle"),
                       ("sm", "a TensorFlow SavedModel folder"),
                       ("sm/saved_model.pb", "a TensorFlow protobuf graph"),
                       ("m.json", "model_from_json")]:
        for load in (pynn.models.load_model, model.load_weights):
            with pytest.raises(ValueError, match=re.escape(what)):
                load(tmp_path / name)


def test_saving_is_atomic(tmp_path, monkeypatch):
    from pynn.models import keras_format

    model = pynn.Sequential([L.InputLayer(shape=(3,)), L.Dense(2)])
    path = tmp_path / "m.keras"
    model.save(path)
    before = path.read_bytes()

    def broken(fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(keras_format, "_write_zip", lambda *a: broken, raising=True)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.keras"]


@pytest.mark.parametrize("name", ["m.keras", "m.weights.h5", "m.onnx"])
def test_every_writer_is_atomic(tmp_path, monkeypatch, name):
    """A failure after the bytes are written (here fsync) leaves the old file and no
    temporary one, for the archive, the weights and the ONNX export alike."""
    model = pynn.Sequential([L.InputLayer(shape=(3,)), L.Dense(2)])
    path = tmp_path / name
    path.write_bytes(b"old")

    def write():
        if name.endswith(".onnx"):
            model.export(path, format="onnx")
        elif name.endswith(".weights.h5"):
            model.save_weights(path)
        else:
            model.save(path)

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == [name]
    monkeypatch.undo()
    write()
    assert path.read_bytes() != b"old"


def test_import_pynn_does_not_import_h5py():
    code = "import sys, pynn, pynn.models; print('h5py' in sys.modules, 'onnx' in sys.modules)"
    root = os.path.dirname(os.path.dirname(pynn.__file__))
    env = {**os.environ, "PYTHONPATH": root}
    # cwd=root: `python -c` puts the working directory first on sys.path, and from a source
    # checkout that would be the uncompiled pynn/ folder, not the package under test
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=root, check=True).stdout.split()
    assert out == ["False", "False"]


@pytest.mark.parametrize("how", ["soft link", "external link", "external storage"])
def test_hdf5_pointing_outside_the_file_is_refused(tmp_path, how):
    import h5py

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    model = pynn.Sequential([L.InputLayer(shape=(3,)), L.Dense(2, use_bias=False)])
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    with h5py.File(path, "a") as f:
        del f["layers/dense/vars/0"]
        if how == "soft link":
            f["elsewhere"] = np.zeros((3, 2), np.float32)
            f["layers/dense/vars/0"] = h5py.SoftLink("/elsewhere")
        elif how == "external link":
            f["layers/dense/vars/0"] = h5py.ExternalLink(str(secret), "/x")
        else:
            f.create_dataset("layers/dense/vars/0", (3, 2), np.float32,
                             external=[(str(secret), 0, 24)])
    with pytest.raises(ValueError, match="Link|outside the file"):
        model.load_weights(path)


def test_registered_custom_layer_round_trip(tmp_path):
    @pynn.saving.register_serializable(package="kfiles_test")
    class Scale(L.Layer):
        def build(self, input_shape):
            self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="s")

        def call(self, x):
            return x * self.s

    m = pynn.Sequential([L.InputLayer(shape=(3,)), Scale(), L.Dense(2)])
    _randomize(m)
    m.save(tmp_path / "c.keras")
    with zipfile.ZipFile(tmp_path / "c.keras") as zf:
        entry = json.loads(zf.read("config.json"))["config"]["layers"][1]
    assert (entry["class_name"], entry["registered_name"]) == ("Scale", "kfiles_test>Scale")
    x = _rng().normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(pynn.models.load_model(tmp_path / "c.keras").predict(x, verbose=0),
                                  m.predict(x, verbose=0))


def test_recurrent_and_embedding_layers_both_ways(keras, tmp_path):
    """Embedding, SimpleRNN / LSTM / GRU (variables in Keras's cell sub-object) and
    the Bidirectional / TimeDistributed wrappers: Keras's file into pynn, pynn's into Keras,
    and pynn's HDF5 tree equal to Keras's re-save of it."""
    kl = keras.layers
    i = keras.Input((6,))
    h = kl.Embedding(10, 4)(i)
    h = kl.LSTM(3, return_sequences=True)(h)
    h = kl.GRU(3, return_sequences=True)(h)
    h = kl.SimpleRNN(3, return_sequences=True)(h)
    h = kl.Bidirectional(kl.LSTM(2, return_sequences=True))(h)
    km = keras.Model(i, kl.TimeDistributed(kl.Dense(2))(h))
    rng = _rng()
    for w in km.weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32) * 0.5)
    x = rng.integers(1, 10, size=(4, 6)).astype(np.float32)
    km.save(tmp_path / "k.keras")
    model = pynn.models.load_model(tmp_path / "k.keras")
    want = np.asarray(km.predict(x, verbose=0))
    np.testing.assert_allclose(model.predict(x, verbose=0), want, atol=ATOL)
    model.save(tmp_path / "p.keras")
    back = keras.saving.load_model(tmp_path / "p.keras")
    np.testing.assert_allclose(np.asarray(back.predict(x, verbose=0)), want, atol=ATOL)
    back.save(tmp_path / "k2.keras")
    assert [t[:3] for t in _h5_tree(tmp_path / "p.keras")] == \
        [t[:3] for t in _h5_tree(tmp_path / "k2.keras")]


def test_keras_call_arguments_pynn_cannot_honour_are_refused(keras, tmp_path):
    """A call's keyword arguments in a Keras file: the ones Keras records by itself
    (training=False, mask) load and predict the same; initial_state or an explicit
    training=True (dropout kept on at inference) would be dropped, so the file is refused
    with the argument named instead of loading into a model that computes something else."""
    x = keras.Input((5,), dtype="int32")
    h = keras.layers.Embedding(10, 4, mask_zero=True)(x)
    h = keras.layers.LSTM(3)(h)                          # recorded: training=False, mask
    h = keras.layers.Dropout(0.5)(h)                     # recorded: training=False
    plain = keras.Model(x, keras.layers.Dense(2)(h))
    xs = _rng().integers(0, 10, (4, 5)).astype(np.int32)
    xs[:, 3:] = 0
    plain.save(tmp_path / "plain.keras")
    np.testing.assert_allclose(pynn.models.load_model(tmp_path / "plain.keras").predict(
        xs, verbose=0), np.asarray(plain.predict(xs, verbose=0)), atol=ATOL)

    seq, h0, c0 = keras.Input((5, 3)), keras.Input((4,)), keras.Input((4,))
    with_state = keras.Model([seq, h0, c0], keras.layers.LSTM(4)(seq, initial_state=[h0, c0]))
    with_state.save(tmp_path / "state.keras")
    with pytest.raises(ValueError, match="initial_state"):
        pynn.models.load_model(tmp_path / "state.keras")

    v = keras.Input((6,))
    mc_dropout = keras.Model(v, keras.layers.Dropout(0.5)(v, training=True))
    mc_dropout.save(tmp_path / "mc.keras")
    with pytest.raises(ValueError, match="training=True"):
        pynn.models.load_model(tmp_path / "mc.keras")


def _depthwise_separable(mod):
    # C = 2 channels into the separable layer: its depthwise kernel (3, 3, 2, 1) is not the
    # shape the engine's grouped conv sees, (3, 3, 1, 2), so its optimizer slots must be
    # written and read in Keras's shape
    return mod.Sequential([mod.Input((6, 6, 1)),
                           mod.layers.DepthwiseConv2D(3, depth_multiplier=2),
                           mod.layers.SeparableConv2D(2, 3, depth_multiplier=1),
                           mod.layers.Flatten(), mod.layers.Dense(2)])


def test_depthwise_optimizer_state_moves_both_ways(keras, tmp_path):
    rng = _rng()
    x = rng.normal(size=(8, 6, 6, 1)).astype(np.float32)
    y = rng.normal(size=(8, 2)).astype(np.float32)
    model = _depthwise_separable(pynn)
    model.compile(optimizer=pynn.optimizers.Adam(0.05), loss="mse")
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    model.save(tmp_path / "p.keras")
    km = keras.saving.load_model(tmp_path / "p.keras")
    assert int(km.optimizer.iterations) == 3
    _same_step(keras, km, model, x, y)
    # and back: Keras's state into pynn
    km.save(tmp_path / "k.keras")
    back = pynn.models.load_model(tmp_path / "k.keras")
    assert back.optimizer.get_state()["iterations"] == 4
    _same_step(keras, km, back, x, y)
