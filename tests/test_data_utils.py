"""pynn.utils data loaders against Keras 3: image/text folders, time-series windows,
split_dataset, pad_sequences and the Dataset they return.

Keras's own loaders return tf.data (or grain) datasets, neither of which is in the test extra,
so where a loader needs them the expected figures below were produced by Keras 3.15
(torch backend, format="grain") and written into the tests. Keras's pure-Python pieces
(the file indexing and split, pad_sequences, ops.image.resize, split_dataset's sizes) are run
directly.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import pynn
from pynn.utils import (
    Dataset,
    image_dataset_from_directory,
    pad_sequences,
    split_dataset,
    text_dataset_from_directory,
    timeseries_dataset_from_array,
)


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


@pytest.fixture
def image_dir(tmp_path):
    """Three classes of small random PNG and JPEG images of varied sizes, one in a nested
    folder, plus a file that is not an image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ["dogs", "cats", "birds"]:
        os.makedirs(tmp_path / c / "nested")
        for i in range(4):
            h, w = rng.integers(5, 13, 2)
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            sub = "nested/" if i == 3 else ""
            ext = "jpg" if i == 2 else "png"
            Image.fromarray(arr).save(tmp_path / c / f"{sub}{i}.{ext}")
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    return tmp_path


def _keras_index(keras, directory, **kw):
    from keras.src.utils import dataset_utils

    return dataset_utils.index_directory(str(directory), "inferred", formats=(
        ".bmp", ".gif", ".jpeg", ".jpg", ".png"), verbose=False, **kw)


@pytest.mark.parametrize("shuffle", [False, True])
def test_file_order_labels_and_split_equal_keras(keras, image_dir, shuffle):
    from keras.src.utils import dataset_utils

    paths, labels, names = _keras_index(keras, image_dir, shuffle=shuffle, seed=11)
    for subset in ("training", "validation"):
        kp, kl = dataset_utils.get_training_or_validation_split(paths, labels, 0.25, subset)
        ds = image_dataset_from_directory(image_dir, image_size=(4, 4), seed=11,
                                          shuffle=shuffle, validation_split=0.25,
                                          subset=subset, verbose=False)
        assert ds.class_names == names == ["birds", "cats", "dogs"]
        assert ds.file_paths == kp
        if not shuffle:   # (shuffled, pynn also reshuffles at every pass)
            assert np.array_equal(np.concatenate([y for _, y in ds]), kl)


def test_images_equal_keras_resize(keras, image_dir):
    """Each image equals Keras's: Pillow decoding, then keras.ops.image.resize (torch)."""
    from PIL import Image

    cases = [dict(), dict(interpolation="nearest"), dict(interpolation="bicubic"),
             dict(crop_to_aspect_ratio=True), dict(pad_to_aspect_ratio=True)]
    for kw in cases:
        ds = image_dataset_from_directory(image_dir, image_size=(6, 9), batch_size=5,
                                          shuffle=False, verbose=False, **kw)
        got = np.concatenate([x for x, _ in ds])
        assert got.shape == (12, 6, 9, 3) and got.dtype == np.float32
        for img, path in zip(got, ds.file_paths):
            raw = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
            want = keras.ops.image.resize(
                raw, (6, 9), interpolation=kw.get("interpolation", "bilinear"),
                crop_to_aspect_ratio=kw.get("crop_to_aspect_ratio", False),
                pad_to_aspect_ratio=kw.get("pad_to_aspect_ratio", False)).numpy()
            # float32 interpolation in a different order: a few ulps of values up to 255
            np.testing.assert_allclose(img, want, rtol=0, atol=1e-3, err_msg=str(kw))


@pytest.mark.parametrize("shape, size", [((7, 11, 3), (6, 9)), ((5, 5, 1), (12, 3)),
                                         ((13, 4, 2), (4, 13)), ((1, 1, 1), (3, 2)),
                                         ((9, 9, 1), (3, 3)), ((2, 3, 4), (8, 8))])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
def test_resize_image_equals_keras_on_random_shapes(keras, shape, size, interpolation):
    from pynn.utils.image_dataset_utils import resize_image

    img = np.random.default_rng(sum(shape)).uniform(0, 255, shape).astype(np.float32)
    want = keras.ops.image.resize(img, size, interpolation=interpolation).numpy()
    got = resize_image(np.asfortranarray(img), size, interpolation)   # (not C-contiguous)
    assert got.shape == want.shape
    # float32 sums of up to 16 taps of values up to 255, in another order
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)


def test_label_modes_color_modes_and_batching(image_dir):
    common = dict(image_size=(3, 5), shuffle=False, verbose=False)
    x, y = next(iter(image_dataset_from_directory(image_dir, label_mode="categorical",
                                                  batch_size=12, **common)))
    assert y.dtype == np.float32 and y.shape == (12, 3)
    assert np.array_equal(y.argmax(1), [0] * 4 + [1] * 4 + [2] * 4)
    x, y = next(iter(image_dataset_from_directory(image_dir, batch_size=12, **common)))
    assert y.dtype == np.int32 and list(y) == [0] * 4 + [1] * 4 + [2] * 4
    two = image_dataset_from_directory(image_dir, label_mode="binary",
                                       class_names=["dogs", "cats"], batch_size=None, **common)
    assert two.class_names == ["dogs", "cats"] and len(two) == 8
    elems = list(two)
    assert elems[0][0].shape == (3, 5, 3) and elems[0][1].shape == (1,)
    assert [float(e[1][0]) for e in elems] == [0.0] * 4 + [1.0] * 4
    gray = image_dataset_from_directory(image_dir, label_mode=None, color_mode="grayscale",
                                        batch_size=5, **common)
    shapes = [b.shape for b in gray]
    assert shapes == [(5, 3, 5, 1), (5, 3, 5, 1), (2, 3, 5, 1)] and len(gray) == 3
    rgba = next(iter(image_dataset_from_directory(image_dir, color_mode="rgba", **common)))
    # (opaque images: alpha 255 up to the float32 rounding of the bilinear weights)
    assert rgba[0].shape[-1] == 4 and np.allclose(rgba[0][..., 3], 255, rtol=0, atol=1e-3)


def test_subset_both_and_follow_links(image_dir, tmp_path_factory):
    train, val = image_dataset_from_directory(image_dir, image_size=(4, 4), seed=5,
                                              validation_split=0.25, subset="both",
                                              verbose=False)
    assert (train.num_samples, val.num_samples) == (9, 3)
    assert not set(train.file_paths) & set(val.file_paths)
    # a link to a folder of images is ignored unless follow_links=True
    extra = tmp_path_factory.mktemp("linked")
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(extra / "a.png")
    os.symlink(extra, image_dir / "birds" / "link")
    kw = dict(image_size=(4, 4), shuffle=False, verbose=False)
    assert image_dataset_from_directory(image_dir, **kw).num_samples == 12
    assert image_dataset_from_directory(image_dir, follow_links=True, **kw).num_samples == 13


def test_reshuffles_each_pass_with_the_seed(image_dir):
    ds = image_dataset_from_directory(image_dir, image_size=(2, 2), batch_size=12, seed=3,
                                      verbose=False)
    first, second = (next(iter(ds))[1] for _ in range(2))
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)
    again = image_dataset_from_directory(image_dir, image_size=(2, 2), batch_size=12, seed=3,
                                         verbose=False)
    assert np.array_equal(next(iter(again))[1], first)


@pytest.mark.parametrize("kwargs, match", [
    (dict(label_mode="sparse"), "label_mode"),
    (dict(color_mode="cmyk"), "color_mode"),
    (dict(image_size=(0, 3)), "image_size"),
    (dict(validation_split=0.2), "subset"),
    (dict(validation_split=1.5, subset="training", seed=1), "validation_split"),
    (dict(validation_split=0.2, subset="training"), "seed"),
    (dict(validation_split=0.2, subset="test", seed=1), "subset"),
    (dict(label_mode="binary"), "2 classes"),
    (dict(class_names=["cats", "lions"]), "class_names"),
    (dict(interpolation="lanczos9"), "interpolation"),
    (dict(batch_size=0), "batch_size"),
    (dict(labels=[0, 1]), "one label per file"),
])
def test_image_loader_bad_arguments(image_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        image_dataset_from_directory(image_dir, verbose=False, **kwargs)


def test_missing_directory_and_empty_directory(tmp_path):
    with pytest.raises(ValueError, match="not an existing directory"):
        image_dataset_from_directory(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        image_dataset_from_directory(tmp_path, verbose=False)


def test_fit_on_an_image_folder(image_dir):
    pynn.utils.set_random_seed(0)
    ds = image_dataset_from_directory(image_dir, image_size=(8, 8), batch_size=4, seed=1,
                                      verbose=False)
    model = pynn.Sequential([pynn.layers.Rescaling(1 / 255) if hasattr(pynn.layers, "Rescaling")
                             else pynn.layers.Flatten(), pynn.layers.Flatten(),
                             pynn.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(ds, epochs=2, verbose=0)
    assert len(hist.history["loss"]) == 2 and np.isfinite(hist.history["loss"]).all()
    assert model.predict(ds, verbose=0).shape == (12, 3)


def test_text_dataset(tmp_path):
    for c, texts in {"neg": ["bad", "awful film"], "pos": ["good", "great", "héllo wörld"]}.items():
        (tmp_path / c).mkdir()
        for i, t in enumerate(texts):
            (tmp_path / c / f"{i}.txt").write_text(t, encoding="utf-8")
    (tmp_path / "pos" / "skip.md").write_text("not a .txt")
    ds = text_dataset_from_directory(tmp_path, batch_size=10, shuffle=False, verbose=False)
    x, y = next(iter(ds))
    assert ds.class_names == ["neg", "pos"]
    assert list(x) == ["bad", "awful film", "good", "great", "héllo wörld"]
    assert list(y) == [0, 0, 1, 1, 1]
    cut = text_dataset_from_directory(tmp_path, batch_size=10, shuffle=False, max_length=4,
                                      label_mode="binary", verbose=False)
    x, y = next(iter(cut))
    # max_length counts bytes, as Keras's tf.strings.substr: "hé" is 3 bytes, "héll" is 5
    assert list(x) == ["bad", "awfu", "good", "grea", "hél"] and y.shape == (5, 1)
    train, val = text_dataset_from_directory(tmp_path, seed=2, validation_split=0.4,
                                             subset="both", verbose=False)
    assert (train.num_samples, val.num_samples) == (3, 2)


def test_timeseries_keras_documented_example():
    # Keras's docstring: indices 0..98, sequence_length=10, sampling_rate=2, stride=3
    ds = timeseries_dataset_from_array(np.arange(99), None, sequence_length=10,
                                       sampling_rate=2, sequence_stride=3, batch_size=None)
    windows = list(ds)
    assert list(windows[0]) == list(range(0, 20, 2))
    assert list(windows[1]) == list(range(3, 22, 2))
    assert list(windows[-1]) == list(range(78, 97, 2)) and len(windows) == 27


def test_timeseries_regression_example_and_keras_figures():
    data = np.arange(100.0)
    ds = timeseries_dataset_from_array(data[:-10], data[10:], sequence_length=10)
    x, y = next(iter(ds))
    assert np.array_equal(x[0], data[:10]) and y[0] == data[10] and x.shape == (81, 10)
    # Keras 3.15 (format="grain"): targets arange*10, sequence_length 10, stride 3, rate 2,
    # batch 4, start_index 5, end_index 90 -> 6 batches, first targets [50 80 110 140],
    # first windows starting at 5 and 8, last window [71 73 ... 89], last targets
    # [650 680 710]
    ds = timeseries_dataset_from_array(np.arange(100), np.arange(100) * 10, 10,
                                       sequence_stride=3, sampling_rate=2, batch_size=4,
                                       start_index=5, end_index=90)
    batches = list(ds)
    assert len(batches) == len(ds) == 6
    assert list(batches[0][1]) == [50, 80, 110, 140]
    assert list(batches[0][0][:, 0]) == [5, 8, 11, 14]
    assert list(batches[-1][0][-1]) == list(range(71, 90, 2))
    assert list(batches[-1][1]) == [650, 680, 710]


def test_timeseries_multivariate_and_shuffle():
    data = np.arange(40.0).reshape(20, 2)
    ds = timeseries_dataset_from_array(data, np.arange(20), 4, batch_size=5, shuffle=True,
                                       seed=7)
    xs, ys = zip(*ds)
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert x.shape == (17, 4, 2) and sorted(y) == list(range(17))
    # the window starts are Keras's seeded permutation (np.random.RandomState(seed))
    want = np.arange(17)
    np.random.RandomState(7).shuffle(want)
    assert np.array_equal(y, want)
    for w, t in zip(x, y):
        assert np.array_equal(w, data[t:t + 4])


@pytest.mark.parametrize("kwargs, match", [
    (dict(sampling_rate=0), "sampling_rate"),
    (dict(sequence_stride=50), "sequence_stride"),
    (dict(start_index=-1), "start_index"),
    (dict(start_index=5, end_index=3), "end_index"),
    (dict(end_index=60), "end_index"),
    (dict(sequence_length=0), "sequence_length"),
    (dict(batch_size=-2), "batch_size"),
])
def test_timeseries_bad_arguments(kwargs, match):
    args = dict(sequence_length=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        timeseries_dataset_from_array(np.arange(50), None, **args)


@pytest.mark.parametrize("kwargs", [
    dict(), dict(maxlen=2), dict(maxlen=4, padding="post", truncating="post", value=-1),
    dict(padding="post"), dict(truncating="post", maxlen=1), dict(dtype="float32", value=0.5),
    dict(maxlen=6, dtype="int64"),
])
def test_pad_sequences_equals_keras(keras, kwargs):
    seqs = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]]
    want = keras.utils.pad_sequences(seqs, **kwargs)
    got = pad_sequences(seqs, **kwargs)
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_pad_sequences_multidimensional_steps_and_strings(keras):
    seqs = [np.ones((2, 3)), np.full((4, 3), 2.0)]
    np.testing.assert_array_equal(pad_sequences(seqs, dtype="float32"),
                                  keras.utils.pad_sequences(seqs, dtype="float32"))
    words = [["a", "b"], ["c"]]
    assert np.array_equal(pad_sequences(words, dtype=object, value=""),
                          keras.utils.pad_sequences(words, dtype=object, value=""))
    with pytest.raises(ValueError, match="padding"):
        pad_sequences([[1]], padding="middle")
    with pytest.raises(ValueError, match="value"):
        pad_sequences([[1]], value="x")
    with pytest.raises(ValueError, match=r"sequences\[1\]"):
        pad_sequences([[1], 5])
    with pytest.raises(ValueError, match=r"steps of shape"):
        pad_sequences([np.ones((2, 3)), np.ones((2, 4))])


@pytest.mark.parametrize("left, right", [(0.8, None), (None, 0.25), (7, None), (0.33, None),
                                         (0.6, 0.4)])
def test_split_dataset_sizes_equal_keras(keras, left, right):
    x = np.arange(20.0).reshape(10, 2)
    y = np.arange(10)
    kl, kr = keras.utils.split_dataset((x, y), left_size=left, right_size=right)
    pl, pr = split_dataset((x, y), left_size=left, right_size=right)
    assert (len(pl), len(pr)) == (len(kl), len(kr))
    # Unshuffled, the left part is the first rows and the right part the rows after it, as
    # Keras documents (its torch-backend implementation permutes even without shuffle).
    got = [int(yy) for _, yy in pl] + [int(yy) for _, yy in pr]
    assert got == list(range(len(pl) + len(pr)))
    assert all(np.array_equal(xx, x[int(yy)]) for xx, yy in pl)


def test_split_dataset_parts_smaller_than_the_whole():
    # Keras's size rules (its tf.data path; the torch path refuses sizes not summing to the
    # total): a float is rounded, an int is a count, the rest is left out
    for left, right, want in ((0.5, 0.3, (5, 3)), (3, 4, (3, 4)), (0.26, 2, (3, 2))):
        pl, pr = split_dataset(np.arange(10), left_size=left, right_size=right)
        assert (len(pl), len(pr)) == want
        assert [int(v) for v in pr] == list(range(want[0], want[0] + want[1]))


def test_split_dataset_shuffle_and_datasets():
    left, right = split_dataset(np.arange(100), left_size=0.7, shuffle=True, seed=1)
    a, b = np.array(list(left)), np.array(list(right))
    assert len(a) == 70 and len(b) == 30
    assert sorted(np.concatenate([a, b])) == list(range(100)) and not np.array_equal(
        a, np.arange(70))
    again, _ = split_dataset(np.arange(100), left_size=0.7, shuffle=True, seed=1)
    assert np.array_equal(np.array(list(again)), a)
    batched = left.batch(32)
    assert len(batched) == 3 and [len(v) for v in batched] == [32, 32, 6]
    ds = Dataset.from_arrays((np.arange(10.0), np.arange(10)), batch_size=4)
    l2, r2 = split_dataset(ds, right_size=3)
    assert (len(l2), len(r2)) == (7, 3)
    assert [float(v[0]) for v in r2] == [7.0, 8.0, 9.0]


@pytest.mark.parametrize("left, right, err", [
    (None, None, ValueError), (0, None, ValueError), (1.5, None, ValueError),
    (0.6, 0.6, ValueError), (8, 5, ValueError), ("half", None, TypeError), (10, None, ValueError),
])
def test_split_dataset_bad_sizes(left, right, err):
    with pytest.raises(err):
        split_dataset(np.arange(10), left_size=left, right_size=right)


def test_dataset_object():
    ds = Dataset.from_arrays((np.arange(10.0), np.arange(10) % 2), batch_size=4)
    assert len(ds) == ds.cardinality() == 3 and ds.num_samples == 10
    assert [x.shape for x, _ in ds] == [(4,), (4,), (2,)]
    assert [len(b) for b in ds.take(2).unbatch()] == [2] * 8
    doubled = ds.map(lambda x, y: (x * 2, y))
    assert list(next(iter(doubled))[0]) == [0.0, 2.0, 4.0, 6.0]
    assert list(next(iter(ds))[0]) == [0.0, 1.0, 2.0, 3.0]   # map returns a new dataset
    assert ds.element_spec[0][0] == (4,)
    sh = ds.shuffle(1000, seed=0)
    orders = [np.concatenate([x for x, _ in sh]) for _ in range(2)]
    assert sorted(orders[0]) == list(range(10)) and not np.array_equal(*orders)
    fixed = ds.shuffle(1000, seed=0, reshuffle_each_iteration=False)
    orders = [np.concatenate([x for x, _ in fixed]) for _ in range(2)]
    assert sorted(orders[0]) == list(range(10)) and np.array_equal(*orders)
    assert ds.prefetch(2) is ds
    with pytest.raises(ValueError, match="rows"):
        Dataset.from_arrays((np.arange(3), np.arange(4)))
    with pytest.raises(TypeError, match="fn"):
        ds.map(3)
    assert "10 samples" in repr(ds)


def test_cache_reads_each_sample_once(image_dir, monkeypatch):
    from pynn.utils import image_dataset_utils

    reads = []
    real = image_dataset_utils.load_image
    monkeypatch.setattr(image_dataset_utils, "load_image",
                        lambda p, c: reads.append(p) or real(p, c))
    ds = image_dataset_from_directory(image_dir, image_size=(3, 3), batch_size=5, seed=0,
                                      verbose=False)
    cached = ds.cache().shuffle(100, seed=1).prefetch(1)   # a usual Keras pipeline
    first = np.concatenate([x for x, _ in cached])
    second = np.concatenate([x for x, _ in cached])
    assert len(reads) == 12 and sorted(reads) == sorted(ds.file_paths)
    # the same images, in another order
    assert np.allclose(np.sort(first.ravel()), np.sort(second.ravel()))
    assert not np.array_equal(first, second)
    assert cached.class_names == ds.class_names


def test_to_categorical_is_there():
    assert np.array_equal(pynn.utils.to_categorical([1, 0], 2), [[0, 1], [1, 0]])


def test_text_file_that_is_not_utf8(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    ds = text_dataset_from_directory(tmp_path, shuffle=False, verbose=False)
    with pytest.raises(ValueError, match="latin1.txt: not UTF-8"):
        next(iter(ds))
