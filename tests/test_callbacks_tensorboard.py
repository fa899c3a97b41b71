"""TensorBoard callback: the event files, read back with TensorBoard's own EventAccumulator,
hold the values fit logged (Keras's tags and run folders)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import pynn
from pynn.callbacks import TensorBoard


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    return x, y


def model():
    pynn.utils.set_random_seed(1)
    m = pynn.Sequential([pynn.layers.Dense(4, activation="relu"),
                         pynn.layers.Dense(2, activation="softmax")])
    m.compile(pynn.optimizers.Adam(0.02), "sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def read(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_epoch_scalars_equal_the_history(data, tmp_path):
    x, y = data
    m = model()
    hist = m.fit(x, y, epochs=3, batch_size=8, validation_split=0.25, verbose=0,
                 callbacks=[TensorBoard(tmp_path)])
    train, val = read(tmp_path / "train"), read(tmp_path / "validation")
    assert set(train.Tags()["scalars"]) == {"epoch_loss", "epoch_accuracy",
                                            "epoch_learning_rate"}
    assert set(val.Tags()["scalars"]) == {"epoch_loss", "epoch_accuracy"}
    for acc, prefix in ((train, ""), (val, "val_")):
        for name in ("loss", "accuracy"):
            got = scalars(acc, f"epoch_{name}")
            assert [s for s, _ in got] == [0, 1, 2]
            # event files store float32
            np.testing.assert_allclose([v for _, v in got], hist.history[prefix + name],
                                       rtol=1e-6)
    assert [v for _, v in scalars(train, "epoch_learning_rate")] == pytest.approx([0.02] * 3)
    assert train.Tags()["histograms"] == []   # histogram_freq=0


def test_histograms_batches_and_evaluation(data, tmp_path):
    x, y = data
    m = model()
    tb = TensorBoard(tmp_path, histogram_freq=2, update_freq=2, write_steps_per_second=True)
    m.fit(x, y, epochs=3, batch_size=10, verbose=0, callbacks=[tb])
    train = read(tmp_path / "train")
    tags = set(train.Tags()["histograms"])
    from pynn.models.state import get_weights_by_path

    paths = list(get_weights_by_path(m))   # e.g. "dense_3/kernel"
    assert tags == {f"{p}/histogram" for p in paths} and len(tags) == 4
    kernel_tag = sorted(t for t in tags if t.endswith("kernel/histogram"))[0]
    events = train.Histograms(kernel_tag)
    assert [e.step for e in events] == [0, 2]          # epochs 0 and 2
    last = events[-1].histogram_value
    kernel = m.get_weights()[0]
    assert last.num == kernel.size and sum(last.bucket) == kernel.size
    assert last.min == pytest.approx(kernel.min()) and last.max == pytest.approx(kernel.max())
    assert last.sum == pytest.approx(float(kernel.sum()), rel=1e-5)
    # batch values every 2 of the 12 steps (4 per epoch), steps counted across epochs
    assert [s for s, _ in scalars(train, "batch_loss")] == [2, 4, 6, 8, 10, 12]
    assert "epoch_steps_per_second" in train.Tags()["scalars"]

    logs = m.evaluate(x, y, verbose=0, callbacks=[TensorBoard(tmp_path)], return_dict=True)
    val = read(tmp_path / "validation")
    got = scalars(val, "evaluation_loss_vs_iterations")
    assert got[-1][0] == 12 and got[-1][1] == pytest.approx(logs["loss"], rel=1e-6)


def test_streamed_fit_with_validation(data, tmp_path):
    x, y = data
    ds = pynn.utils.Dataset.from_arrays((x, y), batch_size=8)
    hist = model().fit(ds, validation_data=ds, epochs=2, verbose=0,
                       callbacks=[TensorBoard(tmp_path, update_freq="batch")])
    val = read(tmp_path / "validation")
    np.testing.assert_allclose([v for _, v in scalars(val, "epoch_loss")],
                               hist.history["val_loss"], rtol=1e-6)
    assert len(scalars(read(tmp_path / "train"), "batch_loss")) == 10


def test_missing_tensorboard_names_the_extra(monkeypatch):
    for name in list(sys.modules):
        if name == "tensorboard" or name.startswith("tensorboard."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)   # import tensorboard -> ImportError
    with pytest.raises(ImportError, match=r"pynn\[tensorboard\]"):
        TensorBoard("logs")


@pytest.mark.parametrize("kwargs, match", [
    (dict(histogram_freq=-1), "histogram_freq"),
    (dict(update_freq="sometimes"), "update_freq"),
    (dict(update_freq=0), "update_freq"),
    (dict(profile_batch=3), "profile_batch"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TensorBoard("logs", **kwargs)
    with pytest.raises(TypeError, match="log_dir"):
        TensorBoard(3)
