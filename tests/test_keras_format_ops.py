"""Keras 3 functional files holding Keras's op entries (keras.src.ops.*): the ops Keras records
to compute masks (Embedding(mask_zero=True): NotEqual; Masking: NotEqual then Any) and the
keras.ops calls of the model. pynn reads them as its own op layers (data only) and predicts
what Keras predicts, on padded sequences too; an op it does not have is refused by name.

Tolerance: both compute in float32 over a few short recurrences; 1e-5 (atol) covers their
different summation orders.
"""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from keras_helpers import case_rng, to_numpy
from test_keras_format import _h5_tree

import pynn
from pynn import layers as L
from pynn import ops
from pynn.models import keras_ops

ATOL = 1e-5
pytestmark = [   # Keras's torch backend warns about NumPy 2's copy keyword when it saves
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning:keras"),
]


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def _embedding_model(keras):
    L = keras.layers
    inp = keras.Input((6,), dtype="int32")
    x = L.Embedding(10, 4, mask_zero=True, embeddings_initializer="uniform")(inp)
    x = L.LSTM(3, return_sequences=True)(x)
    x = L.GRU(3, go_backwards=True)(x)
    return keras.Model(inp, L.Dense(2)(x))


def _masking_model(keras):
    L = keras.layers
    inp = keras.Input((6, 3))
    x = L.Masking(mask_value=0.0)(inp)
    x = L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode="sum")(x)
    return keras.Model(inp, L.Dense(2)(x))


def _ops_model(keras):
    ops = keras.ops
    inp = keras.Input((4, 3))
    y = ops.sum(ops.add(inp, 1.0), axis=1)
    z = ops.reshape(ops.square(inp), (-1, 12))
    w = ops.max(ops.transpose(ops.multiply(inp, inp), (0, 2, 1)), axis=-1)
    return keras.Model(inp, keras.layers.Concatenate()([y, z, ops.tanh(w)]))


def _inputs(kind, rng):
    if kind == "embedding":
        x = rng.integers(1, 10, (6, 6))
        x[0, 4:] = 0     # right padding
        x[1, :2] = 0     # left padding
        x[2, 3] = 0      # a hole
        x[3, :] = 0      # all padding
        return x
    x = rng.normal(size=(6, 6, 3) if kind == "masking" else (6, 4, 3)).astype(np.float32)
    if kind == "masking":
        x[0, 4:] = 0
        x[1, :2] = 0
        x[2, 3] = 0
        x[3] = 0
    return x


@pytest.mark.parametrize("kind,build", [("embedding", _embedding_model),
                                        ("masking", _masking_model), ("ops", _ops_model)])
def test_keras_op_entries_load_and_predict_as_keras(keras, tmp_path, kind, build):
    km = build(keras)
    path = tmp_path / "k.keras"
    km.save(path)
    classes = {e["class_name"] for e in json.loads(
        zipfile.ZipFile(path).read("config.json"))["config"]["layers"]}
    assert classes & set(keras_ops.KERAS_OPS), classes   # the file does hold op entries
    x = _inputs(kind, case_rng(kind))
    want = to_numpy(km(x))
    pm = pynn.models.load_model(path)
    np.testing.assert_allclose(pm.predict(x.astype(np.float32), verbose=0), want, atol=ATOL)
    # the same config through JSON (architecture only; the weights set by hand)
    js = pynn.models.model_from_json(km.to_json())
    js.set_weights([to_numpy(w.value) for w in km.weights])
    np.testing.assert_allclose(js.predict(x.astype(np.float32), verbose=0), want, atol=ATOL)
    # and back: pynn's file (its own op layers for the data ops) loads in pynn and, for the
    # masks (which Keras recomputes), in Keras
    pm.save(tmp_path / "p.keras")
    np.testing.assert_allclose(pynn.models.load_model(tmp_path / "p.keras").predict(
        x.astype(np.float32), verbose=0), want, atol=ATOL)
    back = keras.models.load_model(tmp_path / "p.keras")
    np.testing.assert_allclose(to_numpy(back(x)), want, atol=ATOL)


def _edited(keras, tmp_path, change):
    km = _masking_model(keras)
    km.save(tmp_path / "k.keras")
    with zipfile.ZipFile(tmp_path / "k.keras") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    cfg = json.loads(members["config.json"])
    change({e["name"]: e for e in cfg["config"]["layers"]})
    path = tmp_path / "edited.keras"
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, json.dumps(cfg) if n == "config.json" else data)
    return path


def _op(entries, cls):
    return next(e for e in entries.values() if e["class_name"] == cls)


def test_unknown_op_class_is_refused_by_name(keras, tmp_path):
    path = _edited(keras, tmp_path, lambda e: _op(e, "Any").__setitem__("class_name",
                                                                        "PyFunc"))
    with pytest.raises(ValueError, match="unknown Keras op class 'PyFunc'"):
        pynn.models.load_model(path)


def test_any_on_a_float_tensor_is_refused(keras, tmp_path):
    inp = keras.Input((4, 3))
    keras.Model(inp, keras.ops.any(inp, axis=-1)).save(tmp_path / "k.keras")
    with pytest.raises(ValueError, match="Any on boolean tensors only"):
        pynn.models.load_model(tmp_path / "k.keras")


def test_a_mask_passed_by_hand_is_refused(keras, tmp_path):
    def change(e):
        rnn = next(v for v in e.values() if v["class_name"] == "Bidirectional")
        rnn["inbound_nodes"][0]["kwargs"]["mask"]["config"]["keras_history"] = \
            [_op(e, "Masking")["name"], 0, 0]   # a layer's output, not an op's

    with pytest.raises(ValueError, match="passed by hand"):
        pynn.models.load_model(_edited(keras, tmp_path, change))


def test_an_op_setting_pynn_lacks_is_refused(keras, tmp_path):
    path = _edited(keras, tmp_path, lambda e: _op(e, "Any")["config"].__setitem__(
        "initial", 3))
    with pytest.raises(ValueError, match="takes no 'initial'"):
        pynn.models.load_model(path)


def test_every_table_entry_names_a_pynn_op():
    for cls, (fn, _) in keras_ops.KERAS_OPS.items():
        assert callable(getattr(pynn.ops, fn, None)), (cls, fn)


def test_pynn_ops_are_written_as_keras_op_entries(keras, tmp_path):
    """A pynn model using pynn.ops: its file names Keras's op classes, loads in Keras and
    predicts the same, and its HDF5 tree is Keras's (no groups for the ops, the Add layer
    numbered as Keras numbers it)."""
    x = L.Input((4, 3))
    a = ops.sum(ops.multiply(ops.add(x, 1.0), ops.subtract(2.0, x)), axis=-1)
    b = ops.reshape(ops.transpose(ops.tanh(x), (0, 2, 1)), (-1, 12))
    c = ops.softmax(ops.relu(ops.sigmoid(ops.square(x))))
    d = ops.concatenate([ops.max(x, axis=1), ops.mean(ops.exp(c), axis=1)], axis=-1)
    e = ops.where(ops.greater(d, 0.5), ops.sqrt(ops.abs(d)), ops.negative(d))
    y = L.Add()([L.Dense(6)(L.Concatenate()([a, b, e])), L.Dense(6)(a)])
    model = pynn.Model(x, y)
    model.save(tmp_path / "p.keras")
    entries = json.loads(zipfile.ZipFile(tmp_path / "p.keras").read("config.json"))[
        "config"]["layers"]
    assert "OpLayer" not in {e["class_name"] for e in entries}
    xv = case_rng("ops-out").normal(size=(5, 4, 3)).astype(np.float32)
    want = model.predict(xv, verbose=0)
    km = keras.models.load_model(tmp_path / "p.keras")
    np.testing.assert_allclose(to_numpy(km(xv)), want, atol=ATOL)
    km.save(tmp_path / "k.keras")
    assert _h5_tree(tmp_path / "p.keras") == _h5_tree(tmp_path / "k.keras")
    np.testing.assert_allclose(pynn.models.load_model(tmp_path / "k.keras").predict(
        xv, verbose=0), want, atol=ATOL)


def test_an_op_keras_lacks_stays_pynn_own():
    x = L.Input((3,))
    model = pynn.Model(x, ops.clip(x, -1.0, 1.0))
    entries = _entries(model)
    assert [e["class_name"] for e in entries[1:]] == ["OpLayer"]


def _entries(model):
    from pynn.models.keras_format import model_config

    return model_config(model)["config"]["layers"]


def _dense_between(keras):
    L = keras.layers
    inp = keras.Input((6,), dtype="int32")
    x = L.Dense(3)(L.Embedding(10, 4, mask_zero=True)(inp))
    return keras.Model(inp, L.LSTM(2)(x))


def _masks_merged(keras):
    """Keras combines the masks of Concatenate's inputs with ExpandDims, ZerosLike,
    LogicalOr, Concatenate and Any entries (left out by pynn after checking them)."""
    L = keras.layers
    inp = keras.Input((6,), dtype="int32")
    a = L.Embedding(10, 4, mask_zero=True)(inp)
    b = L.Embedding(10, 3, mask_zero=True)(inp)
    return keras.Model(inp, L.LSTM(2)(L.Concatenate()([a, b])))


def _masks_added(keras):
    """Add of a masked tensor and a Dense of it: Keras combines the masks with LogicalOr."""
    L = keras.layers
    inp = keras.Input((6,), dtype="int32")
    x = L.Embedding(10, 4, mask_zero=True)(inp)
    return keras.Model(inp, L.LSTM(2)(L.Add()([x, L.Dense(4)(x)])))


@pytest.mark.parametrize("build", [_dense_between, _masks_merged, _masks_added])
def test_masks_through_other_layers_match_keras(keras, tmp_path, build):
    km = build(keras)
    km.save(tmp_path / "k.keras")
    x = _inputs("embedding", case_rng("through", build.__name__))
    pm = pynn.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(pm.predict(x.astype(np.float32), verbose=0), to_numpy(km(x)),
                               atol=ATOL)


def test_a_mask_pynn_does_not_hand_on_is_refused(keras, tmp_path):
    """A recurrent layer the file says Keras handed a mask, which pynn's graph does not mask
    (here: an unmasked input, with a NotEqual entry and a mask keyword added by hand), is
    refused rather than computed differently."""
    inp = keras.Input((6, 3))
    keras.Model(inp, keras.layers.LSTM(2)(inp)).save(tmp_path / "k.keras")
    with zipfile.ZipFile(tmp_path / "k.keras") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    cfg = json.loads(members["config.json"])
    layers = cfg["config"]["layers"]
    source = layers[1]["inbound_nodes"][0]["args"][0]
    layers.insert(1, {"module": "keras.src.ops.numpy", "class_name": "NotEqual",
                      "config": {"name": "not_equal"}, "registered_name": "NotEqual",
                      "name": "not_equal",
                      "inbound_nodes": [{"args": [source, 0.0], "kwargs": {}}]})
    layers[2]["inbound_nodes"][0]["kwargs"]["mask"] = {
        "class_name": "__keras_tensor__",
        "config": {"shape": [None, 6, 3], "dtype": "bool",
                   "keras_history": ["not_equal", 0, 0]}}
    with zipfile.ZipFile(tmp_path / "edited.keras", "w") as zf:
        for n, data in members.items():
            zf.writestr(n, json.dumps(cfg) if n == "config.json" else data)
    with pytest.raises(ValueError, match="Keras hands it a mask that pynn does not hand on"):
        pynn.models.load_model(tmp_path / "edited.keras")


def test_per_sample_scalars_both_ways(keras, tmp_path):
    """Ops on a value per sample (Keras's shape (None,)): Keras's file loads in pynn, pynn's
    loads in Keras, and the ONNX export agrees, all with Keras's shapes."""
    import onnxruntime as ort

    inp = keras.Input((4, 3))
    y = keras.ops.multiply(keras.ops.sum(inp, axis=(1, 2)), 2.0)
    km = keras.Model(inp, [y, keras.layers.Dense(2)(keras.ops.expand_dims(y, -1))])
    km.save(tmp_path / "k.keras")
    x = case_rng("scalars").normal(size=(5, 4, 3)).astype(np.float32)
    want = [to_numpy(t) for t in km(x)]
    pm = pynn.models.load_model(tmp_path / "k.keras")
    pm.save(tmp_path / "p.keras")
    pm.export(tmp_path / "p.onnx", format="onnx")
    sess = ort.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"])
    for got in (pm.predict(x, verbose=0),
                [to_numpy(t) for t in keras.models.load_model(tmp_path / "p.keras")(x)],
                sess.run(None, {sess.get_inputs()[0].name: x})):
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, atol=ATOL)
