"""Process safety: child processes made by fork (multiprocessing's default on Linux, os.fork,
a pool of forked workers), spawn and forkserver train and predict after the parent trained on
2 threads, with results bitwise equal to the parent's, and a forked child runs its kernels on
worker threads of its own (issue 16: with OpenMP the forked child waited forever for the
parent's thread pool).

Every scenario runs in a fresh interpreter with a timeout (rel_helpers), and every child
process it starts is waited for with a timeout and killed after it, so a hang fails the test
instead of stalling the suite.
"""
from __future__ import annotations

import os
import select
import signal
import threading
import time
import traceback

import numpy as np
import rel_helpers

CHILD_TIMEOUT = 120  # seconds a child may take (a shared, loaded machine is slow)
N_IN, ROWS = 64, 1024


# --- the work, the same in parent and child ----------------------------------------------------

def _model(seed=3):
    import pynn
    from pynn import layers as L

    pynn.utils.set_random_seed(seed)
    # Big enough that the GEMMs (128 x 64 x 256 and up) run as parallel regions on 2 threads.
    m = pynn.Sequential([pynn.Input((N_IN,)), L.Dense(256, activation="relu"),
                         L.Dense(256, activation="relu"), L.Dense(10, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    m.build()
    return m


def _data(seed=4, n=ROWS):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, N_IN)).astype(np.float32), rng.integers(0, 10, n)


def _big_gemm_operands():
    rng = np.random.default_rng(5)
    return (rng.standard_normal((768, 768), dtype=np.float32),
            rng.standard_normal((768, 768), dtype=np.float32))


def _train_and_predict(m, x, y):
    """One more epoch, then predictions; everything as bytes, plus where it ran."""
    import pynn
    from pynn import _core

    m.fit(x, y, epochs=1, batch_size=128, shuffle=False, verbose=0)
    pred = m.predict(x, verbose=0)
    a, b = _big_gemm_operands()
    prod = pynn.ops.gemm(a, b)
    # Each task of this product takes milliseconds: a live worker claims one of them.
    for _ in range(20):
        if _core.pool_info()["worker_tasks"] > 0:
            break
        pynn.ops.gemm(a, b)
    return {"weights": [w.tobytes() for w in m.get_weights()], "pred": pred.tobytes(),
            "gemm": prod.tobytes(), "pid": os.getpid(), "threads": pynn.get_num_threads(),
            "pool": dict(_core.pool_info())}


def _same_results(child, parent):
    assert child["weights"] == parent["weights"], "weights after training differ"
    assert child["pred"] == parent["pred"], "predictions differ"
    assert child["gemm"] == parent["gemm"], "GEMM differs"


def _used_own_workers(res):
    pool = res["pool"]
    assert res["threads"] == 2, res["threads"]
    assert pool["pid"] == res["pid"], pool  # a pool made in this very process
    assert pool["workers"] >= 1, pool
    assert pool["worker_tasks"] > 0, pool  # and its workers did run kernel tasks


def _trained_parent():
    """The parent's state before any child: a model trained on 2 threads, the pool up."""
    import pynn
    from pynn import _core

    pynn.set_num_threads(2)
    m = _model()
    x, y = _data()
    m.fit(x, y, epochs=1, batch_size=128, shuffle=False, verbose=0)
    info = _core.pool_info()
    assert info["workers"] >= 1 and info["regions"] > 0, info  # the parent's pool is busy
    return m, x, y


# --- running a child with a timeout ------------------------------------------------------------

def _child_main(conn, fn, args):
    try:
        conn.send((True, fn(*args)))
    except BaseException:  # noqa: BLE001
        conn.send((False, traceback.format_exc()[-3000:]))
    finally:
        conn.close()


def _run_child(ctx, fn, args=()):
    """fn(*args) in a child process of the multiprocessing context `ctx`; its result."""
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, fn, args), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(CHILD_TIMEOUT):
            raise TimeoutError(f"{ctx.get_start_method()} child: no result after "
                               f"{CHILD_TIMEOUT} s (hung)")
        ok, payload = recv.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join(30)
    if not ok:
        raise RuntimeError(f"{ctx.get_start_method()} child failed:\n{payload}")
    return payload


# --- scenarios (each runs in a fresh interpreter) ----------------------------------------------

_STATE = {}  # what a forked child inherits


def _forked_work():
    m, x, y = _STATE["model"], _STATE["x"], _STATE["y"]
    return _train_and_predict(m, x, y)


def fork_after_training():
    import multiprocessing as mp

    from pynn import _core

    m, x, y = _trained_parent()
    _STATE.update(model=m, x=x, y=y)
    before = _core.pool_info()
    child = _run_child(mp.get_context("fork"), _forked_work)
    # The parent's pool is untouched by the fork and goes on working.
    after = _core.pool_info()
    assert after["pid"] == before["pid"] == os.getpid() and after["workers"] == before["workers"]
    parent = _train_and_predict(m, x, y)
    assert child["pid"] != parent["pid"]
    assert child["pool"]["forks"] == parent["pool"]["forks"] + 1
    _same_results(child, parent)
    _used_own_workers(child)
    assert _core.pool_info()["regions"] > after["regions"]
    return {"child_pool": child["pool"], "parent_pool": parent["pool"]}


def fork_while_threads_predict():
    import multiprocessing as mp

    import pynn

    m, x, y = _trained_parent()
    _STATE.update(model=m, x=x, y=y)
    other = _model(seed=9)  # a second model, training in a thread through the fork
    xo, yo = _data(seed=10)
    expected_pred = m.predict(x, verbose=0)
    stop = threading.Event()
    counts, errors = [0, 0, 0, 0], []

    def predictor(i):
        try:
            rows = x[i * 200:(i + 1) * 200]
            want = expected_pred[i * 200:(i + 1) * 200]
            while not stop.is_set():
                got = m.predict(rows, verbose=0)  # GIL released, model lock held shared
                assert np.array_equal(got, want)
                counts[i] += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(repr(exc))

    def trainer():
        try:
            while not stop.is_set():
                other.fit(xo, yo, epochs=1, batch_size=128, shuffle=False, verbose=0)
                counts[3] += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=predictor, args=(i,), daemon=True) for i in range(3)]
    threads.append(threading.Thread(target=trainer, daemon=True))
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while min(counts) < 2 and time.monotonic() < deadline and not errors:
        time.sleep(0.01)
    assert min(counts) >= 2 and not errors, (counts, errors)  # all threads are mid-work
    children = [_run_child(mp.get_context("fork"), _forked_work) for _ in range(2)]
    stop.set()
    for t in threads:
        t.join(CHILD_TIMEOUT)
    assert not any(t.is_alive() for t in threads) and not errors, errors
    assert np.array_equal(m.predict(x, verbose=0), expected_pred)  # the parent is unharmed
    parent = _train_and_predict(m, x, y)
    for child in children:
        _same_results(child, parent)
        _used_own_workers(child)
    assert pynn.get_num_threads() == 2
    return {"loops_before_fork": counts}


def _rebuilt_work(weights, x, y):
    m = _model()
    m.set_weights(weights)
    return _train_and_predict(m, x, y)


def _spawned(method):
    import multiprocessing as mp

    m, x, y = _trained_parent()
    weights = m.get_weights()
    child = _run_child(mp.get_context(method), _rebuilt_work, (weights, x, y))
    parent = _rebuilt_work(weights, x, y)  # the same from the same weights, in the parent
    _same_results(child, parent)
    assert child["pid"] != os.getpid() and child["threads"] == 2
    return {"child_pool": child["pool"]}


def spawn_child():
    return _spawned("spawn")


def forkserver_child():
    return _spawned("forkserver")


def _predict_chunk(i):
    from pynn import _core

    x = _STATE["x"]
    pred = _STATE["model"].predict(x[i % 4::4], verbose=0)
    return i, pred.tobytes(), os.getpid(), dict(_core.pool_info())


def pool_of_four_forked_workers():
    import multiprocessing as mp

    m, x, y = _trained_parent()
    _STATE.update(model=m, x=x, y=y)
    expected = [m.predict(x[i::4], verbose=0).tobytes() for i in range(4)]
    pool = mp.get_context("fork").Pool(4)
    try:
        out = pool.map_async(_predict_chunk, list(range(8)) * 2, chunksize=1).get(CHILD_TIMEOUT)
    finally:
        pool.terminate()
        pool.join()
    pids = set()
    for i, got, pid, info in out:
        assert got == expected[i % 4], f"chunk {i} differs"
        assert pid != os.getpid() and info["forks"] >= 1
        pids.add(pid)
    assert 1 <= len(pids) <= 4
    return {"workers_used": len(pids)}


def os_fork_directly():
    import pickle

    m, x, y = _trained_parent()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test machinery
        code = 0
        try:
            os.close(r)
            try:
                payload = (True, _train_and_predict(m, x, y))
            except BaseException:  # noqa: BLE001
                payload = (False, traceback.format_exc()[-3000:])
            blob = pickle.dumps(payload)
            with os.fdopen(w, "wb") as f:
                f.write(blob)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks, deadline = [], time.monotonic() + CHILD_TIMEOUT
    try:
        with os.fdopen(r, "rb") as f:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"os.fork child: no result after {CHILD_TIMEOUT} s (hung)")
                ready, _, _ = select.select([f], [], [], left)
                if not ready:
                    continue
                part = os.read(f.fileno(), 1 << 20)
                if not part:
                    break
                chunks.append(part)
    finally:
        for _ in range(300):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    ok, child = pickle.loads(b"".join(chunks))
    assert ok, child
    parent = _train_and_predict(m, x, y)
    _same_results(child, parent)
    _used_own_workers(child)
    return {"child_pool": child["pool"]}


def _busy_child_work(busy, row):
    t0 = time.monotonic()
    try:
        busy.predict(row, verbose=0)
        busy_error = None
    except RuntimeError as exc:
        busy_error = str(exc)
    res = _forked_work()  # the models that were idle at the fork work as usual
    res.update(busy_error=busy_error, child_started=t0)
    return res


def fork_while_a_call_outlasts_the_wait():
    # Run with PYNN_FORK_WAIT_MS=0: fork() does not wait for a model that is busy at that
    # moment, and the child refuses to use that one model (its buffers may be half written)
    # rather than hang on its lock; the idle models work, bitwise as in the parent.
    import multiprocessing as mp

    import pynn
    from pynn import layers as L

    m, x, y = _trained_parent()
    _STATE.update(model=m, x=x, y=y)
    busy = pynn.Sequential([pynn.Input((N_IN,)), L.Dense(1024, activation="relu"),
                            L.Dense(1024, activation="relu"), L.Dense(10)])
    busy.build()
    row = x[:1].copy()
    for rows in (65536, 262144):
        big = np.random.default_rng(6).normal(size=(rows, N_IN)).astype(np.float32)
        started, ended = threading.Event(), {}

        def long_call(started=started, big=big, ended=ended):
            started.set()
            busy.predict(big, verbose=0, batch_size=4096)
            ended["t"] = time.monotonic()

        t = threading.Thread(target=long_call, daemon=True)
        t.start()
        started.wait()
        time.sleep(0.05)
        child = _run_child(mp.get_context("fork"), _busy_child_work, (busy, row))
        t.join(CHILD_TIMEOUT)
        assert not t.is_alive()
        if ended["t"] > child["child_started"]:
            break  # the long call was running at the fork, as wanted
    else:
        raise AssertionError("the long predict never outlasted the fork")
    assert child["busy_error"] is not None and "forked" in child["busy_error"], child["busy_error"]
    parent = _train_and_predict(m, x, y)
    _same_results(child, parent)
    _used_own_workers(child)
    busy.predict(row, verbose=0)  # the parent's copy is fine
    return {"busy_error": child["busy_error"]}


SCENARIOS = {f.__name__: f for f in (fork_after_training, fork_while_threads_predict,
                                     fork_while_a_call_outlasts_the_wait,
                                     spawn_child, forkserver_child, pool_of_four_forked_workers,
                                     os_fork_directly)}


def _child(names):
    for name in names:
        try:
            info = SCENARIOS[name]()
            rel_helpers.report(name, ok=True, info=info)
        except BaseException as exc:  # noqa: BLE001
            rel_helpers.report(name, ok=False, error=repr(exc), tb=traceback.format_exc()[-3000:])


def _check(name, timeout=600, **env):
    results, crashes = rel_helpers.run_cases("test_fork", [name], timeout=timeout,
                                             env=rel_helpers.child_env(OMP_NUM_THREADS=2, **env))
    assert not crashes, crashes  # a hang in the parent (the fork itself) shows up here
    assert results[name]["ok"], results[name].get("tb")


def test_fork_after_training_then_train_and_predict_in_the_child():
    _check("fork_after_training")


def test_fork_while_python_threads_predict_and_train():
    _check("fork_while_threads_predict")


def test_model_busy_past_the_fork_wait_is_refused_in_the_child():
    _check("fork_while_a_call_outlasts_the_wait", PYNN_FORK_WAIT_MS=0)


def test_spawn_child():
    _check("spawn_child")


def test_forkserver_child():
    _check("forkserver_child")


def test_pool_of_four_forked_workers_predicting():
    _check("pool_of_four_forked_workers")


def test_os_fork_directly():
    _check("os_fork_directly")
