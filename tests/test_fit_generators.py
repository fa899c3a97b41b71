"""fit / evaluate / predict on streamed data: Python generators, PyDataset objects (pynn's
and Keras's own class) and pynn.utils.Dataset, against the same data given as arrays."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import pynn
from pynn.utils import Dataset, PyDataset

N, D, B = 60, 5, 12


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    w = rng.uniform(0.1, 2.0, size=N).astype(np.float32)
    return x, y, w


def model(seed=0):
    pynn.utils.set_random_seed(seed)
    m = pynn.Sequential([pynn.layers.Dense(7, activation="relu"),
                         pynn.layers.Dense(2, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def batches(*arrays, batch_size=B):
    for start in range(0, arrays[0].shape[0], batch_size):
        yield tuple(a[start:start + batch_size] for a in arrays)


def forever(*arrays):
    while True:
        yield from batches(*arrays)


class Batches(PyDataset):
    def __init__(self, *arrays, **kwargs):
        super().__init__(**kwargs)
        self.arrays = arrays
        self.calls = []
        self.epochs_ended = 0

    def __len__(self):
        return math.ceil(self.arrays[0].shape[0] / B)

    def __getitem__(self, i):
        self.calls.append(i)
        return tuple(a[i * B:(i + 1) * B] for a in self.arrays)

    def on_epoch_end(self):
        self.epochs_ended += 1


def same_weights(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))


def test_generator_fit_equals_array_fit_bitwise(data):
    """The same batches in the same order: the same engine steps, so the same weights."""
    x, y, _ = data
    ref = model()
    h_ref = ref.fit(x, y, batch_size=B, epochs=3, shuffle=False, verbose=0)
    m = model()
    h = m.fit(forever(x, y), steps_per_epoch=N // B, epochs=3, verbose=0)
    assert same_weights(ref, m)
    assert h.history == h_ref.history


def test_sample_weights_in_batches_equal_array_sample_weight(data):
    x, y, w = data
    ref = model()
    ref.fit(x, y, sample_weight=w, batch_size=B, epochs=2, shuffle=False, verbose=0)
    m = model()
    m.fit(Batches(x, y, w), epochs=2, shuffle=False, verbose=0)
    assert same_weights(ref, m)


def test_class_weight_with_a_generator_equals_arrays(data):
    x, y, _ = data
    cw = {0: 0.3, 1: 2.0}
    ref = model()
    ref.fit(x, y, class_weight=cw, batch_size=B, epochs=2, shuffle=False, verbose=0)
    m = model()
    m.fit(forever(x, y), class_weight=cw, steps_per_epoch=N // B, epochs=2, verbose=0)
    assert same_weights(ref, m)


def test_dataset_fit_evaluate_predict(data):
    x, y, _ = data
    ref = model()
    ref.fit(x, y, batch_size=B, epochs=2, shuffle=False, verbose=0)
    m = model()
    ds = Dataset.from_arrays((x, y), batch_size=B)
    m.fit(ds, epochs=2, verbose=0, shuffle=True)   # a Dataset keeps its own order
    assert same_weights(ref, m)
    assert m.evaluate(ds, verbose=0) == ref.evaluate(x, y, batch_size=B, verbose=0)
    np.testing.assert_array_equal(m.predict(Dataset.from_arrays(x, batch_size=7), verbose=0),
                                  ref.predict(x, verbose=0))
    # predict ignores the targets of (x, y) batches, as Keras does
    assert m.predict(ds, verbose=0).shape == (N, 2)


def test_pydataset_epochs_shuffle_and_hooks(data):
    x, y, _ = data
    seq = Batches(x, y, workers=4, use_multiprocessing=True, max_queue_size=3)
    assert (seq.workers, seq.use_multiprocessing, seq.max_queue_size) == (4, True, 3)
    m = model()
    m.build((None, D))   # (an unbuilt model reads batch 0 once to learn the input shape)
    m.fit(seq, epochs=2, verbose=0, validation_data=Batches(x, y))
    assert seq.epochs_ended == 2
    # fit's shuffle=True visits a PyDataset's batches in a new order at each epoch
    first, second = seq.calls[:5], seq.calls[5:10]
    assert sorted(first) == sorted(second) == list(range(5)) and first != second
    seq2 = Batches(x, y)
    model().fit(seq2, epochs=2, shuffle=False, verbose=0)
    assert seq2.calls == [0] + list(range(5)) * 2


def test_keras_pydataset_subclass_is_accepted(data):
    keras = pytest.importorskip("keras")
    x, y, _ = data

    class KerasBatches(keras.utils.PyDataset):
        def __len__(self):
            return N // B

        def __getitem__(self, i):
            return x[i * B:(i + 1) * B], y[i * B:(i + 1) * B]

    ref = model()
    ref.fit(x, y, batch_size=B, epochs=1, shuffle=False, verbose=0)
    m = model()
    m.fit(KerasBatches(), epochs=1, shuffle=False, verbose=0)
    assert same_weights(ref, m)


def test_endless_pydataset_needs_steps(data):
    x, y, _ = data

    class Endless(PyDataset):
        def __getitem__(self, i):
            j = i % (N // B)
            return x[j * B:(j + 1) * B], y[j * B:(j + 1) * B]

    assert Endless().num_batches is None
    with pytest.raises(ValueError, match="steps_per_epoch"):
        model().fit(Endless(), epochs=1, verbose=0)
    h = model().fit(Endless(), steps_per_epoch=3, epochs=2, verbose=0)
    assert len(h.history["loss"]) == 2


def test_generator_validation_and_evaluate(data):
    x, y, _ = data
    m = model()
    h = m.fit(forever(x, y), steps_per_epoch=5, epochs=2, verbose=0,
              validation_data=forever(x, y), validation_steps=5)
    want = m.evaluate(x, y, batch_size=B, verbose=0, return_dict=True)
    # the same weights, the same batches: the last epoch's validation is this evaluation
    assert h.history["val_loss"][-1] == want["loss"]
    got = m.evaluate(batches(x, y), verbose=0, return_dict=True)
    assert got == want
    assert m.evaluate(forever(x, y), steps=5, verbose=0, return_dict=True) == want
    # fit on arrays with streamed validation data
    h2 = model().fit(x, y, batch_size=B, epochs=1, verbose=0,
                     validation_data=Dataset.from_arrays((x, y), batch_size=B))
    assert set(h2.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_validation_values_are_the_epoch_end_evaluation(data):
    x, y, _ = data
    m = model()
    seen = []
    cb = pynn.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(
        m.evaluate(x, y, batch_size=B, verbose=0)))
    h = m.fit(forever(x, y), steps_per_epoch=5, epochs=2, verbose=0, callbacks=[cb],
              validation_data=batches(x, y))
    # a one-pass generator validates once: the first epoch; then it has run dry
    assert h.history["val_loss"] == [seen[0][0]] and len(h.history["loss"]) == 2


def test_generator_running_out_stops_training_with_a_warning(data):
    x, y, _ = data
    m = model()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = m.fit(batches(x, y), steps_per_epoch=3, epochs=5, verbose=0)
    # 5 batches: epoch 1 takes 3, epoch 2 gets the last 2 and stops
    assert len(h.history["loss"]) == 2 and m.optimizer.iterations == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = model().fit(batches(x, y), epochs=1, verbose=0)   # one full pass: no warning
    assert len(h.history["loss"]) == 1


def test_multi_input_model_from_a_generator(data):
    x, y, _ = data
    a = pynn.Input(shape=(2,), name="a")
    b = pynn.Input(shape=(3,), name="b")
    out = pynn.layers.Dense(2, activation="softmax")(pynn.layers.Concatenate()([a, b]))
    pynn.utils.set_random_seed(0)
    m = pynn.Model([a, b], out)
    m.compile("sgd", "sparse_categorical_crossentropy")

    def gen():
        for xb, yb in batches(x, y):
            yield {"a": xb[:, :2], "b": xb[:, 2:]}, yb

    m.fit(gen(), epochs=1, verbose=0)
    assert m.optimizer.iterations == 5
    assert m.predict(((xb[:, :2], xb[:, 2:]),) for xb, _ in batches(x, y)).shape == (N, 2)


def test_model_built_from_the_first_batch(data):
    x, y, _ = data
    m = pynn.Sequential([pynn.layers.Dense(2, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(batches(x, y), epochs=1, verbose=0)
    assert m.get_weights()[0].shape == (D, 2)
    m2 = pynn.Sequential([pynn.layers.Dense(3)])
    assert m2.predict(batches(x), verbose=0).shape == (N, 3)


@pytest.mark.parametrize("call, match", [
    (lambda m, x, y, w: m.fit(batches(x, y), y, verbose=0), "y: not allowed"),
    (lambda m, x, y, w: m.fit(batches(x, y), sample_weight=w, verbose=0), "sample_weight"),
    (lambda m, x, y, w: m.fit(batches(x, y), validation_split=0.2, verbose=0),
     "validation_split"),
    (lambda m, x, y, w: m.fit(Dataset.from_arrays((x, y)), verbose=0), "unbatched"),
    (lambda m, x, y, w: m.fit(batches(x), verbose=0), "no targets"),
    (lambda m, x, y, w: m.fit(iter([]), verbose=0), "no batch"),
    (lambda m, x, y, w: m.evaluate(iter([]), verbose=0), "no batch"),
    (lambda m, x, y, w: m.fit(batches(x, y, w), class_weight={0: 1.0}, verbose=0),
     "class_weight"),
    (lambda m, x, y, w: m.fit(batches(x, y), steps_per_epoch=0, verbose=0), "steps_per_epoch"),
    (lambda m, x, y, w: m.evaluate(batches(x, y), y, verbose=0), "y: not allowed"),
    (lambda m, x, y, w: m.fit(iter([(x, y, w, w)]), verbose=0), "tuple of 4"),
    (lambda m, x, y, w: m.fit(batches(x[:, :3], y), verbose=0), "samples of shape"),
])
def test_bad_streamed_input(data, call, match):
    x, y, w = data
    m = model()
    m.build((None, D))
    with pytest.raises(ValueError, match=match):
        call(m, x, y, w)


def test_pydataset_base_class_must_be_completed():
    with pytest.raises(NotImplementedError, match="__getitem__"):
        PyDataset()[0]
    with pytest.raises(ValueError, match="workers"):
        PyDataset(workers=0)


def test_streamed_training_is_bitwise_identical_on_1_and_2_threads(data):
    x, y, _ = data
    before = pynn.get_num_threads()
    weights = []
    try:
        for threads in (1, 2):
            pynn.set_num_threads(threads)
            m = model()
            m.fit(Dataset.from_arrays((x, y), batch_size=B, shuffle=True, seed=4), epochs=2,
                  verbose=0)
            weights.append(m.get_weights())
    finally:
        pynn.set_num_threads(before)
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
