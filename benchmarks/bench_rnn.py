"""LSTM(128) reading each Fashion-MNIST image as 28 steps of 28 pixels, then Dense(10): one
training epoch (Adam 1e-3, batch 128) with pynn's fit and PyTorch CPU's nn.LSTM in the same
run, on 1 and 2 threads; the same with GRU(128) (Keras's default reset_after=True, which is
PyTorch's nn.GRU formulation) against nn.GRU.

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
from conftest import record, thread_limits, timed, torch_epoch

import pynn
from pynn import layers

try:
    import torch
except ImportError:  # torch is in the [bench] extra
    torch = None

BATCH = 128
UNITS = 128
FLOP_PER_IMAGE = 3 * 2 * 28 * (28 + UNITS) * 4 * UNITS
GATES = {"lstm": 4, "gru": 3}


@pytest.fixture(scope="module")
def data():
    from pynn.datasets import fashion_mnist

    ((x, y), _), _ = fashion_mnist.load_data_or_subset(quiet=True)
    rows = int(os.environ.get("PYNN_BENCH_RNN_ROWS", "12000"))
    if rows > 0:
        x, y = x[:rows], y[:rows]
    return np.ascontiguousarray(x, dtype=np.float32) / 255.0, y.astype(np.int64)


def pynn_model(cell="lstm"):
    rnn = layers.LSTM(UNITS) if cell == "lstm" else layers.GRU(UNITS)
    model = pynn.Sequential([pynn.Input((28, 28)), rnn, layers.Dense(10, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


class TorchRNN(torch.nn.Module if torch is not None else object):  # type: ignore[misc]
    def __init__(self, cell="lstm"):
        super().__init__()
        rnn = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
        self.rnn = rnn(28, UNITS, batch_first=True)
        self.head = torch.nn.Linear(UNITS, 10)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("impl", ["pynn"] + (["torch"] if torch is not None else []))
def test_epoch(benchmark, data, impl, threads, cell):
    x, y = data
    n = len(x)
    if impl == "pynn":
        pynn.utils.set_random_seed(0)
        model = pynn_model(cell)

        def epoch():
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    else:
        torch.manual_seed(0)
        net = TorchRNN(cell)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        epoch = torch_epoch(net, opt, torch.from_numpy(x), torch.from_numpy(y), BATCH)
    with thread_limits(threads):
        best = timed(benchmark, epoch, rounds=3, warmup=1)
    record(f"{cell.upper()}(128) over Fashion-MNIST rows: train one epoch",
           f"epoch {n} images {threads}t", impl, best, FLOP_PER_IMAGE * n * GATES[cell] / 4)
