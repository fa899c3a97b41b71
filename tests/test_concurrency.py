"""Concurrency: pynn called from several Python threads gives the sequential results bitwise,
and does not deadlock next to threadpoolctl, joblib's loky workers, forked workers or NumPy's
own BLAS threads.

Every scenario runs in a child process with a timeout (rel_helpers), so a deadlock fails its
test instead of hanging the suite.

Scope: each fit draws its shuffling seed from pynn's global stream once, when it starts; two
fits started concurrently with shuffle=True therefore get the seeds in a racy order. The
training scenarios use shuffle=False and seeded Dropout, which is what makes "equal to the
sequential run" a well-defined property.
"""
from __future__ import annotations

import threading

import numpy as np
import rel_helpers


def _model(seed, n_in=64, dropout=True):
    import pynn
    from pynn import layers as L

    pynn.utils.set_random_seed(seed)
    stack = [pynn.Input((n_in,)), L.Dense(96, activation="relu"), L.BatchNormalization()]
    if dropout:
        stack.append(L.Dropout(0.2, seed=seed))
    stack.append(L.Dense(10, activation="softmax"))
    m = pynn.Sequential(stack)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.build()
    return m


def _data(seed, n=768, d=64):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, 10, n)


def _run_threads(fns, timeout=60):
    results, errors = [None] * len(fns), []
    barrier = threading.Barrier(len(fns))

    def wrap(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=wrap, args=(i, fn), daemon=True) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if any(t.is_alive() for t in threads):
        raise TimeoutError("a thread did not finish")
    if errors:
        raise RuntimeError(errors)
    return results


def _weights_equal(a, b):
    return all(x.tobytes() == y.tobytes() for x, y in zip(a, b)) and len(a) == len(b)


# --- scenarios (run in children) ---------------------------------------------------------------

def predict_four_threads():
    m = _model(1)
    x, y = _data(2)
    m.fit(x, y, epochs=1, batch_size=64, verbose=0)
    chunks = [x[i::4] for i in range(4)] + [x]
    sequential = [m.predict(c, verbose=0) for c in chunks]
    for _ in range(5):
        parallel = _run_threads([lambda c=c: [m.predict(c, verbose=0) for _ in range(3)]
                                 for c in chunks])
        for seq, par in zip(sequential, parallel):
            assert all(np.array_equal(seq, p) for p in par)
    # predict_on_batch, __call__ and evaluate share the network too
    outs = _run_threads([lambda: m(x[:100]), lambda: m.predict_on_batch(x[:100]),
                         lambda: m.evaluate(x, y, verbose=0), lambda: m.predict(x[:100], verbose=0)])
    assert np.array_equal(outs[0], sequential[4][:100]) and np.array_equal(outs[1], outs[0])
    assert np.array_equal(outs[3], outs[0])
    assert outs[2] == m.evaluate(x, y, verbose=0)
    return {"predictions": 5 * 15 + 4}


def predicts_run_side_by_side():
    # A long predict holds the model's lock (shared) for its whole length; a short predict
    # started meanwhile on the same model must not queue behind it.
    import time

    import pynn
    from pynn import layers as L

    pynn.utils.set_random_seed(3)
    m = pynn.Sequential([pynn.Input((64,)), L.Dense(1024, activation="relu"),
                         L.Dense(1024, activation="relu"), L.Dense(10, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    m.build()
    big = np.random.default_rng(4).normal(size=(16384, 64)).astype(np.float32)
    row = big[:1].copy()
    want_row = m.predict(row, verbose=0)
    started, ends = threading.Event(), {}

    def long_call():
        started.set()
        m.predict(big, verbose=0, batch_size=1024)
        ends["long"] = time.perf_counter()

    def short_calls():
        started.wait()
        time.sleep(0.05)  # the long call is under way
        for _ in range(5):
            assert np.array_equal(m.predict(row, verbose=0), want_row)
        ends["short"] = time.perf_counter()

    _run_threads([long_call, short_calls], timeout=120)
    assert ends["short"] < ends["long"], ends
    return {"short_finished_first_by_s": ends["long"] - ends["short"]}


def train_two_models():
    xa, ya = _data(3)
    xb, yb = _data(4)

    ma, mb = _model(10), _model(20)
    sa, sb = _model(10), _model(20)  # same seeds: same initial weights
    assert _weights_equal(ma.get_weights(), sa.get_weights())
    sa.fit(xa, ya, epochs=2, batch_size=32, shuffle=False, verbose=0)
    sb.fit(xb, yb, epochs=2, batch_size=32, shuffle=False, verbose=0)
    _run_threads([lambda: ma.fit(xa, ya, epochs=2, batch_size=32, shuffle=False, verbose=0),
                  lambda: mb.fit(xb, yb, epochs=2, batch_size=32, shuffle=False, verbose=0)])
    assert _weights_equal(ma.get_weights(), sa.get_weights())
    assert _weights_equal(mb.get_weights(), sb.get_weights())
    assert not _weights_equal(ma.get_weights(), _model(10).get_weights())  # it did train
    return {"ok": True}


def train_while_predicting_same_model():
    # Training and predicting on one model from two threads is serialised by the network's
    # lock: every prediction is one made between two steps, never a torn mix.
    m = _model(5, dropout=False)
    x, y = _data(6)
    probe = x[:50]
    seen = []

    def predictor():
        for _ in range(40):
            seen.append(m.predict(probe, verbose=0))

    _run_threads([lambda: m.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0),
                  predictor])
    assert all(np.isfinite(p).all() and np.allclose(p.sum(1), 1, atol=1e-5) for p in seen)
    return {"predictions": len(seen)}


def next_to_threadpoolctl():
    from threadpoolctl import threadpool_info, threadpool_limits

    import pynn

    libs = {i["internal_api"] for i in threadpool_info()}
    assert "pynn" in libs, libs  # pynn's worker pool is visible to threadpoolctl
    m = _model(7)
    x, y = _data(8)
    before = m.predict(x, verbose=0)
    with threadpool_limits(limits=1):
        assert pynn.get_num_threads() == 1
        one = m.predict(x, verbose=0)
        results = _run_threads([lambda: m.predict(x, verbose=0) for _ in range(3)])
    with threadpool_limits(limits=1, user_api="openmp"):
        m.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    assert np.array_equal(before, one) and all(np.array_equal(one, r) for r in results)
    return {"libs": sorted(libs)}


def next_to_numpy_blas_threads():
    m = _model(9)
    ref = _model(9)
    x, y = _data(10)
    ref.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    a = np.random.default_rng(0).normal(size=(600, 600))

    def blas():
        acc = 0.0
        for _ in range(10):
            acc += float((a @ a).sum())
        return acc

    expected = blas()
    got = _run_threads([lambda: m.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0),
                        blas, blas])
    assert got[1] == got[2] == expected
    assert _weights_equal(m.get_weights(), ref.get_weights())
    return {"ok": True}


def _loky_task(seed):
    import numpy as np

    import pynn

    # Seeded initializers, not set_random_seed: the global stream is shared by the threads of
    # joblib's threading backend.
    init = pynn.initializers.GlorotUniform
    m = pynn.Sequential([pynn.Input((8,)),
                         pynn.layers.Dense(16, activation="relu", kernel_initializer=init(seed=seed)),
                         pynn.layers.Dense(3, activation="softmax",
                                           kernel_initializer=init(seed=seed + 100))])
    m.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    m.fit(x, rng.integers(0, 3, 256), epochs=2, batch_size=32, shuffle=False, verbose=0)
    return [w.tobytes() for w in m.get_weights()]


def next_to_joblib_workers():
    from joblib import Parallel, delayed

    _model(11).fit(*_data(12), epochs=1, verbose=0)  # the parent's worker pool is up
    local = [_loky_task(s) for s in (1, 2, 3, 4)]
    for backend in ("loky", "threading"):
        out = Parallel(n_jobs=2, backend=backend, timeout=120)(delayed(_loky_task)(s)
                                                                 for s in (1, 2, 3, 4))
        assert out == local, backend
    return {"ok": True}


def in_a_forked_child():
    # A fork after the worker pool is up, as multiprocessing's default start method on Linux
    # does: the child must still be able to train and predict.
    import multiprocessing as mp

    _model(13).fit(*_data(14), epochs=1, verbose=0)
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        out = pool.map_async(_loky_task, [1, 2]).get(timeout=120)
    assert out == [_loky_task(1), _loky_task(2)]
    return {"ok": True}


SCENARIOS = {f.__name__: f for f in (predict_four_threads, predicts_run_side_by_side,
                                     train_two_models,
                                     train_while_predicting_same_model, next_to_threadpoolctl,
                                     next_to_numpy_blas_threads, next_to_joblib_workers,
                                     in_a_forked_child)}


def _child(names):
    import traceback

    for name in names:
        try:
            info = SCENARIOS[name]()
            rel_helpers.report(name, ok=True, info=info)
        except BaseException as exc:  # noqa: BLE001
            rel_helpers.report(name, ok=False, error=repr(exc), tb=traceback.format_exc()[-1500:])


def _check(name, timeout=180):
    results, crashes = rel_helpers.run_cases("test_concurrency", [name], timeout=timeout,
                                             env=rel_helpers.child_env(OMP_NUM_THREADS=2))
    assert not crashes, crashes  # a deadlock shows up here as a timeout
    assert results[name]["ok"], results[name].get("tb")


def test_predict_from_four_threads_is_bitwise_sequential():
    _check("predict_four_threads")


def test_predicts_on_one_model_are_not_serialised():
    _check("predicts_run_side_by_side")


def test_two_models_training_in_two_threads_are_bitwise_sequential():
    _check("train_two_models")


def test_training_and_predicting_one_model_from_two_threads():
    _check("train_while_predicting_same_model")


def test_no_deadlock_next_to_threadpoolctl():
    _check("next_to_threadpoolctl")


def test_no_deadlock_next_to_numpy_blas_threads():
    _check("next_to_numpy_blas_threads")


def test_no_deadlock_in_joblib_workers():
    _check("next_to_joblib_workers")


def test_no_deadlock_in_a_forked_child():
    _check("in_a_forked_child")
