"""RandomFlip, RandomTranslation, RandomRotation, RandomZoom: the image_augment op against its
NumPy twin (pynn/reference/augment.py, which reproduces the engine's draws), the twin's
backward against finite differences, the geometry against Keras's own transform with fixed
parameters, the random parameters against Keras's ranges, and the layers in models (training
only, seeded, bitwise on 1 and 2 threads, configs, files, ONNX)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from keras_helpers import case_rng, to_numpy
from test_ref_dense import numeric_grad

import pynn
from pynn import layers as L
from pynn.models.graph_spec import GraphSpec
from pynn.reference import augment as ref
from pynn.reference import graph as ref_graph

FILLS = ("reflect", "wrap", "constant", "nearest")
INTERPS = ("bilinear", "nearest")
# float32 output of a double-precision sum of at most four products of O(1) values
TOL = 2e-6


def _layers(fill_mode="reflect", interpolation="bilinear", seed=1):
    kw = {"fill_mode": fill_mode, "interpolation": interpolation, "seed": seed,
          "fill_value": 0.75}
    return [L.RandomTranslation((-0.4, 0.6), 0.5, **kw), L.RandomRotation(0.5, **kw),
            L.RandomZoom((-0.6, 0.7), **kw), L.RandomZoom(0.5, (-0.3, 0.9), **kw)]


def _graph(layer, shape, force=True):
    """A one-node graph of the layer (force: active in predict and input_gradient too)."""
    layer._force_training = force
    try:
        spec = GraphSpec()
        t = spec.add_input(shape)
        spec.outputs = layer._emit(spec, [t])
    finally:
        layer._force_training = False
    return spec, spec.to_core()


def _twin(spec, x, u):
    """The twin's output and input gradient for upstream gradient 'seed'."""
    return ref_graph.forward(spec, [x], training=True, dropout_masks={0: u})[0][0]


def _check_against_twin(layer, x, rng):
    spec, g = _graph(layer, x.shape[1:])
    a = spec.nodes[0].attrs
    n = x.shape[0]
    got = np.empty_like(x)
    g.predict([x.reshape(n, int(np.prod(x.shape[1:])))], [got])
    u = ref.draws(a["seed"], 0, n)        # predict: step 0, node 0 -> stream 0
    want = _twin(spec, x.astype(np.float64), u)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=f"{layer.name} {a}")
    # backward: the transposed sampling (input_gradient runs the same forward draws)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = g.input_gradient([x], [dy])[0]
    h, w = (x.shape[2], x.shape[3]) if a["channels_first"] else (x.shape[1], x.shape[2])
    t = ref.transforms(a, u, h, w)
    want_dx = ref.resample_backward(dy.astype(np.float64), t, a.get("fill_mode", "reflect"),
                                    a.get("interpolation", "bilinear"),
                                    bool(a["channels_first"]))
    # a sum of up to ~4 * (output pixels per input pixel) float32 products; zooming in by up to
    # 1/0.4 puts ~6 outputs on one input: 1e-5 covers float32 rounding of ~25 terms of O(1)
    np.testing.assert_allclose(dx, want_dx, rtol=0, atol=1e-5, err_msg=f"{layer.name} {a}")
    return got


@pytest.mark.parametrize("fill_mode", FILLS)
@pytest.mark.parametrize("interpolation", INTERPS)
def test_core_matches_twin(fill_mode, interpolation):
    rng = case_rng("twin", fill_mode, interpolation)
    shapes = [(3, 5, 7, 3), (2, 1, 1, 1), (1, 4, 9, 1), (0, 3, 3, 2), (4, 6, 6, 2)]
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        for layer in _layers(fill_mode, interpolation, seed=int(rng.integers(1000))):
            got = _check_against_twin(layer, x, rng)
            if shape[0] >= 3:   # a lone small image may come back unchanged (nearest)
                assert not np.array_equal(got, x), layer.name


def test_flip_and_channels_first_match_twin():
    rng = case_rng("flip")
    for shape in [(6, 4, 5, 3), (5, 1, 1, 2), (0, 2, 2, 1), (3, 7, 2, 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        for mode in ("horizontal", "vertical", "horizontal_and_vertical"):
            got = _check_against_twin(L.RandomFlip(mode, seed=3), x, rng)
            # a flip moves values, never changes them
            np.testing.assert_array_equal(np.sort(got.ravel()), np.sort(x.ravel()))
        for layer in _layers("reflect", "bilinear", seed=5) + [L.RandomFlip(seed=2)]:
            cf = type(layer).from_config({**layer.get_config(),
                                          "data_format": "channels_first"})
            xc = np.ascontiguousarray(np.moveaxis(x, -1, 1))
            _check_against_twin(cf, xc, rng)


def test_twin_backward_matches_finite_differences():
    rng = case_rng("fd")
    x = rng.standard_normal((1, 4, 5, 2))
    for fill_mode in FILLS:
        for kind, lo, hi in (("rotation", [0.1], [0.4]), ("zoom", [-0.5, 0.2], [-0.1, 0.6]),
                             ("translation", [-0.3, 0.1], [0.3, 0.5])):
            a = {"kind": kind, "lower": lo, "upper": hi}
            t = ref.transforms(a, rng.random((1, 2)), 4, 5)
            R = rng.standard_normal(x.shape)

            def f(t=t, R=R, fill_mode=fill_mode):
                return float((R * ref.resample(x, t, fill_mode, "bilinear", 0.3)).sum())

            # resample is linear in x, so central differences are exact up to rounding
            np.testing.assert_allclose(ref.resample_backward(R, t, fill_mode, "bilinear"),
                                       numeric_grad(f, x), rtol=1e-6, atol=1e-8)


def test_non_contiguous_input_and_eager_training_call():
    rng = case_rng("noncontig")
    base = rng.standard_normal((3, 6, 10, 4)).astype(np.float32)
    x = base[:, :, ::2, 1:]                        # strided, not C-contiguous
    assert not x.flags.c_contiguous
    a = L.RandomRotation(0.3, seed=9)
    b = L.RandomRotation(0.3, seed=9)
    first = a(x, training=True)
    np.testing.assert_array_equal(first, b(np.ascontiguousarray(x), training=True))
    np.testing.assert_array_equal(a(x), x)        # a plain call is the identity
    # every eager training call draws anew, reproducibly from the seed
    second = a(x, training=True)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, b(x, training=True))


# --- Keras: the same geometry for given parameters, and the same parameter ranges -------------
def _tie_mask(t, h, w, cf=False):
    """Pixels whose source coordinate lies within 1e-3 of a rounding tie (x.5): Keras computes
    coordinates in float32 (error ~1e-5 here), so "nearest" may round them either way."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    bad = np.zeros((t.shape[0], h, w), bool)
    for b in range(t.shape[0]):
        for c in ((t[b, 0] * j + t[b, 1] * i + t[b, 2]), (t[b, 3] * j + t[b, 4] * i + t[b, 5])):
            bad[b] |= np.abs(np.abs(c - np.floor(c)) - 0.5) < 1e-3
    return bad


def _pynn_affine(x, t, fill_mode, interpolation, fill_value):
    """The C++ op (kind "affine") on given transforms."""
    spec = GraphSpec()
    xi, ti = spec.add_input(x.shape[1:]), spec.add_input((8,))
    spec.outputs = spec.add_node("image_augment", [xi, ti], [x.shape[1:]], [],
                                 {"kind": "affine", "fill_mode": fill_mode,
                                  "interpolation": interpolation, "fill_value": fill_value})
    out = np.empty_like(x)
    spec.to_core().predict([x.reshape(len(x), -1), t.astype(np.float32)], [out])
    return out


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


@pytest.mark.parametrize("fill_mode", FILLS)
def test_given_transforms_match_keras(keras, fill_mode):
    rng = case_rng("keras", fill_mode)
    n, h, w = 4, 7, 6
    x = rng.standard_normal((n, h, w, 3)).astype(np.float32)
    u = rng.random((n, 2))
    cases = [
        (keras.layers.RandomTranslation(0.5, (-0.3, 0.8), fill_mode=fill_mode, fill_value=0.4),
         {"kind": "translation", "lower": [-0.5, -0.3], "upper": [0.5, 0.8]},
         lambda v: {"translations": np.stack([v[:, 1] * w, v[:, 0] * h], 1).astype("float32"),
                    "input_shape": x.shape}),
        (keras.layers.RandomZoom((-0.5, 0.6), (-0.2, 0.9), fill_mode=fill_mode, fill_value=0.4),
         {"kind": "zoom", "lower": [-0.5, -0.2], "upper": [0.6, 0.9]},
         lambda v: {"height_zoom": (1 + v[:, :1]).astype("float32"),
                    "width_zoom": (1 + v[:, 1:]).astype("float32"), "input_shape": x.shape}),
    ]
    for interpolation in INTERPS:
        for klayer, attrs, make in cases:
            klayer.interpolation = interpolation
            lo, hi = np.array(attrs["lower"]), np.array(attrs["upper"])
            v = lo + (hi - lo) * u
            t = ref.transforms(attrs, u, h, w)
            want = to_numpy(klayer.transform_images(x, make(v), training=True))
            got = _pynn_affine(x, t, fill_mode, interpolation, 0.4)
            ok = ~_tie_mask(t, h, w) if interpolation == "nearest" else np.ones((n, h, w), bool)
            # bilinear: Keras's float32 coordinates and weights against pynn's double ones
            np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=2e-5,
                                       err_msg=f"{klayer.name} {interpolation}")
        # rotation: Keras builds its matrix from the angle; pynn's twin builds the same one
        krot = keras.layers.RandomRotation(0.5, fill_mode=fill_mode, fill_value=0.4,
                                           interpolation=interpolation)
        t = ref.transforms({"kind": "rotation", "lower": [-0.5], "upper": [0.5]}, u, h, w)
        angle = (-0.5 + u[:, 0]) * 360.0
        import torch
        km = to_numpy(krot._compute_affine_matrix(
            0.5, 0.5, torch.tensor(angle, dtype=torch.float32), torch.zeros(n), torch.zeros(n),
            torch.ones(n), torch.zeros(n), torch.zeros(n), h, w))
        np.testing.assert_allclose(t, km, rtol=0, atol=1e-5)
        want = to_numpy(krot.transform_images(x, {"rotation_matrix": torch.tensor(km)},
                                              training=True))
        got = _pynn_affine(x, t, fill_mode, interpolation, 0.4)
        ok = ~_tie_mask(t, h, w) if interpolation == "nearest" else np.ones((n, h, w), bool)
        np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=5e-5,
                                   err_msg=f"rotation {interpolation}")
        # the pixels compared are most of them
        assert ok.mean() > 0.9
        # any affine map (scales up to 4: reads several periods away from the image)
        t = np.zeros((n, 8))
        t[:, :6] = rng.uniform(-4, 4, (n, 6))
        want = to_numpy(keras.ops.image.affine_transform(
            x, t.astype(np.float32), interpolation=interpolation, fill_mode=fill_mode,
            fill_value=0.4))
        got = _pynn_affine(x, t, fill_mode, interpolation, 0.4)
        ok = ~_tie_mask(t, h, w) if interpolation == "nearest" else np.ones((n, h, w), bool)
        np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=5e-5,
                                   err_msg=f"affine {interpolation}")


def test_flip_matches_keras(keras):
    rng = case_rng("kflip")
    x = rng.standard_normal((5, 3, 4, 2)).astype(np.float32)
    u = np.array([[0.1, 0], [0.9, 0], [0.5, 0], [0.7, 0], [0.2, 0]])
    for mode in ("horizontal", "vertical", "horizontal_and_vertical"):
        t = ref.transforms({"kind": "flip", "mode": mode}, u, 3, 4)
        flips = (u[:, 0] <= 0.5).reshape(-1, 1, 1, 1)
        want = to_numpy(keras.layers.RandomFlip(mode).transform_images(
            x, {"flips": flips, "input_shape": x.shape}, training=True))
        np.testing.assert_array_equal(_pynn_affine(x, t, "reflect", "nearest", 0.0), want)


def _ks_same(a, b):
    """Two-sample Kolmogorov-Smirnov: with 4000 vs 4000 draws the statistic exceeds 0.05 with
    probability < 1e-3 when both come from one distribution (c(alpha) = 1.95 for alpha = 1e-3;
    1.95 * sqrt(2 / 4000) = 0.044)."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    d = np.abs(np.searchsorted(a, grid, "right") / a.size
               - np.searchsorted(b, grid, "right") / b.size).max()
    return d < 0.05


def test_random_parameters_have_keras_ranges(keras):
    n, h, w = 4000, 5, 8
    images = np.zeros((n, h, w, 1), np.float32)
    u = ref.draws(12345, 3 * 4096 + 2, n)      # the engine's draws (verified above)
    # translation
    k = keras.layers.RandomTranslation((-0.2, 0.3), 0.1, seed=1)
    kt = to_numpy(k.get_random_transformation(images, training=True)["translations"])
    t = ref.transforms({"kind": "translation", "lower": [-0.2, -0.1], "upper": [0.3, 0.1]},
                       u, h, w)
    ours_ty, ours_tx = -t[:, 5] / h, -t[:, 2] / w
    assert _ks_same(ours_ty, kt[:, 1] / h) and _ks_same(ours_tx, kt[:, 0] / w)
    assert -0.2 <= ours_ty.min() and ours_ty.max() < 0.3 and abs(ours_tx).max() <= 0.1
    # rotation: angle in degrees
    k = keras.layers.RandomRotation((-0.1, 0.25), seed=1)
    ka = to_numpy(k.get_random_transformation(images, training=True)["angle"])
    t = ref.transforms({"kind": "rotation", "lower": [-0.1], "upper": [0.25]}, u, h, w)
    ours = np.degrees(np.arctan2(t[:, 3], t[:, 0]))
    assert _ks_same(ours, ka) and -36.0 <= ours.min() and ours.max() <= 90.0
    # zoom (width follows height when width_factor is None)
    k = keras.layers.RandomZoom((-0.3, 0.5), seed=1)
    kz = to_numpy(k.get_random_transformation(images, training=True)["height_zoom"])[:, 0]
    t = ref.transforms({"kind": "zoom", "lower": [-0.3, 0], "upper": [0.5, 0],
                        "same_zoom": 1}, u, h, w)
    assert _ks_same(t[:, 4], kz) and np.array_equal(t[:, 0], t[:, 4])
    assert 0.7 <= t[:, 4].min() and t[:, 4].max() < 1.5
    # flip: a fair coin; 4000 tosses stay within 4 standard deviations (0.5 / sqrt(n)) of 1/2
    k = keras.layers.RandomFlip(seed=1)
    kf = to_numpy(k.get_random_transformation(images, training=True)["flips"]).mean()
    t = ref.transforms({"kind": "flip", "mode": "horizontal"}, u, h, w)
    for p in (kf, (t[:, 0] < 0).mean()):
        assert abs(p - 0.5) < 4 * 0.5 / np.sqrt(n)


# --- in models ----------------------------------------------------------------------------------
def _model(seed=None):
    return pynn.Sequential([
        pynn.Input((8, 8, 2)), L.RandomFlip("horizontal", seed=seed),
        L.Conv2D(3, 3, padding="same", activation="relu"),
        L.RandomTranslation(0.2, 0.2, fill_mode="constant", seed=seed),   # mid-network
        L.RandomRotation(0.1, interpolation="nearest"), L.RandomZoom(0.2, fill_mode="wrap"),
        L.Flatten(), L.Dense(3)])


def _train(nt, seed=4):
    rng = case_rng("fit")
    x = rng.standard_normal((40, 8, 8, 2)).astype(np.float32)
    y = rng.standard_normal((40, 3)).astype(np.float32)
    before = pynn.get_num_threads()
    try:
        pynn.set_num_threads(nt)
        pynn.utils.set_random_seed(seed)
        m = _model()
        m.compile("adam", "mse")
        m.fit(x, y, epochs=2, batch_size=16, verbose=0)
        return m, x, y
    finally:
        pynn.set_num_threads(before)


def test_training_only_seeded_and_thread_count_independent():
    m1, x, y = _train(1)
    m2, _, _ = _train(2)
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)
    m3, _, _ = _train(1, seed=5)
    assert not np.array_equal(m1.get_weights()[0], m3.get_weights()[0])
    # predict and evaluate see the images unchanged: the same as the model without the layers
    plain = pynn.Sequential([pynn.Input((8, 8, 2)), L.Conv2D(3, 3, padding="same",
                                                             activation="relu"),
                             L.Flatten(), L.Dense(3)])
    plain.set_weights(m1.get_weights())
    np.testing.assert_array_equal(m1.predict(x, verbose=0), plain.predict(x, verbose=0))
    m1.compile("adam", "mse")
    plain.compile("adam", "mse")
    assert m1.evaluate(x, y, verbose=0) == plain.evaluate(x, y, verbose=0)
    # in training the augmentation changes what the network sees (train_on_batch's loss
    # differs from the plain model's on the same weights)
    assert m1.train_on_batch(x, y) != plain.train_on_batch(x, y)


def test_configs_files_and_pickle(tmp_path):
    layers = _layers("wrap", "nearest", seed=7) + [
        L.RandomFlip("vertical", seed=None, data_format="channels_first"),
        L.RandomZoom(0.2, None), L.RandomRotation((0.3, -0.2))]
    for layer in layers:
        cfg = layer.get_config()
        back = type(layer).from_config(cfg)
        assert back.get_config() == cfg
        assert pickle.loads(pickle.dumps(layer)).get_config() == cfg
    assert layers[-1].get_config()["factor"] == [-0.2, 0.3]
    m, x, _ = _train(1)
    for name in ("m.safetensors", "m.keras"):
        m.save(tmp_path / name)
        back = pynn.models.load_model(tmp_path / name)
        np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
        assert [lay.get_config() for lay in back.layers] == [lay.get_config()
                                                             for lay in m.layers]
    back = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))


# Keras's saver calls np.array on torch tensors (a NumPy 2 DeprecationWarning inside Keras)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning:keras")
def test_keras_file_with_augmentation_layers_loads(keras, tmp_path):
    rng = case_rng("kfile")
    km = keras.Sequential([
        keras.Input((6, 6, 3)), keras.layers.RandomFlip(seed=1),
        keras.layers.RandomTranslation(0.1, (-0.2, 0.3), fill_mode="nearest", seed=2),
        keras.layers.RandomRotation(0.2, interpolation="nearest", fill_value=1.0),
        keras.layers.RandomZoom(0.3, 0.1, fill_mode="constant"),
        keras.layers.Flatten(), keras.layers.Dense(2)])
    km.save(tmp_path / "k.keras")
    m = pynn.models.load_model(tmp_path / "k.keras")
    assert [type(lay).__name__ for lay in m.layers[:4]] == [
        "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom"]
    assert m.layers[3].get_config()["width_factor"] == 0.1
    x = rng.standard_normal((3, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x, verbose=0), km.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    m.save(tmp_path / "p.keras")
    back = keras.models.load_model(tmp_path / "p.keras")
    assert back.layers[2].get_config()["factor"] == km.layers[2].get_config()["factor"]


def test_onnx_export_is_identity(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m, x, _ = _train(1)
    m.export(tmp_path / "m.onnx", format="onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    # float32 on both sides with their own summation orders (as test_onnx_export.py)
    np.testing.assert_allclose(got, m.predict(x, verbose=0), atol=2e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        L.RandomFlip("diagonal")
    with pytest.raises(ValueError, match="height_factor"):
        L.RandomTranslation(1.5, 0.1)
    with pytest.raises(ValueError, match="width_factor"):
        L.RandomTranslation(0.1, (0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="height_factor"):
        L.RandomZoom(-1.0)
    with pytest.raises(ValueError, match="factor"):
        L.RandomRotation("a lot")
    with pytest.raises(ValueError, match="fill_mode"):
        L.RandomRotation(0.1, fill_mode="mirror")
    with pytest.raises(ValueError, match="interpolation"):
        L.RandomZoom(0.1, interpolation="bicubic")
    with pytest.raises(ValueError, match="fill_value"):
        L.RandomZoom(0.1, fill_value=float("nan"))
    with pytest.raises(TypeError, match="seed"):
        L.RandomFlip(seed=1.5)
    with pytest.raises(ValueError, match="bounding_box_format"):
        L.RandomFlip(bounding_box_format="xyxy")
    with pytest.raises(ValueError, match="height, width, channels"):
        L.RandomFlip()(np.zeros((2, 5, 3), np.float32))


def test_signatures_match_keras(keras):
    import inspect

    for name in ("RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom"):
        def params(cls):
            return [(p.name, p.default) for p in inspect.signature(cls.__init__).parameters.values()
                    if p.kind is not p.VAR_KEYWORD and p.name != "self"]
        assert params(getattr(L, name)) == params(getattr(keras.layers, name)), name


def test_threaded_paths_are_bitwise_equal_to_one_thread():
    """Above 2^14 values per call the op splits rows (forward) and samples (backward) over
    threads: each output and each sample's gradient is still computed by one thread in a
    fixed order, so 1 and 2 threads agree bitwise."""
    rng = case_rng("threads")
    x = rng.standard_normal((6, 40, 36, 3)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    before = pynn.get_num_threads()
    try:
        for layer in _layers("reflect", "bilinear", seed=3) + [L.RandomFlip(seed=3)]:
            results = []
            for nt in (1, 2):
                pynn.set_num_threads(nt)
                _, g = _graph(layer, x.shape[1:])
                out = np.empty_like(x)
                g.predict([x.reshape(len(x), -1)], [out])
                results.append((out, g.input_gradient([x], [dy])[0]))
            for a, b in zip(*results):
                np.testing.assert_array_equal(a, b)
    finally:
        pynn.set_num_threads(before)
