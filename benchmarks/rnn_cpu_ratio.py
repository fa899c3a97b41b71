"""The LSTM(128) / GRU(128) Fashion-MNIST-rows epoch of bench_rnn.py, pynn against PyTorch on
one thread, timed by this thread's CPU time instead of the wall clock, alternating the two
implementations in one process. On a shared machine the wall clock of a 1-thread epoch also
counts the time other tenants hold the core; CPU time does not (cache and memory contention
still reach it, so repeat and read the ratio, not the seconds). pynn runs twice per round:
float32 and under the mixed_bfloat16 policy (bf16 products, bench_rnn.py's "pynn_bf16").

    PYTHONPATH=. python benchmarks/rnn_cpu_ratio.py [rows=3000] [repeats=5]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402  (after the path: bench_rnn and conftest live next to this file)
from bench_rnn import BATCH, TorchRNN, pynn_model  # noqa: E402
from conftest import torch_epoch  # noqa: E402

import pynn  # noqa: E402
from pynn.datasets import fashion_mnist  # noqa: E402


def cpu_seconds(fn) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def main(rows: int = 3000, repeats: int = 5) -> None:
    ((x, y), _), _ = fashion_mnist.load_data_or_subset(quiet=True)
    x = np.ascontiguousarray(x[:rows], dtype=np.float32) / 255.0
    y = y[:rows].astype(np.int64)
    pynn.set_num_threads(1)
    torch.set_num_threads(1)
    for cell in ("lstm", "gru"):
        models = {}
        for policy in ("float32", "mixed_bfloat16"):
            pynn.utils.set_random_seed(0)
            models[policy] = pynn_model(cell, policy)
        torch.manual_seed(0)
        net = TorchRNN(cell)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        torch_run = torch_epoch(net, opt, torch.from_numpy(x), torch.from_numpy(y), BATCH)

        runs = {p: (lambda m=m: m.fit(x, y, batch_size=BATCH, epochs=1, verbose=0))
                for p, m in models.items()}
        runs["torch"] = torch_run
        for run in runs.values():  # warm-up of each
            run()
        times: dict = {k: [] for k in runs}
        for _ in range(repeats):
            for k, run in runs.items():
                times[k].append(cpu_seconds(run))
        theirs = np.array(times["torch"])
        for policy in models:
            ours = np.array(times[policy])
            print(f"{cell} {policy}: {rows} images, 1 thread, CPU s per epoch: pynn "
                  f"{ours.min():.3f}, torch {theirs.min():.3f}; pynn / torch: "
                  f"{ours.min() / theirs.min():.2f} (ratio of minima), "
                  f"{np.median(ours / theirs):.2f} (median of rounds)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
