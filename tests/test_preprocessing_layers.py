"""Preprocessing layers: Normalization, Rescaling, Discretization, CategoryEncoding (graph ops:
inside models, against Keras 3 running on the same inputs) and IntegerLookup, StringLookup,
TextVectorization (NumPy; Keras runs them only with TensorFlow, which the test environment
lacks, so they are held to the values of Keras's documented examples, written out below).

Tolerances: the numeric layers are one or two float32 operations per element on both sides:
1e-6 relative (Normalization divides by a float32 square root; Keras too). Adapted
statistics: pynn sums in float64, Keras in float32 batches: 1e-5 relative.
"""
from __future__ import annotations

import numpy as np
import pytest
from keras_helpers import case_rng, to_numpy

import pynn
from pynn import layers as L
from pynn.reference import graph as ref_graph

# --- numeric layers against Keras -------------------------------------------------------------
NORM_CASES = [
    ({}, (6,)),
    ({"axis": None}, (4,)),
    ({"axis": (1, 2)}, (3, 4)),
    ({"axis": 1}, (3, 4)),
    ({"invert": True}, (5,)),
]


@pytest.mark.parametrize("kwargs,shape", NORM_CASES)
def test_normalization_adapt_matches_keras(keras, kwargs, shape):
    rng = case_rng("norm", repr(kwargs))
    data = (3.0 + 2.0 * rng.standard_normal((64,) + shape)).astype(np.float32)
    data[:, ..., 0] = 7.0 if len(shape) == 1 else data[:, ..., 0]   # a constant feature
    ours, theirs = L.Normalization(**kwargs), keras.layers.Normalization(**kwargs)
    ours.adapt(data)
    theirs.adapt(data)
    for a, b in zip(ours.get_weights()[:2], [to_numpy(v.value) for v in theirs.weights][:2]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    x = rng.standard_normal((5,) + shape).astype(np.float32)
    np.testing.assert_allclose(ours(x), to_numpy(theirs(x)), rtol=1e-5, atol=1e-5)


def test_normalization_with_mean_and_variance_matches_keras(keras):
    x = case_rng("mv").standard_normal((4, 3, 2)).astype(np.float32)
    for kw in ({"mean": [1.0, -2.0], "variance": [4.0, 0.0]},
               {"mean": 0.5, "variance": 2.0, "axis": None},
               {"mean": [1.0, 2.0, 3.0], "variance": [1.0, 2.0, 3.0], "axis": 1,
                "invert": True}):
        got = L.Normalization(**kw)(x)
        want = to_numpy(keras.layers.Normalization(**kw)(x))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_rescaling_discretization_category_encoding_match_keras(keras):
    rng = case_rng("misc")
    x = rng.standard_normal((6, 5)).astype(np.float32) * 3
    np.testing.assert_allclose(L.Rescaling(1 / 255, offset=-1.0)(x),
                               to_numpy(keras.layers.Rescaling(1 / 255, offset=-1.0)(x)),
                               rtol=1e-6)
    bounds = [-2.0, 0.0, 0.5, 3.0]
    x[0, :4] = bounds                                   # values on the boundaries
    got = L.Discretization(bin_boundaries=bounds)(x)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, to_numpy(keras.layers.Discretization(bounds)(x)))
    # adapt: Keras's adapt() insists on TensorFlow for its dataset check; its update_state and
    # finalize_state are the whole computation
    data = rng.standard_normal(1000).astype(np.float32)
    for bins, eps in ((4, 0.01), (7, 0.001), (3, 0.1)):
        ours = L.Discretization(num_bins=bins, epsilon=eps)
        ours.adapt(data)
        theirs = keras.layers.Discretization(num_bins=bins, epsilon=eps)
        theirs.reset_state()
        theirs.update_state(data)
        theirs.finalize_state()
        np.testing.assert_allclose(ours.bin_boundaries, theirs.bin_boundaries, rtol=1e-6)
    ints = np.array([[0, 1, 1, 4], [3, 3, 2, 0]])
    for mode in ("multi_hot", "count", "one_hot"):
        for arr in (ints, ints[:, :1], ints[:, 0]):
            got = L.CategoryEncoding(5, output_mode=mode)(arr)
            want = to_numpy(keras.layers.CategoryEncoding(5, output_mode=mode)(arr))
            np.testing.assert_array_equal(got, want)


def test_numeric_layers_in_a_model_train_predict_save_load(tmp_path):
    rng = case_rng("model")
    x = (rng.random((64, 4)) * 4).astype(np.float32)
    y = (x.sum(axis=1, keepdims=True) > 8).astype(np.float32)
    norm = L.Normalization()
    norm.adapt(x)
    inp = pynn.Input((4,))
    a = L.Dense(3)(L.Rescaling(0.5, 0.25)(norm(inp)))
    bins = L.CategoryEncoding(4, output_mode="count")(L.Discretization([1.0, 2.0, 3.0])(inp))
    out = L.Dense(1, activation="sigmoid")(L.Concatenate()([a, bins]))
    model = pynn.Model(inp, out)
    model.compile("adam", "binary_crossentropy")
    mean_before = norm.get_weights()[0].copy()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_array_equal(norm.get_weights()[0], mean_before)   # not trainable
    # the engine agrees with the NumPy twin of the same graph
    spec = model._build_spec()
    np.testing.assert_allclose(model.predict(x, verbose=0), ref_graph.predict(spec, [x])[0],
                               rtol=1e-5, atol=1e-6)
    path = tmp_path / "pre.safetensors"
    model.save(path)
    back = pynn.models.load_model(path)
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))


def test_numeric_configs_round_trip():
    layers = [L.Normalization(axis=(1, 2), mean=[1.0, 2.0], variance=[1.0, 4.0]),
              L.Normalization(invert=True), L.Rescaling(2.0, 1.0),
              L.Discretization(bin_boundaries=[0.0, 1.0]),
              L.CategoryEncoding(3, output_mode="one_hot")]
    d = L.Discretization(num_bins=3)
    d.adapt(np.arange(30, dtype=np.float32))
    layers.append(d)
    for layer in layers:
        back = L.deserialize(L.serialize(layer))
        assert back.get_config() == layer.get_config()
    assert L.deserialize(L.serialize(d)).bin_boundaries == d.bin_boundaries


# --- lookup layers: Keras's documented examples ----------------------------------------------
VOCAB = ["a", "b", "c", "d"]
DATA = np.array([["a", "c", "d"], ["d", "z", "b"]])
DATA4 = np.array([["a", "c", "d", "d"], ["d", "z", "b", "z"]])


def test_string_lookup_documented_examples():
    np.testing.assert_array_equal(L.StringLookup(vocabulary=VOCAB)(DATA),
                                  [[1, 3, 4], [4, 0, 2]])
    layer = L.StringLookup()
    layer.adapt(DATA)
    assert layer.get_vocabulary() == ["[UNK]", "d", "z", "c", "b", "a"]
    np.testing.assert_array_equal(layer(DATA), [[5, 3, 1], [1, 2, 4]])
    np.testing.assert_array_equal(L.StringLookup(vocabulary=VOCAB, num_oov_indices=2)(DATA)[0],
                                  [2, 4, 5])
    np.testing.assert_array_equal(
        L.StringLookup(vocabulary=VOCAB, output_mode="one_hot")(np.array(["a", "b", "c", "d",
                                                                          "z"])),
        np.eye(5)[[1, 2, 3, 4, 0]])
    np.testing.assert_array_equal(
        L.StringLookup(vocabulary=VOCAB, output_mode="multi_hot")(DATA4),
        [[0, 1, 0, 1, 1], [1, 0, 1, 0, 1]])
    np.testing.assert_array_equal(
        L.StringLookup(vocabulary=VOCAB, output_mode="count")(DATA4),
        [[0, 1, 0, 1, 2], [2, 0, 1, 0, 1]])
    np.testing.assert_allclose(
        L.StringLookup(vocabulary=VOCAB, output_mode="tf_idf",
                       idf_weights=[0.25, 0.75, 0.6, 0.4])(DATA4),
        [[0, 0.25, 0, 0.6, 0.8], [1.0, 0, 0.75, 0, 0.4]], rtol=1e-6)
    np.testing.assert_array_equal(L.StringLookup(vocabulary=VOCAB, mask_token="[MASK]")(DATA),
                                  [[2, 4, 5], [5, 1, 3]])
    inv = L.StringLookup(vocabulary=VOCAB, invert=True)
    np.testing.assert_array_equal(inv(np.array([[1, 3, 4], [4, 0, 2]])),
                                  [["a", "c", "d"], ["d", "[UNK]", "b"]])


def test_string_lookup_tf_idf_adapt_and_max_tokens():
    docs = np.array([["a", "b", "c", "d"], ["d", "b", "c", "e"], ["d", "d", "a", "f"]])
    layer = L.StringLookup(output_mode="tf_idf", max_tokens=4)
    layer.adapt(docs)
    assert layer.get_vocabulary() == ["[UNK]", "d", "c", "b"]      # d: 4, c/b: 2 (c > b)
    # idf = log(1 + documents / (1 + documents with the token)); OOV gets their mean
    idf = np.log(1 + 3 / (1 + np.array([3, 2, 2])))
    np.testing.assert_allclose(layer(np.array([["d", "x", "d", "b"]])),
                               [[idf.mean(), 2 * idf[0], 0, idf[2]]], rtol=1e-6)


def test_integer_lookup_documented_examples():
    data = np.array([[12, 1138, 42], [42, 1000, 36]])
    vocab = [12, 36, 1138, 42]
    np.testing.assert_array_equal(L.IntegerLookup(vocabulary=vocab)(data), [[1, 3, 4],
                                                                            [4, 0, 2]])
    layer = L.IntegerLookup()
    layer.adapt(data)
    assert layer.get_vocabulary() == [-1, 42, 1138, 1000, 36, 12]
    np.testing.assert_array_equal(layer(data), [[5, 2, 1], [1, 3, 4]])
    # several OOV indices: token % num_oov_indices (1000 % 2 = 0)
    np.testing.assert_array_equal(L.IntegerLookup(vocabulary=vocab, num_oov_indices=2)(data),
                                  [[2, 4, 5], [5, 0, 3]])
    np.testing.assert_array_equal(
        L.IntegerLookup(vocabulary=vocab, mask_token=0)(np.array([[12, 1138, 42],
                                                                  [42, 0, 36]])),
        [[2, 4, 5], [5, 0, 3]])
    inv = L.IntegerLookup(vocabulary=vocab, invert=True)
    np.testing.assert_array_equal(inv(np.array([[1, 3, 4], [4, 0, 2]])),
                                  [[12, 1138, 42], [42, -1, 36]])
    with pytest.raises(ValueError, match="num_oov_indices=0"):
        L.IntegerLookup(vocabulary=vocab, num_oov_indices=0)(data)


def test_text_vectorization_documented_examples():
    vec = L.TextVectorization(max_tokens=5000, output_mode="int", output_sequence_length=4)
    vec.adapt(np.array(["foo bar", "bar baz", "baz bada boom"]))
    np.testing.assert_array_equal(vec(np.array([["foo qux bar"], ["qux baz"]])),
                                  [[4, 1, 3, 0], [1, 2, 0, 0]])
    vec = L.TextVectorization(output_sequence_length=4,
                              vocabulary=["earth", "wind", "and", "fire"])
    np.testing.assert_array_equal(vec(np.array(["earth wind and fire",
                                                "fire and earth michigan"])),
                                  [[2, 3, 4, 5], [5, 4, 2, 1]])
    # standardisation, padding to the longest text, truncation, max_tokens
    vec = L.TextVectorization(max_tokens=4)
    vec.adapt(np.array(["Hello, World!", "hello again... world", "HELLO"]))
    assert vec.get_vocabulary() == ["", "[UNK]", "hello", "world"]
    np.testing.assert_array_equal(vec(np.array(["World, hello!", "again"])), [[3, 2], [1, 0]])
    bag = L.TextVectorization(output_mode="count")
    bag.adapt(np.array(["a a b", "b c"]))
    assert bag.get_vocabulary() == ["[UNK]", "b", "a", "c"]
    np.testing.assert_array_equal(bag(np.array(["a b a x", "c"])), [[1, 1, 2, 0],
                                                                    [0, 0, 0, 1]])


def test_vocabulary_layers_lead_a_sequential_model(tmp_path):
    texts = np.array(["good movie", "bad movie", "great film", "awful film"] * 8)
    y = np.array([1, 0, 1, 0] * 8, np.float32)[:, None]
    vec = L.TextVectorization(output_mode="multi_hot")
    vec.adapt(texts)
    model = pynn.Sequential([vec, L.Dense(1, activation="sigmoid")])
    model.compile(pynn.optimizers.Adam(0.05), "binary_crossentropy", metrics=["accuracy"])
    model.fit(texts, y, epochs=30, batch_size=8, verbose=0)
    pred = model.predict(texts[:4], verbose=0)
    assert (pred[[0, 2]] > 0.5).all() and (pred[[1, 3]] < 0.5).all()
    assert model.evaluate(texts, y, verbose=0, return_dict=True)["accuracy"] == 1.0
    path = tmp_path / "text.safetensors"
    model.save(path)
    back = pynn.models.load_model(path)
    np.testing.assert_array_equal(back.predict(texts[:4], verbose=0), pred)
    assert back.layers[0].get_vocabulary() == vec.get_vocabulary()
    # a lookup and a fixed-length int sequence feeding the float graph
    ids = pynn.Sequential([L.StringLookup(vocabulary=VOCAB), L.CategoryEncoding(5, "count")])
    np.testing.assert_array_equal(ids.predict(DATA, verbose=0), [[0, 1, 0, 1, 1],
                                                                 [1, 0, 1, 0, 1]])
    with pytest.raises(TypeError, match="runs on NumPy"):
        L.StringLookup(vocabulary=VOCAB)(pynn.Input((3,)))
    # a shape-changing lookup after a raw Input, saved and loaded
    onehot = pynn.Sequential([pynn.Input((1,)), L.StringLookup(vocabulary=VOCAB,
                                                               output_mode="one_hot"),
                              L.Dense(2)])
    assert onehot.input_shape == (None, 5)
    path = tmp_path / "onehot.safetensors"
    onehot.save(path)
    back = pynn.models.load_model(path)
    words = np.array([["b"], ["z"]])
    np.testing.assert_array_equal(back.predict(words, verbose=0), onehot.predict(words,
                                                                                 verbose=0))


def test_lookup_configs_round_trip():
    docs = np.array([["a", "b", "b"], ["c", "b", "a"]])
    made = [L.StringLookup(vocabulary=VOCAB, mask_token="", num_oov_indices=2),
            L.IntegerLookup(vocabulary=[3, 1, 4], output_mode="multi_hot"),
            L.StringLookup(output_mode="tf_idf"), L.TextVectorization(max_tokens=6)]
    made[2].adapt(docs)
    made[3].adapt(np.array(["a b c", "b c. C!"]))
    inputs = [docs, np.array([[1, 5, 4]]), docs, np.array(["c b a x"])]
    for layer, x in zip(made, inputs):
        back = L.deserialize(L.serialize(layer))
        assert back.get_config() == layer.get_config()
        np.testing.assert_array_equal(back(x), layer(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="output_mode"):
        L.StringLookup(output_mode="bag")
    with pytest.raises(ValueError, match="no vocabulary"):
        L.StringLookup()(np.array(["a"]))
    with pytest.raises(TypeError, match="expected strings"):
        L.StringLookup(vocabulary=VOCAB)(np.array([1.0]))
    with pytest.raises(ValueError, match="idf_weights"):
        L.StringLookup(vocabulary=VOCAB, output_mode="tf_idf")
    with pytest.raises(ValueError, match="output_sequence_length"):
        L.TextVectorization(output_mode="count", output_sequence_length=3)
    with pytest.raises(ValueError, match="in \\[0, 3\\)"):
        L.CategoryEncoding(3)(np.array([[0, 3]]))
    with pytest.raises(ValueError, match="bin_boundaries"):
        L.Discretization(bin_boundaries=[1.0, 0.0])
    with pytest.raises(ValueError, match="bin_boundaries or num_bins"):
        L.Discretization()
    with pytest.raises(ValueError, match="mean and variance"):
        L.Normalization(mean=1.0)
    with pytest.raises(ValueError, match="NaN"):
        L.Normalization().adapt(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="adapt"):
        L.Normalization(mean=0.0, variance=1.0).adapt(np.zeros((2, 1)))
