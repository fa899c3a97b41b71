"""The graph engine (`_core.Graph`) against the sequential engine (`_core.Network`) on the
784-256-128-10 ReLU MLP (Adam 1e-3, sparse categorical cross-entropy, batch 128), measured in
the same run on Fashion-MNIST-shaped random data: one training epoch of 60000 rows (1 and 2
threads) and predict on one row.

    pytest benchmarks/bench_graph.py

The two engines run the same kernels; the graph adds its schedule, buffer plan and argument
checks. Target: the graph within 5% of the network per epoch, and one-row predict <= 10 us.
"pynn vs network" in the table is network time / graph time (above 1: the graph is faster).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import record, timed
from threadpoolctl import threadpool_limits

import pynn
from pynn import _core
from pynn.layers.layer import aligned_copy
from pynn.models.graph_spec import GraphSpec, ParamRef

BATCH = 128
ROWS = 60000
SIZES = [784, 256, 128, 10]
ACTS = ["relu", "relu", "softmax"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.random((ROWS, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, 10, ROWS).astype(np.int32)
    return x, y


def weights(seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        lim = np.sqrt(6 / (a + b))
        out += [rng.uniform(-lim, lim, (a, b)).astype(np.float32), np.zeros(b, np.float32)]
    # the graph reads these arrays in place: 64-byte aligned, as a model's weights are
    return [aligned_copy(w) for w in out]


def network():
    net = _core.Network(SIZES[0])
    for units, act in zip(SIZES[1:], ACTS):
        net.add_dense(units, act, [], True)
    for i, w in enumerate(weights()):
        net.set_param(i, w)
    net.set_loss("sparse_categorical_crossentropy", False, 1.0)
    net.set_optimizer("adam", {"learning_rate": 1e-3})
    return net


def graph():
    spec = GraphSpec()
    h = spec.add_input((SIZES[0],))
    ws = weights()
    for i, (units, act) in enumerate(zip(SIZES[1:], ACTS)):
        k = spec.add_param(ParamRef(value=ws[2 * i], name=f"dense_{i}/kernel"))
        b = spec.add_param(ParamRef(value=ws[2 * i + 1], name=f"dense_{i}/bias"))
        h = spec.add_node("dense", [h], [(units,)], [k, b],
                          {"units": units, "activation": act, "use_bias": True}, f"dense_{i}")[0]
    spec.outputs = [h]
    g = spec.to_core([("sparse_categorical_crossentropy", False, 1.0, 1.0)])
    g.set_optimizer("adam", {"learning_rate": 1e-3})
    return g


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("impl", ["network", "pynn"])
def test_epoch(benchmark, data, impl, threads):
    x, y = data
    rng = np.random.default_rng(1)
    if impl == "network":
        net = network()

        def epoch():
            order = rng.permutation(ROWS)
            for s in range(0, ROWS, BATCH):
                net.train_step(x, None, y, None, order[s:s + BATCH], False)
    else:
        g = graph()
        xs, ys = [x], [y]

        def epoch():
            order = rng.permutation(ROWS)
            for s in range(0, ROWS, BATCH):
                g.train_step(xs, ys, None, order[s:s + BATCH], False)
    cpu = []

    def epoch_cpu():
        t = time.thread_time()
        epoch()
        cpu.append(time.thread_time() - t)

    pynn.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            best = timed(benchmark, epoch_cpu, rounds=3, warmup=1)
    finally:
        pynn.set_num_threads(2)
    record("graph engine: one epoch (s)", f"epoch {ROWS} rows {threads}t", impl, best)
    if threads == 1:
        # On one thread all the work is on the calling thread, so its CPU time is the epoch's
        # cost without the time other tenants of a shared machine took the core away.
        record("graph engine: one epoch (s)", f"epoch {ROWS} rows 1t, CPU time", impl, min(cpu))


@pytest.mark.parametrize("impl", ["network", "pynn"])
def test_predict_one_row(benchmark, data, impl):
    x, _ = data
    row = x[:1].copy()
    out = np.zeros((1, SIZES[-1]), np.float32)
    if impl == "network":
        net = network()

        def fn():
            net.predict(row, out, 1)
    else:
        g = graph()
        xs, outs = [row], [out]

        def fn():
            g.predict(xs, outs, 1)
    best = timed(benchmark, fn, rounds=3000, warmup=100)
    record("graph engine: predict one row", "predict 1 row", impl, best)
    cpu = []
    for _ in range(5):
        t = time.thread_time()
        for _ in range(2000):
            fn()
        cpu.append((time.thread_time() - t) / 2000)
    record("graph engine: predict one row", "predict 1 row, CPU time", impl, min(cpu))
