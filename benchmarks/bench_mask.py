"""What a mask costs: a sequence tagger (Embedding(1000, 32) -> LSTM(64, return_sequences) ->
Dense(16, softmax) on every step, sparse cross-entropy per step, SGD, batch 64) trained for
one epoch on 2048 zero-padded sequences of 32 steps (lengths 4..32), with Embedding's
mask_zero on (the mask reaches the LSTM, the loss and the accuracy) and off, and PyTorch
CPU's nn.LSTM on the same shapes with the padded steps left out of the loss by weights, in
the same run.

    pytest benchmarks/bench_mask.py -s

The ratio masked / unmasked is what matters (the machine is shared).
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import record, thread_limits, timed

import pynn
from pynn import layers

try:
    import torch
except ImportError:  # torch is in the [bench] extra
    torch = None

N, T, V, E, U, C, BATCH = 2048, 32, 1000, 32, 64, 16, 64


def _data():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, V, (N, T)).astype(np.float32)
    lengths = rng.integers(4, T + 1, N)
    ids[np.arange(T)[None, :] >= lengths[:, None]] = 0
    return ids, rng.integers(0, C, (N, T)).astype(np.int32)


def _pynn_model(mask_zero):
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([
        pynn.Input((T,)),
        layers.Embedding(V, E, mask_zero=mask_zero),
        layers.LSTM(U, return_sequences=True),
        layers.Dense(C, activation="softmax"),
    ])
    model.compile(optimizer=pynn.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mask_zero", [True, False])
def test_pynn_epoch(benchmark, threads, mask_zero):
    x, y = _data()
    model = _pynn_model(mask_zero)
    with thread_limits(threads):
        pynn.set_num_threads(threads)
        seconds = timed(benchmark, lambda: model.fit(x, y, batch_size=BATCH, epochs=1,
                                                     verbose=0), rounds=3, warmup=1)
    record("masked tagger epoch", f"{threads} thread(s)",
           "pynn masked" if mask_zero else "pynn unmasked", seconds)


@pytest.mark.skipif(torch is None, reason="torch is in the [bench] extra")
@pytest.mark.parametrize("threads", [1, 2])
def test_torch_epoch(benchmark, threads):
    x, y = _data()
    torch.manual_seed(0)
    emb, lstm, head = torch.nn.Embedding(V, E), torch.nn.LSTM(E, U, batch_first=True), \
        torch.nn.Linear(U, C)
    params = list(emb.parameters()) + list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    xt, yt = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))
    keep = (xt != 0).float()

    def epoch():
        for s in range(0, N, BATCH):
            xb, yb, kb = xt[s:s + BATCH], yt[s:s + BATCH], keep[s:s + BATCH]
            opt.zero_grad()
            h, _ = lstm(emb(xb))
            ce = torch.nn.functional.cross_entropy(head(h).reshape(-1, C), yb.reshape(-1),
                                                   reduction="none")
            loss = (ce * kb.reshape(-1)).sum() / kb.sum().clamp(min=1.0)
            loss.backward()
            opt.step()

    with thread_limits(threads):
        torch.set_num_threads(threads)
        seconds = timed(benchmark, epoch, rounds=3, warmup=1)
    record("masked tagger epoch", f"{threads} thread(s)", "torch (mask in the loss only)",
           seconds)
