"""Files: a process killed in the middle of `save` leaves the previous file intact and
loadable; ModelCheckpoint's files are always loadable (also when the run is killed); a
diverging learning rate is reported and never saved as NaN weights."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import rel_helpers

import pynn
from pynn import layers as L
from pynn.models import load_model

WIDTH = 1024  # Input(1024) -> Dense(2048) -> Dense(10): 2.1 M parameters, ~25 MB a file
                # with Adam's two slots, so that a save takes long enough to be interrupted


def _big_model():
    m = pynn.Sequential([pynn.Input((WIDTH,)), L.Dense(2048, activation="relu"),
                         L.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.build()
    return m


def _saver(path):
    """Child: saves versions 1, 2, 3, ... of a model to `path`; every weight of version k
    is k, so the parent can tell a complete version from a mix."""
    m = _big_model()
    shapes = [w.shape for w in m.get_weights()]
    for k in range(1, 10**6):
        m.set_weights([np.full(s, float(k), np.float32) for s in shapes])
        print("begin", k, flush=True)
        m.save(path)
        print("end", k, flush=True)


def _trainer(path):
    """Child: trains with a checkpoint written after every batch, for ever."""
    pynn.utils.set_random_seed(0)
    m = pynn.Sequential([pynn.Input((WIDTH,)), L.Dense(512, activation="relu"),
                         L.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, WIDTH)).astype(np.float32)
    y = rng.integers(0, 10, 256)
    ck = pynn.callbacks.ModelCheckpoint(path, save_freq=1)
    announce = pynn.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: print("batch", b, flush=True))
    m.fit(x, y, epochs=10**6, batch_size=32, verbose=0, callbacks=[ck, announce])


def _spawn(func, path):
    code = (f"import sys; sys.path.insert(0, {rel_helpers.HERE!r}); import test_files; "
            f"test_files.{func}({path!r})")
    return subprocess.Popen([sys.executable, "-P", "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=rel_helpers.child_env())


def _read_until(proc, predicate, timeout=120):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child ended: {proc.stderr.read()[-2000:]}")
        lines.append(line.split())
        if predicate(lines):
            return lines
    raise TimeoutError(lines[-5:])


def test_killing_save_midway_leaves_the_previous_file(tmp_path):
    rng = random.Random(20261127)
    path = str(tmp_path / "m.safetensors")
    mid_write = 0
    trials = 0
    # At least 5 kills, and more (up to 20) until one has landed inside a save: whether a
    # random moment falls inside one depends on the machine's timing.
    for trial in range(20):
        if trial >= 5 and mid_write:
            break
        trials += 1
        proc = _spawn("_saver", path)
        try:
            # Let two versions complete, timing them, then kill at a random moment of the
            # following saves (up to twice a save's duration).
            t0 = time.monotonic()
            lines = _read_until(proc, lambda ls: ls[-1] == ["end", "2"])
            save_time = (time.monotonic() - t0) / 2
            time.sleep(rng.uniform(0, 2 * save_time))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # the kill can cut the child's last line short ("begin" without its number): skip it
        lines += [f for f in (ln.split() for ln in out.splitlines()) if len(f) == 2]
        last_end = max(int(k) for tag, k in lines if tag == "end")
        last_begin = max(int(k) for tag, k in lines if tag == "begin")
        mid_write += last_begin > last_end
        model = load_model(path)  # never a partial file
        values = {float(v) for w in model.get_weights() for v in np.unique(w)}
        assert len(values) == 1, f"trial {trial}: a mix of versions {sorted(values)[:5]}"
        # what is on disk is the last completed version, or the one whose rename had already
        # happened when the kill came (its "end" not printed yet)
        assert values.pop() in (last_end, last_begin)
        assert model.optimizer.iterations == 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "m.safetensors"]
    # A killed save may leave its temporary file (nothing runs after SIGKILL); it never takes
    # the target's name.
    assert all(n.startswith(".pynn-") and n.endswith(".tmp") for n in leftovers), leftovers
    print(f"\nkills: {trials}, of which mid-write: {mid_write}")
    assert mid_write >= 1, "no kill landed during a save: the test did not test anything"


def test_checkpoint_of_a_killed_training_run_is_loadable(tmp_path):
    rng = random.Random(7)
    path = str(tmp_path / "ck.safetensors")
    for _trial in range(3):
        proc = _spawn("_trainer", path)
        try:
            _read_until(proc, lambda ls: ls[-1][0] == "batch" and len(ls) >= 3)
            time.sleep(rng.uniform(0, 0.5))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        model = load_model(path)
        assert model.optimizer.iterations >= 1
        assert all(np.isfinite(w).all() for w in model.get_weights())


def _data(n=96, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, 3, n)


def _small(lr=0.01):
    pynn.utils.set_random_seed(1)
    m = pynn.Sequential([pynn.Input((6,)), L.Dense(8, activation="relu"),
                         L.Dense(3, activation="softmax")])
    m.compile(pynn.optimizers.SGD(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


@pytest.mark.parametrize("kwargs", [dict(), dict(save_best_only=True, monitor="loss"),
                                    dict(save_weights_only=True), dict(save_freq=2)])
def test_model_checkpoint_files_are_always_loadable(tmp_path, kwargs):
    x, y = _data()
    m = _small()
    pattern = str(tmp_path / "ck-{epoch:02d}.safetensors")
    m.fit(x, y, epochs=4, batch_size=16, verbose=0,
          callbacks=[pynn.callbacks.ModelCheckpoint(pattern, **kwargs)])
    files = sorted(tmp_path.iterdir())
    assert files, "no checkpoint written"
    assert all(not p.name.startswith(".") for p in files)  # no temporary file left
    for p in files:
        if kwargs.get("save_weights_only"):
            fresh = _small()
            fresh.load_weights(p)
            weights = fresh.get_weights()
        else:
            weights = load_model(p).get_weights()
        assert all(np.isfinite(w).all() for w in weights)
    last = files[-1]
    if kwargs.get("save_weights_only"):
        fresh = _small()
        fresh.load_weights(last)
        final = fresh.get_weights()
    else:
        final = load_model(last).get_weights()
    if not kwargs.get("save_best_only") and kwargs.get("save_freq", "epoch") == "epoch":
        assert all(np.array_equal(a, b) for a, b in zip(final, m.get_weights()))


def test_diverging_learning_rate_is_reported_and_not_saved(tmp_path):
    x, y = _data()
    m = _small(lr=1e8)
    with pytest.warns(RuntimeWarning, match="diverged"):
        m.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert not all(np.isfinite(w).all() for w in m.get_weights())
    with pytest.raises(ValueError, match="NaN"):
        m.save(tmp_path / "m.safetensors")
    assert not os.listdir(tmp_path)


def test_terminate_on_nan_stops_a_diverging_run(tmp_path, capsys):
    x, y = _data()
    m = _small(lr=1e8)
    with pytest.warns(RuntimeWarning, match="diverged"):  # fit reports it too
        history = m.fit(x, y, epochs=5, batch_size=16, verbose=0,
                        callbacks=[pynn.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1  # stopped in the first epoch
    assert m.optimizer.iterations < 5 * 6
    assert "Invalid loss" in capsys.readouterr().out
    with pytest.raises(ValueError, match="NaN"):
        m.save(tmp_path / "m.safetensors")


def test_checkpoint_of_a_run_that_diverges_later_keeps_the_last_good_file(tmp_path):
    x, y = _data()
    m = _small(lr=0.01)
    path = tmp_path / "ck.safetensors"
    schedule = pynn.callbacks.LearningRateScheduler(lambda epoch, lr: 0.01 if epoch < 1 else 1e8)
    good = []
    keep = pynn.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: good.append(m.get_weights()) if epoch == 0 else None)
    outcome = "returned"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            m.fit(x, y, epochs=3, batch_size=16, verbose=0,
                  callbacks=[schedule, keep, pynn.callbacks.ModelCheckpoint(str(path))])
        except ValueError as exc:  # ModelCheckpoint's save refused the NaN weights
            assert "NaN" in str(exc)
            outcome = "raised"
    # Reported one way or the other: an exception from the refused save, or fit's warning.
    assert outcome == "raised" or any("diverged" in str(w.message) for w in caught)
    back = load_model(path)
    assert all(np.array_equal(a, b) for a, b in zip(back.get_weights(), good[0]))
