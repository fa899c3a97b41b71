"""Model files: save/load round trips, exact resumption of training, weights-only files,
interoperability with the `safetensors` package, atomic writes, and clear errors."""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import pynn
from pynn import layers as L
from pynn.models import _safetensors, load_model, saving

import safetensors.numpy as safetensors_numpy  # a dependency of pynn: never skipped


def _data(n=48, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, c, n)


def _model(optimizer="adam", dropout_seed=7, extra=True):
    pynn.utils.set_random_seed(11)
    stack = [pynn.Input((6,)), L.Dense(8, activation="relu", kernel_regularizer="l2")]
    if extra:
        stack += [L.BatchNormalization(), L.PReLU(), L.Dropout(0.25, seed=dropout_seed),
                  L.LeakyReLU(0.1), L.Dense(4, activation="tanh"),
                  L.BatchNormalization(center=False, scale=False)]
    stack += [L.Dense(3, activation="softmax")]
    m = pynn.Sequential(stack)
    m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def _same(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(x.dtype == y.dtype and x.shape == y.shape
                                      and x.tobytes() == y.tobytes() for x, y in zip(wa, wb))


def test_round_trip_architecture_weights_and_compile_config(tmp_path):
    x, y = _data()
    m = _model()
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "m.safetensors"
    m.save(path)
    back = load_model(path)
    assert back.get_config() == m.get_config()
    assert _same(m, back)
    assert back.get_compile_config() == m.get_compile_config()
    assert back.optimizer.iterations == m.optimizer.iterations == 3
    assert np.array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
    assert [type(layer).__name__ for layer in back.layers] == \
        ["Dense", "BatchNormalization", "PReLU", "Dropout", "LeakyReLU", "Dense",
         "BatchNormalization", "Dense"]


def test_load_without_compile(tmp_path):
    m = _model()
    m.save(tmp_path / "m.safetensors")
    back = load_model(tmp_path / "m.safetensors", compile=False)
    assert not back.compiled and _same(m, back)


def test_uncompiled_model_round_trip(tmp_path):
    m = pynn.Sequential([pynn.Input((2, 3)), L.Flatten(), L.Dense(4), L.Softmax()])
    m.save(str(tmp_path / "m.pynn"))
    back = load_model(str(tmp_path / "m.pynn"))
    assert not back.compiled and _same(m, back) and back.input_shape == (None, 2, 3)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop", "nadam", "adagrad", "adamax",
                                       "adamw", "adadelta",
                                       pynn.optimizers.SGD(0.05, momentum=0.9, nesterov=True)])
def test_training_resumes_exactly(tmp_path, optimizer):
    x, y = _data()
    opt = (lambda: pynn.optimizers.deserialize(pynn.optimizers.serialize(optimizer))) \
        if not isinstance(optimizer, str) else (lambda: optimizer)
    straight = _model(opt())
    straight.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    first = _model(opt())
    first.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    first.save(tmp_path / "m.safetensors")
    resumed = load_model(tmp_path / "m.safetensors")
    resumed.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert _same(straight, resumed)
    # and the resumed run really trained (the test could fail)
    assert not _same(first, resumed)


def test_learning_rate_set_between_epochs_is_saved(tmp_path):
    m = _model()
    m.optimizer.learning_rate = 0.0125
    m.save(tmp_path / "m.safetensors")
    assert load_model(tmp_path / "m.safetensors").optimizer.learning_rate == pytest.approx(0.0125)


def test_training_with_unseeded_dropout_resumes_exactly(tmp_path):
    x, y = _data()
    straight = _model(dropout_seed=None)
    straight.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    first = _model(dropout_seed=None)
    first.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    first.save(tmp_path / "m.safetensors")
    resumed = load_model(tmp_path / "m.safetensors")
    resumed.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert _same(straight, resumed)


def test_save_weights_and_load_weights(tmp_path):
    x, y = _data()
    a = _model()
    a.fit(x, y, epochs=1, verbose=0)
    a.save_weights(tmp_path / "w.safetensors")
    b = _model()
    assert not _same(a, b)
    b.load_weights(tmp_path / "w.safetensors")
    assert _same(a, b)
    # a full model file also provides weights
    a.save(tmp_path / "m.safetensors")
    c = _model()
    c.load_weights(tmp_path / "m.safetensors")
    assert _same(a, c)
    # a weights file is not a model
    with pytest.raises(ValueError, match="weights only"):
        load_model(tmp_path / "w.safetensors")


def test_load_weights_into_another_architecture_is_refused(tmp_path):
    _model().save_weights(tmp_path / "w.safetensors")
    other = _model(extra=False)
    before = other.get_weights()
    with pytest.raises(ValueError):
        other.load_weights(tmp_path / "w.safetensors")
    assert all(np.array_equal(p, q) for p, q in zip(before, other.get_weights()))


def test_files_open_with_the_safetensors_package(tmp_path):
    m = _model()
    m.save(tmp_path / "m.safetensors")
    tensors = safetensors_numpy.load_file(str(tmp_path / "m.safetensors"))
    weights = m.get_weights()
    for i, w in enumerate(weights):
        assert tensors[f"weights.{i}"].tobytes() == w.tobytes()
    assert any(k.startswith("optimizer.") for k in tensors)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), framework="numpy") as f:
        meta = f.metadata()
    assert meta["format"] == "pynn.model" and meta["format_version"] == "1"
    assert json.loads(meta["model_config"])["class_name"] == "Sequential"


def test_files_written_by_the_safetensors_package_load(tmp_path):
    # The reader accepts what the reference writer produces (its own header layout, padding
    # and ordering), both as raw tensors and as a complete pynn model.
    rng = np.random.default_rng(1)
    tensors = {"b": rng.normal(size=(3, 5)).astype(np.float32), "a": np.arange(7, dtype=np.int64),
               "c": rng.normal(size=(2,)), "empty": np.zeros((0, 4), np.float32),
               "u8": np.arange(5, dtype=np.uint8), "i32": np.arange(3, dtype=np.int32)}
    safetensors_numpy.save_file(tensors, str(tmp_path / "t.safetensors"), metadata={"k": "v"})
    got, meta = _safetensors.read(tmp_path / "t.safetensors")
    assert meta == {"k": "v"} and set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and np.array_equal(got[k], v)

    m = _model()
    m.save(tmp_path / "ours.safetensors")
    ours, ours_meta = _safetensors.read(tmp_path / "ours.safetensors")
    safetensors_numpy.save_file(ours, str(tmp_path / "theirs.safetensors"), metadata=ours_meta)
    back = load_model(tmp_path / "theirs.safetensors")
    assert _same(m, back) and back.get_compile_config() == m.get_compile_config()


def test_writer_pads_the_header_and_round_trips_every_dtype(tmp_path):
    tensors = {"f32": np.float32([1.5, -2]), "f64": np.float64([3.25]), "i64": np.int64([-5]),
               "i32": np.int32([7, 8, 9]), "u8": np.uint8([255]),
               "big_endian": np.array([1.0, 2.0], dtype=">f4"),
               "strided": np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]}
    _safetensors.write(tmp_path / "t.safetensors", tensors, {"a": "b"})
    raw = (tmp_path / "t.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0  # tensor data stays aligned
    got, meta = _safetensors.read(tmp_path / "t.safetensors")
    assert meta == {"a": "b"}
    for k, v in tensors.items():
        assert np.array_equal(got[k], v) and got[k].dtype == v.dtype.newbyteorder("=")
    with pytest.raises(TypeError, match="complex"):
        _safetensors.write(tmp_path / "c.safetensors", {"c": np.ones(2, complex)})
    with pytest.raises(TypeError, match="metadata"):
        _safetensors.write(tmp_path / "c.safetensors", {}, {"a": 1})


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    old = _model()
    old.save(path)
    before = path.read_bytes()
    new = _model()
    new.fit(*_data(), epochs=1, verbose=0)

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_safetensors.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        new.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _same(load_model(path), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temp file left


def test_an_interrupted_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    _model().save(path)
    before = path.read_bytes()
    real_replace = os.replace

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(_safetensors.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _model(extra=False).save(path)
    monkeypatch.setattr(_safetensors.os, "replace", real_replace)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_written_files_follow_the_umask_not_mkstemp(tmp_path):
    old = os.umask(0o027)
    try:
        _model().save(tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o640
    # an existing file keeps its permissions
    os.chmod(tmp_path / "m.safetensors", 0o600)
    _model().save(tmp_path / "m.safetensors")
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o600


def test_nan_weights_are_never_saved(tmp_path):
    path = tmp_path / "m.safetensors"
    m = _model()
    m.save(path)
    before = path.read_bytes()
    m.weights[2].value[:] = np.nan  # what a diverged run leaves behind
    with pytest.raises(ValueError, match="NaN"):
        m.save(path)
    with pytest.raises(ValueError, match="NaN"):
        m.save_weights(tmp_path / "w.safetensors")
    assert path.read_bytes() == before
    assert not (tmp_path / "w.safetensors").exists()


def test_nan_optimizer_state_is_never_saved(tmp_path):
    m = _model()
    m.build()
    slot = m._net.get_slot(0, 0)
    slot[0, 0] = np.inf
    m._net.set_slot(0, 0, slot)
    with pytest.raises(ValueError, match="optimizer state"):
        m.save(tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def _rewrite(src, dst, edit_meta=None, edit_tensors=None):
    tensors, meta = _safetensors.read(src)
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    _safetensors.write(dst, tensors, meta)
    return dst


def test_clear_errors_for_foreign_unknown_version_and_unknown_layer(tmp_path):
    safetensors_numpy.save_file({"w": np.ones(3, np.float32)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="not a pynn file"):
        load_model(tmp_path / "foreign.safetensors")
    with pytest.raises(ValueError, match="not a pynn file"):
        _model().load_weights(tmp_path / "foreign.safetensors")

    src = tmp_path / "m.safetensors"
    _model().save(src)
    newer = _rewrite(src, tmp_path / "v2.safetensors",
                     lambda m: m.__setitem__("format_version", str(saving.VERSION + 1)))
    with pytest.raises(ValueError, match="newer pynn"):
        load_model(newer)

    def conv(meta):
        cfg = json.loads(meta["model_config"])
        cfg["config"]["layers"][1]["class_name"] = "Conv3D"
        meta["model_config"] = json.dumps(cfg)
    with pytest.raises(ValueError, match="unknown layer type 'Conv3D'"):
        load_model(_rewrite(src, tmp_path / "conv.safetensors", conv))

    (tmp_path / "text.safetensors").write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ValueError, match="text.safetensors"):
        load_model(tmp_path / "text.safetensors")


def test_model_headers_are_bounded_before_parsing(tmp_path, monkeypatch):
    # A header within the safetensors limit (100 MB) but beyond what a model needs is refused
    # without being read or parsed.
    path = tmp_path / "big.safetensors"
    blob = b'{"__metadata__":{"format":"pynn.model","pad":"' + b"x" * (saving.MAX_HEADER) + b'"}}'
    path.write_bytes(struct.pack("<Q", len(blob)) + blob)
    monkeypatch.setattr(_safetensors, "parse_json", None)  # any parse attempt would fail loudly
    with pytest.raises(ValueError, match="byte limit"):
        load_model(path)


def test_huge_units_in_a_tampered_config_are_refused_before_building(tmp_path, monkeypatch):
    src = tmp_path / "m.safetensors"
    _model(extra=False).save(src)

    def huge(meta):
        cfg = json.loads(meta["model_config"])
        cfg["config"]["layers"][1]["config"]["units"] = 10**12
        meta["model_config"] = json.dumps(cfg)
    bad = _rewrite(src, tmp_path / "huge.safetensors", huge)

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine was asked to build the network")
    monkeypatch.setattr(pynn._core, "Network", no_engine)
    with pytest.raises(ValueError, match=r"weight 0 should have shape \(6, 1000000000000\)"):
        load_model(bad)


def test_missing_and_misshapen_tensors(tmp_path):
    src = tmp_path / "m.safetensors"
    _model().save(src)
    with pytest.raises(ValueError, match="weight 1"):
        load_model(_rewrite(src, tmp_path / "a.safetensors",
                            edit_tensors=lambda t: t.pop("weights.1")))
    with pytest.raises(ValueError, match="weight 0"):
        load_model(_rewrite(src, tmp_path / "b.safetensors",
                            edit_tensors=lambda t: t.__setitem__("weights.0", t["weights.0"].T.copy())))
    with pytest.raises(ValueError, match="optimizer slot"):
        load_model(_rewrite(src, tmp_path / "c.safetensors",
                            edit_tensors=lambda t: t.pop("optimizer.0.1")))
    with pytest.raises(ValueError, match="dtype float64"):
        load_model(_rewrite(src, tmp_path / "d.safetensors",
                            edit_tensors=lambda t: t.__setitem__("weights.0", t["weights.0"].astype(np.float64))))


def test_bad_paths(tmp_path):
    m = _model()
    with pytest.raises(ValueError, match="filepath"):
        m.save(tmp_path / "m.keras")
    with pytest.raises(FileExistsError):
        m.save(tmp_path / "m.safetensors")
        m.save(tmp_path / "m.safetensors", overwrite=False)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(TypeError, match="filepath"):
        load_model(None)
