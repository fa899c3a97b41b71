"""Serving from Python threads: requests per second that 1, 2 and 4 Python threads get from one
shared model (the 784-256-128-10 ReLU MLP of bench_graph.py), for requests of 1 row (the
fast path) and of 64 rows, with pynn's kernels on 2 threads.

    pytest benchmarks/bench_threads.py

predict releases the GIL and takes the model's lock shared, so requests from several threads
run side by side (each on an inference context of its own) instead of queueing behind one
lock; the 1-row requests are serial kernels, so on 2 cores 2 threads can at best double the
rate, and 4 threads only add waiting for the GIL. Every answer is checked against the
sequential one. The table gives microseconds per request (all threads together); the
requests/s figures are printed after it.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import NOTES, record, timed

import pynn
from pynn import layers as L

SIZES = [784, 256, 128, 10]
PER_THREAD = {1: 400, 64: 40}  # requests each thread makes per round
RATES: dict = {}


@pytest.fixture(scope="module")
def model():
    pynn.utils.set_random_seed(0)
    m = pynn.Sequential([pynn.Input((SIZES[0],)), L.Dense(SIZES[1], activation="relu"),
                         L.Dense(SIZES[2], activation="relu"),
                         L.Dense(SIZES[3], activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.build()
    yield m
    if RATES:
        NOTES.append("predict requests per second from Python threads on one model:")
        for (rows, threads), rps in sorted(RATES.items()):
            base = RATES.get((rows, 1))
            scale = f"  ({rps / base:.2f}x one thread)" if base else ""
            NOTES.append(f"  {rows:3d} row(s) per request, {threads} thread(s): "
                         f"{rps:10.0f} requests/s{scale}")


@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("rows", [1, 64])
def test_requests_per_second(benchmark, model, rows, threads):
    rng = np.random.default_rng(rows)
    xs = [rng.random((rows, SIZES[0]), dtype=np.float32) for _ in range(threads)]
    want = [model.predict(x, verbose=0) for x in xs]
    n = PER_THREAD[rows]
    errors = []

    def client(i, barrier):
        x, w = xs[i], want[i]
        barrier.wait()
        for _ in range(n):
            if not np.array_equal(model.predict(x, verbose=0), w):
                errors.append(i)
                return

    def one_round():
        barrier = threading.Barrier(threads)
        workers = [threading.Thread(target=client, args=(i, barrier)) for i in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()

    pynn.set_num_threads(2)
    best = timed(benchmark, one_round, rounds=7, warmup=1)
    assert not errors, errors
    requests = threads * n
    RATES[(rows, threads)] = requests / best
    benchmark.extra_info["requests_per_s"] = requests / best
    record("predict from Python threads on one model (per request, all threads)",
           f"{rows} row(s), {threads} thread(s)", "pynn", best / requests)
