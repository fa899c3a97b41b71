"""Cases of the loader fuzzing for Keras 3 files (run by test_fuzz_loader.py in child
processes): hand-crafted hostile `.keras` archives and `.weights.h5` files, truncations, and
random mutations of the raw bytes and of the members inside a re-built archive."""
from __future__ import annotations

import io
import json
import os
import random
import struct
import tempfile
import time
import zipfile

import rel_helpers


def _model():
    import pynn
    from pynn import layers as L

    pynn.utils.set_random_seed(5)
    inner = pynn.Sequential([L.InputLayer(shape=(4,)), L.Dense(3, activation="relu")],
                            name="inner")
    x = L.Input((2, 3), name="x")
    h = L.Conv1D(4, 2, padding="same")(x)
    h = L.BatchNormalization()(L.Flatten()(h))
    h = L.Dense(4)(h)
    out = L.Dense(2, activation="softmax")(L.Concatenate()([inner(h), L.PReLU()(h)]))
    return pynn.Model(x, out)


def valid_files(folder):
    """(bytes of a compiled, trained model's .keras file, of its .weights.h5, the model)."""
    import numpy as np

    m = _model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(8, 2, 3)).astype(np.float32)
    m.fit(x, np.arange(8) % 2, epochs=1, batch_size=4, verbose=0)
    m.save(os.path.join(folder, "valid.keras"))
    m.save_weights(os.path.join(folder, "valid.weights.h5"))
    with open(os.path.join(folder, "valid.keras"), "rb") as f:
        keras_blob = f.read()
    with open(os.path.join(folder, "valid.weights.h5"), "rb") as f:
        h5_blob = f.read()
    return keras_blob, h5_blob, m


def members(blob):
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {i.filename: zf.read(i.filename) for i in zf.infolist()}


def rezip(items, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in (items.items() if isinstance(items, dict) else items):
            zf.writestr(name, data)
    return buf.getvalue()


def _edit_h5(data, edit):
    import h5py

    buf = io.BytesIO(data)
    with h5py.File(buf, "a") as f:
        edit(f, h5py)
    return buf.getvalue()


def _shape_of(data, name):
    import h5py

    with h5py.File(io.BytesIO(data), "r") as f:
        return f[name].shape


def _replace(f, name, value, **kwargs):
    del f[name]
    f.create_dataset(name, data=value, **kwargs)


def h5_cases(h5):
    """name -> bytes of an HDF5 weights image that must be refused."""
    import numpy as np

    kernel = "layers/dense/vars/0"
    c = {}
    c["empty"] = b""
    c["HDF5 magic only"] = b"\x89HDF\r\n\x1a\n"
    c["HDF5 magic then zeros"] = b"\x89HDF\r\n\x1a\n" + b"\0" * 4096
    c["superblock garbage"] = h5[:8] + bytes(range(256)) * 4 + h5[1032:]
    c["kernel missing"] = _edit_h5(h5, lambda f, h: f.__delitem__(kernel))
    c["kernel wrong shape"] = _edit_h5(h5, lambda f, h: _replace(f, kernel, np.zeros((3, 3), "f4")))
    c["kernel scalar"] = _edit_h5(h5, lambda f, h: _replace(f, kernel, np.float32(1)))
    shape = _shape_of(h5, kernel)
    c["kernel int64"] = _edit_h5(h5, lambda f, h: _replace(f, kernel, np.zeros(shape, "i8")))
    c["kernel float16"] = _edit_h5(h5, lambda f, h: _replace(f, kernel, np.zeros(shape, "f2") + 1))
    c["kernel strings"] = _edit_h5(h5, lambda f, h: _replace(
        f, kernel, np.full(shape, "a", dtype=h.string_dtype())))
    c["kernel compound"] = _edit_h5(h5, lambda f, h: _replace(
        f, kernel, np.zeros(shape, dtype=[("a", "f4"), ("b", "f4")])))
    c["kernel NaN"] = _edit_h5(h5, lambda f, h: _replace(f, kernel, np.full(shape, np.nan, "f4")))
    c["kernel Inf, gzip-compressed"] = _edit_h5(h5, lambda f, h: _replace(
        f, kernel, np.full(shape, np.inf, "f4"), compression="gzip"))
    c["kernel huge declared shape"] = _edit_h5(h5, lambda f, h: (f.__delitem__(kernel), f.create_dataset(
        kernel, shape=(10**6, 10**6), dtype="f4", chunks=(1, 1024))))
    c["extra dataset in a layer"] = _edit_h5(h5, lambda f, h: f.create_dataset(
        "layers/dense/vars/9", data=np.zeros(3, "f4")))
    c["member name not UTF-8"] = _edit_h5(h5, lambda f, h: f["layers/dense/vars"].create_dataset(
        b"0\x80", data=np.zeros(3, "f4")))
    c["vars a dataset"] = _edit_h5(h5, lambda f, h: (f.__delitem__("layers/dense/vars"),
                                                     f.create_dataset("layers/dense/vars", data=[1.0])))
    c["soft link"] = _edit_h5(h5, lambda f, h: (f.__delitem__(kernel),
                                                f.__setitem__(kernel, h.SoftLink("/layers/dense_1/vars/0"))))
    c["dangling soft link"] = _edit_h5(h5, lambda f, h: (f.__delitem__(kernel),
                                                         f.__setitem__(kernel, h.SoftLink("/nowhere"))))
    c["external link"] = _edit_h5(h5, lambda f, h: (f.__delitem__(kernel),
                                                    f.__setitem__(kernel, h.ExternalLink("/etc/passwd", "/x"))))
    c["external storage"] = _edit_h5(h5, lambda f, h: (f.__delitem__(kernel), f.create_dataset(
        kernel, (12, 4), "f4", external=[("/etc/hostname", 0, 192)])))
    c["group link to the root"] = _edit_h5(h5, lambda f, h: (f.__delitem__("layers/dense"),
                                                             f.__setitem__("layers/dense", h.SoftLink("/"))))
    return c


def keras_cases(blob, h5_crafted):
    """name -> bytes of a .keras file that must be refused."""
    m = members(blob)
    cfg = json.loads(m["config.json"])

    def with_config(edit):
        c2 = json.loads(json.dumps(cfg))
        edit(c2)
        return rezip({**m, "config.json": json.dumps(c2).encode()})

    def layer(c2, cls):
        return next(e for e in c2["config"]["layers"] if e["class_name"] == cls)["config"]

    c = {}
    c["empty file"] = b""
    c["zip magic only"] = b"PK\x03\x04"
    c["empty archive"] = rezip({})
    for name in ("config.json", "metadata.json", "model.weights.h5"):
        c[f"no {name}"] = rezip({k: v for k, v in m.items() if k != name})
    for name in ("/abs.json", "../up.json", "a/../../up", "C:/x", "assets/evil.py", "x\x00y",
                 "model.weights.h5/x", "extra.json"):
        c[f"member {name!r}"] = rezip({**m, name: b"{}"})
    c["member twice"] = rezip(list(m.items()) + [("config.json", m["config.json"])])
    c["zip bomb config"] = rezip({**m, "config.json": b" " * (20 * 2**20) + m["config.json"]},
                                 zipfile.ZIP_DEFLATED)
    c["zip bomb weights"] = rezip({**m, "model.weights.h5": m["model.weights.h5"] + b"\0" * (2**25)},
                                  zipfile.ZIP_DEFLATED)
    c["bzip2 member"] = rezip(m, zipfile.ZIP_BZIP2)
    raw = bytearray(rezip(m))
    cd = raw.rfind(b"PK\x01\x02")
    c["central directory lies about size"] = bytes(raw[:cd + 24] + struct.pack("<I", 2**31)
                                                   + raw[cd + 28:])
    c["encrypted flag"] = bytes(raw[:6] + b"\x01" + raw[7:cd + 8] + b"\x01" + raw[cd + 9:])
    c["metadata not JSON"] = rezip({**m, "metadata.json": b"{nope"})
    c["metadata keras 2"] = rezip({**m, "metadata.json": b'{"keras_version": "2.15.0"}'})
    c["metadata a list"] = rezip({**m, "metadata.json": b"[]"})
    c["config not JSON"] = rezip({**m, "config.json": b"\xff\xfe"})
    c["config deeply nested"] = rezip({**m, "config.json": b"[" * 100000 + b"]" * 100000})
    c["config NaN"] = rezip({**m, "config.json": b'{"class_name": NaN}'})
    c["config class Evil"] = with_config(lambda c2: c2.__setitem__("class_name", "Evil"))
    c["Lambda layer"] = with_config(lambda c2: c2["config"]["layers"].insert(1, {
        "module": "keras.layers", "class_name": "Lambda", "config": {"name": "l", "function": {
            "class_name": "__lambda__", "config": {"code": "YWJj"}}}}))
    for cls in ("os.system", "builtins.eval", "TFSMLayer", "", None):
        c[f"layer class {cls!r}"] = with_config(
            lambda c2, cls=cls: c2["config"]["layers"][1].__setitem__("class_name", cls))
    c["registered name unknown"] = with_config(lambda c2: c2["config"]["layers"][1].update(
        {"class_name": "Evil", "registered_name": "evil>Evil", "module": "os"}))
    c["Dense units 10**12"] = with_config(lambda c2: layer(c2, "Dense").__setitem__("units", 10**12))
    c["Dense units -1"] = with_config(lambda c2: layer(c2, "Dense").__setitem__("units", -1))
    c["Dense constraint unknown"] = with_config(lambda c2: layer(c2, "Dense").__setitem__(
        "kernel_constraint", {"class_name": "Evil", "config": {}}))
    c["Dense dtype float64"] = with_config(lambda c2: layer(c2, "Dense").__setitem__("dtype", "float64"))
    c["input batch_shape huge"] = with_config(lambda c2: c2["config"]["layers"][0]["config"].__setitem__(
        "batch_shape", [None, 10**6, 10**6]))
    c["input batch_shape a string"] = with_config(lambda c2: c2["config"]["layers"][0]["config"].__setitem__(
        "batch_shape", "x"))
    c["sparse input"] = with_config(lambda c2: c2["config"]["layers"][0]["config"].__setitem__("sparse", True))
    nest = {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": []}}
    deep = nest
    for _ in range(200):
        deep = {"module": "keras", "class_name": "Sequential",
                "config": {"name": "s", "layers": [deep]}}
    c["models nested 200 deep"] = rezip({**m, "config.json": json.dumps(deep).encode()})
    c["layers not a list"] = with_config(lambda c2: c2["config"].__setitem__("layers", {}))
    c["inbound node to nowhere"] = with_config(lambda c2: c2["config"]["layers"][1]["inbound_nodes"][0][
        "args"][0]["config"].__setitem__("keras_history", ["nowhere", 0, 0]))
    c["optimizer unknown"] = with_config(lambda c2: c2["compile_config"]["optimizer"].__setitem__(
        "class_name", "Evil"))
    c["optimizer schedule"] = with_config(lambda c2: c2["compile_config"]["optimizer"]["config"].__setitem__(
        "learning_rate", {"class_name": "ExponentialDecay", "config": {}}))
    c["loss unknown"] = with_config(lambda c2: c2["compile_config"].__setitem__("loss", "os.system"))
    for name, data in h5_crafted.items():
        c[f"weights: {name}"] = rezip({**m, "model.weights.h5": data})

    def opt(f, h):
        del f["optimizer/vars/0"]
        f.create_dataset("optimizer/vars/0", data=-5)

    c["optimizer iterations -5"] = rezip({**m, "model.weights.h5": _edit_h5(m["model.weights.h5"], opt)})

    def opt_shape(f, h):
        import numpy as np

        del f["optimizer/vars/2"]
        f.create_dataset("optimizer/vars/2", data=np.zeros((7, 7), "f4"))

    c["optimizer slot wrong shape"] = rezip({**m, "model.weights.h5": _edit_h5(m["model.weights.h5"],
                                                                                opt_shape)})
    return c


def _ref(layer, shape, dtype="float32"):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": shape, "dtype": dtype, "keras_history": [layer, 0, 0]}}


def ops_file(folder):
    """Bytes of a .keras file whose functional config holds Keras's op entries, as Keras 3
    writes them for a masked model: NotEqual (the Embedding's mask, handed to the LSTM as its
    `mask` keyword) and Square (data: between the LSTM and the Dense). It loads."""
    import pynn
    from pynn import layers as L

    pynn.utils.set_random_seed(6)
    x = L.Input((6,), name="ids")
    h = L.LSTM(4, name="lstm")(L.Embedding(9, 3, mask_zero=True, name="emb")(x))
    pynn.Model(x, L.Dense(2, name="dense")(h)).save(os.path.join(folder, "ops.keras"))
    with open(os.path.join(folder, "ops.keras"), "rb") as f:
        m = members(f.read())
    cfg = json.loads(m["config.json"])
    entries = cfg["config"]["layers"]
    names = [e["name"] for e in entries]
    entries[names.index("lstm")]["inbound_nodes"][0]["kwargs"]["mask"] = _ref(
        "not_equal", [None, 6], "bool")
    entries[names.index("dense")]["inbound_nodes"][0]["args"][0] = _ref("square", [None, 4])
    entries.insert(names.index("lstm"), {
        "module": "keras.src.ops.numpy", "class_name": "NotEqual",
        "config": {"name": "not_equal"}, "registered_name": "NotEqual", "name": "not_equal",
        "inbound_nodes": [{"args": [_ref("ids", [None, 6], "int32"), 0], "kwargs": {}}]})
    entries.insert(names.index("dense") + 1, {
        "module": "keras.src.ops.numpy", "class_name": "Square", "config": {"name": "square"},
        "registered_name": "Square", "name": "square",
        "inbound_nodes": [{"args": [_ref("lstm", [None, 4])], "kwargs": {}}]})
    return rezip({**m, "config.json": json.dumps(cfg).encode()})


def ops_cases(blob):
    """name -> bytes of a .keras file with hostile op entries (from `ops_file`'s)."""
    m = members(blob)
    cfg = json.loads(m["config.json"])

    def edit(change):
        c2 = json.loads(json.dumps(cfg))
        entries = {e["name"]: e for e in c2["config"]["layers"]}
        change(entries)
        return rezip({**m, "config.json": json.dumps(c2).encode()})

    def node(entries, name="not_equal"):
        return entries[name]["inbound_nodes"][0]

    c = {}
    for cls in ("Eval", "PyFunc", "Map", "Cond", "Lambda", "", "__class__", None, 7):
        c[f"op class {cls!r}"] = edit(lambda e, cls=cls: e["not_equal"].__setitem__(
            "class_name", cls))
    c["mask-combining op with a string argument"] = edit(lambda e: (
        e["not_equal"].__setitem__("class_name", "LogicalOr"),
        node(e)["args"].__setitem__(1, "x")))
    c["mask-combining op with a setting"] = edit(lambda e: (
        e["not_equal"].__setitem__("class_name", "ZerosLike"),
        e["not_equal"]["config"].__setitem__("shape", [3])))
    c["op keyword arguments"] = edit(lambda e: node(e)["kwargs"].__setitem__("x", 1))
    c["op argument a string"] = edit(lambda e: node(e)["args"].__setitem__(1, "rm -rf /"))
    c["op argument a bool"] = edit(lambda e: node(e)["args"].__setitem__(1, True))
    c["op argument a dict"] = edit(lambda e: node(e)["args"].__setitem__(1, {"a": 1}))
    c["op argument nested junk"] = edit(lambda e: node(e)["args"].__setitem__(1, [[1, "x"]]))
    c["op no tensor"] = edit(lambda e: node(e).__setitem__("args", [1, 2]))
    c["op args not a list"] = edit(lambda e: node(e).__setitem__("args", "x"))
    c["op two calls"] = edit(lambda e: e["not_equal"]["inbound_nodes"].append(node(e)))
    c["op no calls"] = edit(lambda e: e["not_equal"].__setitem__("inbound_nodes", []))
    c["op extra config key"] = edit(lambda e: e["not_equal"]["config"].__setitem__(
        "initial", 5))
    c["op ref unknown tensor"] = edit(lambda e: node(e)["args"][0]["config"].__setitem__(
        "keras_history", ["nowhere", 0, 0]))
    c["op ref malformed"] = edit(lambda e: node(e)["args"][0]["config"].__setitem__(
        "keras_history", "ids"))
    for shape in ([None, -3], [None, 10**12, 10**12], [None, 5], [None, "6"], [], "x"):
        # (an op that only computed a mask is left out: a shape it records that is merely
        # not the model's cannot matter there)
        for op in ("not_equal", "square") if shape != [None, 5] else ("square",):
            c[f"{op} ref shape {shape!r}"] = edit(lambda e, s=shape, op=op: node(e, op)[
                "args"][0]["config"].__setitem__("shape", s))
    c["Any on a float tensor"] = edit(lambda e: e["square"].update(
        {"class_name": "Any", "config": {"name": "square", "axis": -1, "keepdims": False}}))
    c["Sum over the batch axis"] = edit(lambda e: e["square"].update(
        {"class_name": "Sum", "config": {"name": "square", "axis": 0}}))
    c["Sum axis 99"] = edit(lambda e: e["square"].update(
        {"class_name": "Sum", "config": {"name": "square", "axis": 99}}))
    c["Reshape to nonsense"] = edit(lambda e: e["square"].update(
        {"class_name": "Reshape", "config": {"name": "square", "newshape": [-1, 7, -1]}}))
    c["Reshape newshape a string"] = edit(lambda e: e["square"].update(
        {"class_name": "Reshape", "config": {"name": "square", "newshape": "abc"}}))
    c["Concatenate of junk"] = edit(lambda e: node(e, "square").__setitem__(
        "args", [[node(e, "square")["args"][0], "x"]]))
    c["mask passed by hand"] = edit(lambda e: node(e, "lstm")["kwargs"]["mask"][
        "config"].__setitem__("keras_history", ["emb", 0, 0]))
    c["mask a string"] = edit(lambda e: node(e, "lstm")["kwargs"].__setitem__("mask", "m"))
    c["mask names nothing"] = edit(lambda e: node(e, "lstm")["kwargs"]["mask"][
        "config"].__setitem__("keras_history", ["nowhere", 0, 0]))
    return c


def _mutate_bytes(data, rng):
    data = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        pos = rng.randrange(len(data)) if data else 0
        op = rng.random()
        if op < 0.55 and pos < len(data):
            data[pos] ^= 1 << rng.randrange(8)
        elif op < 0.7 and pos < len(data):
            data[pos] = rng.choice(b'{}[]",:0123456789-eE.\x00\xff')
        elif op < 0.85:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
        else:
            del data[pos:pos + rng.randrange(1, 9)]
    return bytes(data)


def _mutate_keras(blob, rng):
    """A raw mutation of the archive (mostly caught by the zip layer), or a mutation of one
    member in a re-built, valid archive (reaching the JSON and HDF5 readers)."""
    if rng.random() < 0.2:
        return _mutate_bytes(blob, rng)
    m = members(blob)
    name = rng.choice(["config.json", "model.weights.h5", "model.weights.h5", "metadata.json"])
    m[name] = _mutate_bytes(m[name], rng)
    return rezip(m)


def _truncations(blob, step):
    rng = random.Random(7)
    cuts = set(range(0, min(64, len(blob)))) | set(range(0, len(blob), step))
    cuts |= set(rng.sample(range(len(blob)), min(60, len(blob))))
    return sorted(n for n in cuts if n < len(blob))


def child(names, load_outcome, fuzz_seconds):
    folder = tempfile.mkdtemp(prefix="pynn-fuzz-keras-")
    keras_blob, h5_blob, model = valid_files(folder)
    target = {"keras": os.path.join(folder, "case.keras"),
              "h5": os.path.join(folder, "case.weights.h5")}

    def outcome(kind, data):
        with open(target[kind], "wb") as f:
            f.write(data)
        return load_outcome(target[kind], model if kind == "h5" else None)

    h5_crafted = h5_cases(h5_blob)
    blobs = {"keras": keras_blob, "h5": h5_blob, "ops": ops_file(folder)}
    target["ops"] = target["keras"]
    for name in names:
        kind, what = name.split(" ", 1)
        if what == "valid":
            out, exc_type, msg = outcome(kind, blobs[kind])
            rel_helpers.report(name, outcome=out, type=exc_type, msg=msg)
        elif what == "crafted":
            cases = {"keras": lambda: keras_cases(keras_blob, h5_crafted),
                     "ops": lambda: ops_cases(blobs["ops"]), "h5": lambda: h5_crafted}[kind]()
            bad = []
            for case, data in cases.items():
                out, exc_type, msg = outcome(kind, data)
                if out != "ValueError":
                    bad.append((case, out, exc_type, msg))
            rel_helpers.report(name, cases=len(cases), bad=bad)
        elif what == "truncated":
            counts, bad = {}, []
            for n in _truncations(blobs[kind], max(1, len(blobs[kind]) // 150)):
                out, exc_type, msg = outcome(kind, blobs[kind][:n])
                counts[out] = counts.get(out, 0) + 1
                if out != "ValueError":
                    bad.append((n, out, exc_type, msg))
            rel_helpers.report(name, counts=counts, bad=bad[:10], tried=sum(counts.values()))
        elif what == "mutated":
            rng, counts, bad, n = random.Random(99), {}, [], 0
            deadline = time.monotonic() + fuzz_seconds / 4
            while time.monotonic() < deadline:
                data = (_mutate_bytes(h5_blob, rng) if kind == "h5"
                        else _mutate_keras(blobs[kind], rng))
                out, exc_type, msg = outcome(kind, data)
                counts[out] = counts.get(out, 0) + 1
                n += 1
                if out not in ("ok", "ValueError"):
                    bad.append((n, out, exc_type, msg))
            rel_helpers.report(name, counts=counts, bad=bad[:10], cases=n,
                               peak_mib=rel_helpers.peak_rss_mib())
