"""LSTM(128) reading each Fashion-MNIST image as 28 steps of 28 pixels, then Dense(10): one
training epoch (Adam 1e-3, batch 128) with pynn's fit and PyTorch CPU's nn.LSTM in the same
run, on 1 and 2 threads; the same with GRU(128) (Keras's default reset_after=True, which is
PyTorch's nn.GRU formulation) against nn.GRU. impl "pynn_bf16" is pynn under the
mixed_bfloat16 policy (every product of the recurrent layer and of the Dense head on the bf16
GEMM, float32 weights, states and sums); the notes give each model's test accuracy after the
timed epochs (warm-up + 3 of the rows below), bf16 beside float32.

    pytest benchmarks/bench_rnn.py -s

About 13.4 MFLOP per image and training step (forward 2 * 28 * (28 + 128) * 512 multiply-adds
for the four gates, then as many for the weight gradients and for dh through the recurrent
kernel; the Dense layer is negligible; a GRU has 3 gates instead of 4, so 3/4 of it). Uses
the real data set when installed, else the subset shipped with pynn. PYNN_BENCH_RNN_ROWS
(default 12000) caps the rows of the timed epoch; 0 means all of them. The ratio pynn /
torch is what matters.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import NOTES, record, thread_limits, timed, torch_epoch

import pynn
from pynn import layers
from pynn import mixed_precision as mp

try:
    import torch
except ImportError:  # torch is in the [bench] extra
    torch = None

BATCH = 128
UNITS = 128
FLOP_PER_IMAGE = 3 * 2 * 28 * (28 + UNITS) * 4 * UNITS
GATES = {"lstm": 4, "gru": 3, "simple": 1}
CELLS = {"lstm": "LSTM", "gru": "GRU", "simple": "SimpleRNN"}  # pynn.layers' names


@pytest.fixture(scope="module")
def data():
    from pynn.datasets import fashion_mnist

    ((x, y), (xt, yt)), _ = fashion_mnist.load_data_or_subset(quiet=True)
    rows = int(os.environ.get("PYNN_BENCH_RNN_ROWS", "12000"))
    if rows > 0:
        x, y = x[:rows], y[:rows]
    return (np.ascontiguousarray(x, dtype=np.float32) / 255.0, y.astype(np.int64),
            np.ascontiguousarray(xt, dtype=np.float32) / 255.0, yt.astype(np.int64))


def pynn_model(cell="lstm", policy="float32"):
    mp.set_global_policy(policy)
    try:
        rnn = getattr(layers, CELLS[cell])(UNITS)
        model = pynn.Sequential([pynn.Input((28, 28)), rnn,
                                 layers.Dense(10, activation="softmax")])
    finally:
        mp.set_global_policy("float32")
    model.compile(optimizer=pynn.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


class TorchRNN(torch.nn.Module if torch is not None else object):  # type: ignore[misc]
    def __init__(self, cell="lstm"):
        super().__init__()
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple": torch.nn.RNN}[cell]
        self.rnn = rnn(28, UNITS, batch_first=True)
        self.head = torch.nn.Linear(UNITS, 10)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("impl", ["pynn", "pynn_bf16"] + (["torch"] if torch is not None else []))
def test_epoch(benchmark, data, impl, threads, cell):
    x, y, xt, yt = data
    n = len(x)
    if impl.startswith("pynn"):
        pynn.utils.set_random_seed(0)
        model = pynn_model(cell, "mixed_bfloat16" if impl == "pynn_bf16" else "float32")

        def epoch():
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    else:
        torch.manual_seed(0)
        net = TorchRNN(cell)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        epoch = torch_epoch(net, opt, torch.from_numpy(x), torch.from_numpy(y), BATCH)
    rounds = 3
    with thread_limits(threads):
        best = timed(benchmark, epoch, rounds=rounds, warmup=1)
    predict = ((lambda v: model.predict(v, verbose=0)) if impl.startswith("pynn")
               else (lambda v: net(torch.from_numpy(v)).detach().numpy()))
    acc = float(np.mean(np.argmax(predict(xt), axis=1) == yt))
    NOTES.append(f"{cell} {impl:9s} {threads}t: test accuracy {acc:.4f} after {rounds + 1} "
                 f"epochs of {n} rows")
    record(f"{cell.upper()}(128) over Fashion-MNIST rows: train one epoch",
           f"epoch {n} images {threads}t", impl, best, FLOP_PER_IMAGE * n * GATES[cell] / 4)
