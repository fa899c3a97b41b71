"""Model files: save/load round trips, exact resumption of training, weights-only files,
interoperability with the `safetensors` package, atomic writes, and clear errors."""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import safetensors.numpy as safetensors_numpy  # a dependency of pynn: never skipped

import pynn
from pynn import layers as L
from pynn.models import _safetensors, load_model, saving


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
    m.fit(*_data(), epochs=1, batch_size=16, verbose=0)
    m.save(tmp_path / "m.safetensors")
    tensors = safetensors_numpy.load_file(str(tmp_path / "m.safetensors"))
    paths = m.get_weight_paths()
    weights = [p for p in paths]
    for name, w in paths.items():
        assert tensors[name].tobytes() == w.value.tobytes()
    dense = m.layers[0].name
    assert f"{dense}/kernel" in tensors and f"{dense}/bias" in tensors
    # Adam keeps two slots per trainable weight, none for the moving statistics
    trainable = [p for p, w in paths.items() if w._trainable]
    slots = sorted(k for k in tensors if k.startswith("optimizer/"))
    assert slots == sorted(f"optimizer/{p}/{k}" for p in trainable for k in (0, 1))
    assert set(tensors) == set(weights) | set(slots)
    first = m.optimizer.get_state()["slots"][f"{dense}/kernel"]
    assert tensors[f"optimizer/{dense}/kernel/1"].tobytes() == first[1].tobytes()
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), framework="numpy") as f:
        meta = f.metadata()
    assert meta["format"] == "pynn.model" and meta["format_version"] == "2"
    assert json.loads(meta["model_config"])["class_name"] == "Sequential"
    assert json.loads(meta["weights"]) == weights


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
    monkeypatch.setattr(pynn._core, "Graph", no_engine)
    with pytest.raises(ValueError, match=r"weight '\w+/kernel' should have shape "
                                         r"\(6, 1000000000000\) by the model config, the "
                                         r"file holds \(6, 8\)"):
        load_model(bad)


def test_missing_and_misshapen_tensors(tmp_path):
    src = tmp_path / "m.safetensors"
    m = _model()
    m.save(src)
    kernel, bias = (f"{m.layers[0].name}/{w}" for w in ("kernel", "bias"))
    bn = m.layers[1].name
    with pytest.raises(ValueError, match=f"weight '{bias}' is missing"):
        load_model(_rewrite(src, tmp_path / "a.safetensors", edit_tensors=lambda t: t.pop(bias)))
    with pytest.raises(ValueError, match=rf"weight '{kernel}' should have shape \(6, 8\) by the "
                                         rf"model config, the file holds \(8, 6\)"):
        load_model(_rewrite(src, tmp_path / "b.safetensors",
                            edit_tensors=lambda t: t.__setitem__(kernel, t[kernel].T.copy())))
    with pytest.raises(ValueError, match=f"optimizer slot 1 of weight '{kernel}' is missing"):
        load_model(_rewrite(src, tmp_path / "c.safetensors",
                            edit_tensors=lambda t: t.pop(f"optimizer/{kernel}/1")))
    with pytest.raises(ValueError, match=f"weight '{kernel}' has dtype float64"):
        load_model(_rewrite(src, tmp_path / "d.safetensors",
                            edit_tensors=lambda t: t.__setitem__(kernel, t[kernel].astype(np.float64))))
    with pytest.raises(ValueError, match="tensor 'extra/kernel' is neither a listed weight"):
        load_model(_rewrite(src, tmp_path / "e.safetensors",
                            edit_tensors=lambda t: t.__setitem__("extra/kernel", t[kernel])))

    def list_extra(meta):
        meta["weights"] = json.dumps(json.loads(meta["weights"]) + ["extra/kernel"])
    with pytest.raises(ValueError, match=r"weight 'extra/kernel' is not a weight of the model"):
        load_model(_rewrite(src, tmp_path / "f.safetensors", list_extra,
                            lambda t: t.__setitem__("extra/kernel", t[kernel])))
    # a misshapen weight the config check does not see (moving statistics are not in the
    # optimizer state): both shapes are named
    with pytest.raises(ValueError, match=rf"weight '{bn}/moving_mean' should have shape \(8,\) "
                                         rf"by the model config, the file holds \(9,\)"):
        load_model(_rewrite(src, tmp_path / "g.safetensors", edit_tensors=lambda t: t.__setitem__(
            f"{bn}/moving_mean", np.zeros(9, np.float32))))
    with pytest.raises(ValueError, match=rf"slot 0 of weight '{kernel}': expected shape "
                                         rf"\(6, 8\), got \(48,\)"):
        load_model(_rewrite(src, tmp_path / "h.safetensors", edit_tensors=lambda t: t.__setitem__(
            f"optimizer/{kernel}/0", t[f"optimizer/{kernel}/0"].reshape(-1))))


def test_bad_paths(tmp_path):
    m = _model()
    with pytest.raises(ValueError, match="filepath"):
        m.save(tmp_path / "m.h5")   # (.keras is Keras 3's archive: tests/test_keras_format.py)
    with pytest.raises(FileExistsError):
        m.save(tmp_path / "m.safetensors")
        m.save(tmp_path / "m.safetensors", overwrite=False)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(TypeError, match="filepath"):
        load_model(None)


# --- weights by name ---------------------------------------------------------------------------
def test_weight_paths_are_unique_path_like_names():
    enc = pynn.Sequential([pynn.Input((4,)), L.Dense(3, name="dense"),
                           L.BatchNormalization(name="batch_normalization")], name="encoder")
    inp = pynn.Input((4,))
    shared = L.Dense(4, name="dense_1")
    h = shared(shared(inp))                 # a layer called twice
    h = L.Add(name="add")([enc(h), enc(h)])  # a nested model called twice
    model = pynn.Model(inp, L.Dense(2, name="head")(h), name="outer")
    paths = model.get_weight_paths()
    assert list(paths) == [
        "dense_1/kernel", "dense_1/bias", "encoder/dense/kernel", "encoder/dense/bias",
        "encoder/batch_normalization/gamma", "encoder/batch_normalization/beta",
        "encoder/batch_normalization/moving_mean", "encoder/batch_normalization/moving_variance",
        "head/kernel", "head/bias"]
    # the same objects, in the order of model.weights
    assert [id(w) for w in paths.values()] == [id(w) for w in model.weights]
    # two layers given one name still get distinct names, the same ones after a round trip
    twins = pynn.Sequential([pynn.Input((3,)), L.Dense(2, name="twin"), L.Dense(2, name="twin")])
    assert list(twins.get_weight_paths()) == ["twin/kernel", "twin/bias", "twin_1/kernel",
                                              "twin_1/bias"]


def test_nested_and_duplicate_names_round_trip(tmp_path):
    pynn.utils.set_random_seed(8)
    twins = pynn.Sequential([pynn.Input((3,)), L.Dense(2, name="twin"), L.Dense(2, name="twin")])
    twins.save(tmp_path / "t.safetensors")
    assert _same(twins, load_model(tmp_path / "t.safetensors"))
    enc = pynn.Sequential([pynn.Input((4,)), L.Dense(3)], name="encoder")
    inp = pynn.Input((4,))
    model = pynn.Model(inp, L.Dense(2)(enc(inp)))
    model.save(tmp_path / "n.safetensors")
    tensors, _ = _safetensors.read(tmp_path / "n.safetensors")
    inner = enc.layers[0].name
    assert f"encoder/{inner}/kernel" in tensors
    assert _same(model, load_model(tmp_path / "n.safetensors"))


def test_load_weights_matches_by_name_not_position(tmp_path):
    # Two models whose layers come in the opposite order: positions would swap the
    # equally-shaped weights of "left" and "right"; names do not.
    def build(flip):
        inp = pynn.Input((4,))
        left, right = L.Dense(3, name="left"), L.Dense(3, name="right")
        a, b = left(inp), right(inp)
        return pynn.Model(inp, L.Concatenate(name="cat")([b, a] if flip else [a, b]))

    pynn.utils.set_random_seed(1)
    src = build(False)
    src.save_weights(tmp_path / "w.safetensors")
    dst = build(True)
    assert dst.weights[0].path == "right/kernel"   # order differs from src
    assert not np.array_equal(dst.get_layer("left").kernel.value,
                              src.get_layer("left").kernel.value)
    dst.load_weights(tmp_path / "w.safetensors")
    for name in ("left", "right"):
        for attr in ("kernel", "bias"):
            assert getattr(dst.get_layer(name), attr).value.tobytes() == \
                getattr(src.get_layer(name), attr).value.tobytes()


def _functional(units=3, name="head"):
    inp = pynn.Input((4,))
    h = L.BatchNormalization(name="bn")(L.Dense(units, name="hidden")(inp))
    return pynn.Model(inp, L.Dense(2, name=name)(h) if name else h)


def test_load_weights_names_the_missing_extra_or_misshapen_weight(tmp_path):
    pynn.utils.set_random_seed(2)
    src = _functional()
    path = tmp_path / "w.safetensors"
    src.save_weights(path)

    def drop(name):
        def edit_meta(meta):
            meta["weights"] = json.dumps([n for n in json.loads(meta["weights"]) if n != name])
        return edit_meta, lambda t: t.pop(name)

    def refused(model, file, match):
        before = model.get_weights()
        with pytest.raises(ValueError, match=match):
            model.load_weights(file)
        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))

    refused(_functional(), _rewrite(path, tmp_path / "a.safetensors", *drop("bn/beta")),
            f"{tmp_path / 'a.safetensors'}: weight 'bn/beta' of the model is missing")
    refused(_functional(name="other"), path, "weight 'other/kernel' of the model is missing")
    # a file with weights the model does not have
    refused(_functional(name=None), path,
            r"weight 'head/kernel' is not a weight of the model \(and 1 more\)")
    # misshapen: both shapes are named
    refused(_functional(units=5), path,
            r"weight 'hidden/kernel' has shape \(4, 3\), the model expects \(4, 5\)")
    refused(_functional(), _rewrite(path, tmp_path / "c.safetensors", edit_tensors=lambda t: t.__setitem__(
        "bn/gamma", t["bn/gamma"].astype(np.float64))), "weight 'bn/gamma' has dtype float64")
    # and a well-formed file loads (the checks above could pass)
    ok = _functional()
    ok.load_weights(path)
    assert _same(ok, src)


def test_load_model_names_a_misshapen_weight_of_a_functional_model(tmp_path):
    src = _functional()
    src.save(tmp_path / "m.safetensors")
    bad = _rewrite(tmp_path / "m.safetensors", tmp_path / "bad.safetensors",
                   edit_tensors=lambda t: t.__setitem__("bn/moving_mean", np.zeros(9, np.float32)))
    with pytest.raises(ValueError, match=r"bad.safetensors: weight 'bn/moving_mean' has shape "
                                         r"\(9,\), the model expects \(3,\)"):
        load_model(bad)


# --- format version 1 --------------------------------------------------------------------------
def _as_version_1(model, src, dst):
    """Rewrites a version-2 file of `model` as pynn wrote files before weights had names:
    weights by position, slots by engine parameter id, Dropout seeds in the config."""
    from pynn.models.state import param_paths

    tensors, meta = _safetensors.read(src)
    out = {f"weights.{i}": tensors[p] for i, p in enumerate(model.get_weight_paths())}
    opt = json.loads(meta["optimizer_state"])
    if opt is not None:
        counts = {}
        for pid, name in enumerate(param_paths(model)):
            counts[str(pid)] = opt["slots"][name]
            for k in range(opt["slots"][name]):
                out[f"optimizer.{pid}.{k}"] = tensors[f"optimizer/{name}/{k}"]
        opt["slots"] = counts
    cfg = json.loads(meta["model_config"])
    for entry, layer in zip(cfg["config"]["layers"][1:], model.layers):
        if entry["class_name"] == "Dropout" and entry["config"]["seed"] is None:
            entry["config"]["seed"] = layer._built_seed
    _safetensors.write(dst, out, {"format": "pynn.model", "format_version": "1",
                                  "model_config": json.dumps(cfg),
                                  "compile_config": meta["compile_config"],
                                  "optimizer_state": json.dumps(opt)})
    return dst


def test_version_1_files_still_load_identically(tmp_path):
    x, y = _data()
    m = _model(dropout_seed=None)
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    m.save(tmp_path / "v2.safetensors")
    v1_path = _as_version_1(m, tmp_path / "v2.safetensors", tmp_path / "v1.safetensors")
    tensors, meta = _safetensors.read(v1_path)
    assert meta["format_version"] == "1" and "weights.0" in tensors and "optimizer.0.1" in tensors
    from_v1, from_v2 = load_model(v1_path), load_model(tmp_path / "v2.safetensors")
    assert _same(from_v1, m) and _same(from_v2, m)
    assert from_v1.get_compile_config() == m.get_compile_config()
    s1, s0 = from_v1.optimizer.get_state(), m.optimizer.get_state()
    assert s1["iterations"] == s0["iterations"] == 3
    assert s1["slots"].keys() == s0["slots"].keys()
    assert all(a.tobytes() == b.tobytes() for k in s0["slots"]
               for a, b in zip(s0["slots"][k], s1["slots"][k]))
    # training resumes identically from either file and from the original
    for model in (m, from_v1, from_v2):
        model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert _same(from_v1, m) and _same(from_v2, m)
    # a version-1 weights-only file
    w1 = tmp_path / "w1.safetensors"
    _safetensors.write(w1, {f"weights.{i}": w for i, w in enumerate(m.get_weights())},
                       {"format": "pynn.weights", "format_version": "1"})
    fresh = _model(dropout_seed=None)
    assert not _same(fresh, m)
    fresh.load_weights(w1)
    assert _same(fresh, m)
    # a version-1 file missing a tensor names it and the weight it stood for
    tensors.pop("weights.2")
    _safetensors.write(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(ValueError, match=rf"tensor 'weights.2' \(weight "
                                         rf"'{m.layers[1].name}/gamma' of the model\) is missing"):
        load_model(tmp_path / "bad.safetensors")


# --- loading draws nothing ---------------------------------------------------------------------
def test_loading_runs_no_initializer_and_leaves_the_random_stream(tmp_path, monkeypatch):
    from pynn import _random

    m = _model(dropout_seed=None)
    m.fit(*_data(), epochs=1, verbose=0)
    m.save(tmp_path / "m.safetensors")
    m.save_weights(tmp_path / "w.safetensors")

    def draw():
        layer = L.Dense(5)
        layer.build((None, 4))
        return layer.kernel.numpy(), _random.next_seed()

    pynn.utils.set_random_seed(123)
    expected = draw()

    def no_initializer(*args, **kwargs):
        raise AssertionError("an initializer ran while loading")

    pynn.utils.set_random_seed(123)
    with monkeypatch.context() as mp:
        mp.setattr(pynn.initializers.Initializer, "__call__", no_initializer)
        back = load_model(tmp_path / "m.safetensors")
        back.load_weights(tmp_path / "w.safetensors")
    got = draw()
    assert got[0].tobytes() == expected[0].tobytes() and got[1] == expected[1]
    # the loaded weights are the saved ones, bit for bit
    assert _same(back, m)
    # (a model built normally does draw: the comparison above could fail)
    pynn.utils.set_random_seed(123)
    _model(dropout_seed=None)
    assert draw()[1] != expected[1]


def test_rrelu_slopes_resume_exactly(tmp_path):
    x, y = _data()

    def make():
        pynn.utils.set_random_seed(4)
        m = pynn.Sequential([pynn.Input((6,)), L.Dense(8, activation="rrelu"),
                             L.Activation("rrelu"), L.Dense(3, activation="softmax")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return m

    straight = make()
    straight.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    first = make()
    first.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    first.save(tmp_path / "m.safetensors")
    resumed = load_model(tmp_path / "m.safetensors")
    assert resumed.layers[0]._seed == first.layers[0]._seed
    resumed.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert _same(straight, resumed)


def test_a_model_built_in_another_thread_is_not_charged_to_a_loading_file(tmp_path):
    # The weight budget of a load bounds that load only: building a large model in another
    # thread while it is active must not fail.
    import threading

    from pynn.layers.layer import weight_budget

    errors = []

    def build_other():
        try:
            pynn.Sequential([pynn.Input((300,)), L.Dense(300)]).build()
        except Exception as exc:   # noqa: BLE001 (reported below)
            errors.append(exc)

    with weight_budget(10, "file.safetensors"):
        t = threading.Thread(target=build_other)
        t.start()
        t.join(timeout=60)
        with pytest.raises(ValueError):
            L.Dense(300).build((None, 300))   # this thread is bounded
    assert not errors
