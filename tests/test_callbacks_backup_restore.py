"""BackupAndRestore: an interrupted fit resumes at the right epoch with the optimizer's state,
ending where an uninterrupted fit ends."""
from __future__ import annotations

import os

import numpy as np
import pytest

import pynn
from pynn.callbacks import BackupAndRestore, Callback
from pynn.utils import Dataset

N, B = 48, 8


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 2] > 0).astype(np.int32)
    return x, y


def model():
    pynn.utils.set_random_seed(7)
    m = pynn.Sequential([pynn.layers.Dense(6, activation="tanh"),
                         pynn.layers.Dense(2, activation="softmax")])
    m.compile(pynn.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
              metrics=["accuracy"])
    m.build((None, 4))
    return m


class Crash(Callback):
    """Raises at the end of an epoch (or batch), as a crash in the middle of training."""

    def __init__(self, epoch=None, batch=None, exc=RuntimeError):
        super().__init__()
        self.epoch, self.batch, self.exc = epoch, batch, exc
        self.current = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise self.exc("crash")

    def on_train_batch_end(self, batch, logs=None):
        if self.batch is not None and (self.current, batch) == self.batch:
            raise self.exc("crash")


class Epochs(Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)


def same_weights(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))


@pytest.mark.parametrize("stream", [False, True])
def test_resume_after_a_crash_equals_an_uninterrupted_run(data, tmp_path, stream):
    x, y = data

    def train_data():
        return (Dataset.from_arrays((x, y), batch_size=B),) if stream else (x, y)

    kw = dict(epochs=5, verbose=0) if stream else dict(epochs=5, batch_size=B, shuffle=False,
                                                       verbose=0)
    ref = model()
    ref.fit(*train_data(), **kw)

    backup_dir = tmp_path / "backup"
    m = model()
    with pytest.raises(RuntimeError, match="crash"):
        m.fit(*train_data(), callbacks=[BackupAndRestore(backup_dir), Crash(epoch=2)], **kw)
    assert os.path.exists(backup_dir / "latest.safetensors")   # kept after the crash
    iterations_at_crash = m.optimizer.iterations

    fresh = model()   # a new process: new model, same code
    epochs = Epochs()
    hist = fresh.fit(*train_data(), callbacks=[BackupAndRestore(backup_dir), epochs], **kw)
    assert epochs.seen == [3, 4]            # epochs 0-2 finished before the crash
    assert len(hist.history["loss"]) == 2
    assert iterations_at_crash == 3 * N // B
    assert fresh.optimizer.iterations == 5 * N // B
    # weights and Adam's moments came back exactly, so the end state is the same
    assert same_weights(ref, fresh)
    assert not os.path.exists(backup_dir)   # delete_checkpoint=True after a normal end


def test_restores_the_optimizer_state_and_learning_rate(data, tmp_path):
    x, y = data
    m = model()
    with pytest.raises(RuntimeError):
        m.fit(x, y, epochs=3, batch_size=B, verbose=0,
              callbacks=[BackupAndRestore(tmp_path), pynn.callbacks.LearningRateScheduler(
                  lambda epoch, lr: 0.005), Crash(epoch=0)])
    state = m.optimizer.get_state()
    fresh = model()
    fresh.fit(x, y, epochs=1, verbose=0, callbacks=[BackupAndRestore(tmp_path)])
    # epochs=1 and the backup says one epoch is done: nothing left to train
    restored = fresh.optimizer.get_state()
    assert restored["iterations"] == state["iterations"] == N // B
    assert restored["learning_rate"] == pytest.approx(0.005, rel=1e-6)
    # (slots by position: the fresh model's layers have other automatic names)
    for mine, theirs in zip(state["slots"].values(), restored["slots"].values()):
        assert len(mine) == len(theirs) == 2   # Adam's two moments
        for a, b in zip(mine, theirs):
            np.testing.assert_array_equal(a, b)
    assert same_weights(m, fresh)


def test_batch_save_freq_resumes_the_interrupted_epoch(data, tmp_path):
    x, y = data
    m = model()
    with pytest.raises(RuntimeError):
        # 6 batches per epoch; backups after batches 4 (epoch 0), 8 and 12 (epoch 1),
        # then a crash at batch 3 of epoch 2, i.e. the 15th step
        m.fit(x, y, epochs=4, batch_size=B, verbose=0,
              callbacks=[BackupAndRestore(tmp_path, save_freq=4), Crash(batch=(2, 2))])
    assert m.optimizer.iterations == 15
    fresh = model()
    epochs = Epochs()
    fresh.fit(x, y, epochs=4, batch_size=B, verbose=0,
              callbacks=[BackupAndRestore(tmp_path, save_freq=4), epochs])
    # the last backup was taken during epoch 1 (after 12 steps): epoch 1 is run again
    assert epochs.seen == [1, 2, 3]
    assert fresh.optimizer.iterations == 12 + 3 * 6


def test_ctrl_c_keeps_the_backup_and_no_backup_means_a_fresh_start(data, tmp_path):
    x, y = data
    with pytest.raises(KeyboardInterrupt):
        model().fit(x, y, epochs=3, verbose=0, callbacks=[
            BackupAndRestore(tmp_path / "b"), Crash(epoch=1, exc=KeyboardInterrupt)])
    assert os.path.exists(tmp_path / "b" / "latest.safetensors")
    epochs = Epochs()
    model().fit(x, y, epochs=2, verbose=0,
                callbacks=[BackupAndRestore(tmp_path / "empty", delete_checkpoint=False),
                           epochs])
    assert epochs.seen == [0, 1] and os.path.exists(tmp_path / "empty" / "latest.safetensors")


def test_double_checkpoint_falls_back_to_the_previous_backup(data, tmp_path_factory):
    x, y = data
    tmp_path = tmp_path_factory.mktemp("backup")
    with pytest.raises(RuntimeError):
        model().fit(x, y, epochs=4, verbose=0, callbacks=[
            BackupAndRestore(tmp_path, double_checkpoint=True), Crash(epoch=2)])
    assert os.path.exists(tmp_path / "latest.safetensors.bkp")
    (tmp_path / "latest.safetensors").write_bytes(b"garbage, as after a crash mid-write")
    epochs = Epochs()
    model().fit(x, y, epochs=4, verbose=0,
                callbacks=[BackupAndRestore(tmp_path, double_checkpoint=True), epochs])
    assert epochs.seen == [2, 3]   # the previous backup (after epoch 1) was used
    assert not tmp_path.exists()
    broken = tmp_path_factory.mktemp("broken")
    (broken / "latest.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="latest.safetensors"):
        model().fit(x, y, epochs=1, verbose=0, callbacks=[BackupAndRestore(broken)])


@pytest.mark.parametrize("kwargs, match", [
    (dict(backup_dir=""), "backup_dir"),
    (dict(backup_dir=None), "backup_dir"),
    (dict(backup_dir="d", save_freq=0), "save_freq"),
    (dict(backup_dir="d", save_freq="batch"), "save_freq"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BackupAndRestore(**kwargs)
