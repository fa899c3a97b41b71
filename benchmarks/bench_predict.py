"""Inference of the 784-256-128-10 ReLU MLP (softmax output): predict on 1 row (latency) and
on 10,000 rows (throughput) with pynn, ONNX Runtime and PyTorch CPU, the same weights, on 1 and
2 threads, in the same run.

    pytest benchmarks/bench_predict.py

Two one-row inputs, because pynn's one-row path reads only the weight rows of nonzero inputs
(exact: a zero term adds nothing) and ONNX Runtime and PyTorch read them all: "1 row" is a
random row with no zeros, pynn's worst case (every weight read); "1 image row" is a
Fashion-MNIST test image scaled to [0, 1], about half of its pixels zero, what serving an image
costs. Random rows and images give every other implementation the same time. 10,000 rows are
timed both ways too: random rows (no zeros) and the first 10,000 Fashion-MNIST test images.

"pynn bf16" is the same model under the mixed_bfloat16 policy (products of bf16-rounded
operands on the bf16 GEMM, float32 sums, bias and activations), the same weights; "pynn bf16
engine" its C++ call alone. One row under bf16 reads every weight whatever the input (the
one-row kernels round the weights in registers and may not skip a zero input: a zero times an
infinite weight is NaN in the packed path they match bit for bit).

The ONNX graph is built here with onnx.helper (MatMul + Add + Relu, ... , Softmax) rather than
exported by pynn, so that the baseline does not depend on pynn's exporter. Targets: 1 row in
at most 5 microseconds; 10,000 rows at 1.5x ONNX Runtime's rows per second or better.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import NOTES, record, timed

import pynn
from pynn import layers as L

try:
    import torch
except ImportError:  # torch is in the [bench] extra
    torch = None

SIZES = [784, 256, 128, 10]
ROWS = {"1 row": 1, "1 image row": 1, "10,000 rows": 10000, "10,000 image rows": 10000}
RATES: dict = {}


@pytest.fixture(scope="module")
def model():
    pynn.utils.set_random_seed(0)
    m = pynn.Sequential([pynn.Input((SIZES[0],)), L.Dense(SIZES[1], activation="relu"),
                         L.Dense(SIZES[2], activation="relu"),
                         L.Dense(SIZES[3], activation="softmax")])
    m.build()
    yield m
    for (case, threads) in sorted({(c, t) for c, t, _ in RATES}, key=str):
        rows = ROWS[case]
        per = {impl: rows / s for (c, t, impl), s in RATES.items()
               if c == case and t == threads}
        if "pynn" in per:
            others = ", ".join(f"{k} {v:,.0f}" for k, v in per.items() if k != "pynn")
            ratios = ", ".join(f"{per['pynn'] / v:.2f}x {k}" for k, v in per.items()
                               if k != "pynn")
            NOTES.append(f"predict {case}, {threads} thread(s): pynn {per['pynn']:,.0f} rows/s "
                         f"({ratios}); {others}")


@pytest.fixture(scope="module")
def bf16_model(model):
    """The model under mixed_bfloat16, with the float32 model's weights."""
    from pynn import mixed_precision as mp

    saved = mp.global_policy()
    mp.set_global_policy("mixed_bfloat16")
    try:
        m = pynn.Sequential([pynn.Input((SIZES[0],)), L.Dense(SIZES[1], activation="relu"),
                             L.Dense(SIZES[2], activation="relu"),
                             L.Dense(SIZES[3], activation="softmax")])
        m.build()
    finally:
        mp.set_global_policy(saved)
    m.set_weights(model.get_weights())
    return m


def image_row(rows=1):
    """The first `rows` Fashion-MNIST test images as float32 rows in [0, 1] (the subset shipped
    with pynn when the data set is not installed, repeated up to `rows`)."""
    from pynn.datasets import fashion_mnist

    (_, (x, _)), _ = fashion_mnist.load_data_or_subset(quiet=True)
    x = np.resize(x.reshape(len(x), -1), (rows, SIZES[0]))
    return np.ascontiguousarray(x, dtype=np.float32) / np.float32(255)


def onnx_session(weights):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    prev = "x"
    for i in range(3):
        w, b = weights[2 * i], weights[2 * i + 1]
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"W{i}"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"z{i}"])]
        out = f"h{i}" if i < 2 else "y"
        nodes.append(helper.make_node("Relu" if i < 2 else "Softmax", [f"z{i}"], [out],
                                      **({} if i < 2 else {"axis": 1})))
        prev = out
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, SIZES[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, SIZES[3]])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = pynn.get_num_threads()
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def impls():
    # "pynn engine": the C++ call behind model.predict (Graph.predict_array) alone, so that
    # the gap between the two rows is model.predict's Python overhead.
    out = ["pynn", "pynn engine", "pynn bf16", "pynn bf16 engine", "onnxruntime"]
    return out + (["torch"] if torch is not None else [])


@pytest.fixture
def threads(request):
    before = pynn.get_num_threads()
    pynn.set_num_threads(request.param)
    yield request.param
    pynn.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("impl", impls())
@pytest.mark.parametrize("case", list(ROWS))
def test_predict(benchmark, model, bf16_model, impl, case, threads):
    rows = ROWS[case]
    x = image_row(rows) if "image" in case else (
        np.random.default_rng(rows).random((rows, SIZES[0]), dtype=np.float32))
    weights = model.get_weights()
    want = model.predict(x, verbose=0)
    if impl == "pynn":
        def fn():
            return model.predict(x, verbose=0, batch_size=rows)
    elif impl == "pynn bf16":
        def fn():
            return bf16_model.predict(x, verbose=0, batch_size=rows)
    elif impl in ("pynn engine", "pynn bf16 engine"):
        m = model if impl == "pynn engine" else bf16_model
        m.predict(x, verbose=0)
        graph = m._pgraph  # built by the predict above

        def fn():
            return graph.predict_array(x, 256)
    elif impl == "onnxruntime":
        sess = onnx_session(weights)

        def fn():
            return sess.run(None, {"x": x})[0]
    else:
        torch.set_num_threads(pynn.get_num_threads())
        net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                  torch.nn.Linear(256, 128), torch.nn.ReLU(),
                                  torch.nn.Linear(128, 10), torch.nn.Softmax(dim=1)).eval()
        with torch.no_grad():
            for i, lin in enumerate([net[0], net[2], net[4]]):
                lin.weight.copy_(torch.from_numpy(weights[2 * i].T.copy()))
                lin.bias.copy_(torch.from_numpy(weights[2 * i + 1]))
        xt = torch.from_numpy(x)

        def fn():
            with torch.no_grad():
                return net(xt).numpy()
    # the same numbers from every implementation (float32 sums in different orders); bf16
    # operands (2**-9 relative each) move the probabilities by up to about a percent
    tol = ({"rtol": 0.05, "atol": 0.01} if impl.startswith("pynn bf16")
           else {"rtol": 1e-4, "atol": 1e-6})
    np.testing.assert_allclose(fn(), want, **tol)
    best = timed(benchmark, fn, rounds=2000 if rows == 1 else 30, warmup=20 if rows == 1 else 3)
    RATES[(case, threads, impl)] = best
    record("predict (s per call)", f"{case}, {threads} threads", impl, best)


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
def test_predict_call_overhead(benchmark, threads):
    """model.predict of one row on a model with next to no arithmetic (4 inputs, 2 softmax
    units): the fixed cost of a call (argument checks, the result array, entering and leaving
    the engine). Beside the MLP's one-row rows of the same table, what is left of those is
    the kernels' time (on Zen 4 the first layer's weights read from L2 at ~30 bytes a cycle
    per core)."""
    pynn.utils.set_random_seed(0)
    m = pynn.Sequential([pynn.Input((4,)), L.Dense(2, activation="softmax")])
    m.build()
    x = np.ones((1, 4), np.float32)

    def fn():
        return m.predict(x, verbose=0, batch_size=1)

    assert fn().shape == (1, 2)
    best = timed(benchmark, fn, rounds=2000, warmup=20)
    record("predict (s per call)", f"1 row, {threads} threads", "pynn, a 4-2 model", best)
