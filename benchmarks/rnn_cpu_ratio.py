"""The LSTM(128) / GRU(128) Fashion-MNIST-rows epoch of bench_rnn.py, pynn against PyTorch on
one thread, timed by this thread's CPU time instead of the wall clock, alternating the two
implementations in one process. On a shared machine the wall clock of a 1-thread epoch also
counts the time other tenants hold the core; CPU time does not (cache and memory contention
still reach it, so repeat and read the ratio, not the seconds). pynn runs twice per round:
float32 and under the mixed_bfloat16 policy (bf16 products, bench_rnn.py's "pynn_bf16").

    PYTHONPATH=. python benchmarks/rnn_cpu_ratio.py [rows=3000] [repeats=5]

A/B of two builds: "ab OLD NEW" runs processes alternately with PYTHONPATH=OLD and =NEW
(checkouts whose pynn/ holds their _core), each timing one cell and policy on 1 or 2 threads
(best of `repeats` epochs after a warm-up: CPU time on 1 thread, the wall clock on 2, where
CPU time would count the threads' waits) together with PyTorch's epoch in the same process;
it prints each build's best pynn / torch ratio and new / old.

    python benchmarks/rnn_cpu_ratio.py ab /work/main . [rows=3000] [rounds=3] [repeats=3]
        [cells=lstm,gru,simple] [policies=float32] [threads=1,2]
"""
from __future__ import annotations

import json
import os
import subprocess
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


def one(cell: str, policy: str, threads: int, rows: int, repeats: int) -> None:
    """One process's figures for ab(): best epoch seconds of pynn and of PyTorch, as JSON."""
    ((x, y), _), _ = fashion_mnist.load_data_or_subset(quiet=True)
    x = np.ascontiguousarray(x[:rows], dtype=np.float32) / 255.0
    y = y[:rows].astype(np.int64)
    pynn.set_num_threads(threads)
    torch.set_num_threads(threads)
    pynn.utils.set_random_seed(0)
    model = pynn_model(cell, policy)
    torch.manual_seed(0)
    net = TorchRNN(cell)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    runs = {"pynn": lambda: model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0),
            "torch": torch_epoch(net, opt, torch.from_numpy(x), torch.from_numpy(y), BATCH)}
    clock = time.thread_time if threads == 1 else time.perf_counter
    best = {}
    for k, run in runs.items():
        run()
        ts = []
        for _ in range(repeats):
            t0 = clock()
            run()
            ts.append(clock() - t0)
        best[k] = min(ts)
    print(json.dumps(best))


def ab(old: str, new: str, rows: int = 3000, rounds: int = 3, repeats: int = 3,
       cells: str = "lstm,gru,simple", policies: str = "float32", threads: str = "1,2") -> None:
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    for cell in cells.split(","):
        for policy in policies.split(","):
            for th in (int(t) for t in threads.split(",")):
                got: dict = {"old": [], "new": []}
                for _ in range(rounds):
                    for tag, root in (("old", old), ("new", new)):
                        env = dict(os.environ, PYTHONPATH=os.path.abspath(root))
                        out = subprocess.run(
                            [sys.executable, __file__, "one", cell, policy, str(th), str(rows),
                             str(repeats)], env=env, capture_output=True, text=True, check=True)
                        got[tag].append(json.loads(out.stdout.strip().splitlines()[-1]))
                line = []
                best = {}
                for tag, rs in got.items():
                    p = min(r["pynn"] for r in rs)
                    t = min(r["torch"] for r in rs)
                    best[tag] = p
                    line.append(f"{tag} pynn {p:.3f} torch {t:.3f} ratio {p / t:.3f}")
                print(f"{cell} {policy} {th}t ({rows} rows, best of {rounds}x{repeats}): "
                      + "; ".join(line) + f"; new / old {best['new'] / best['old']:.3f}",
                      flush=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "one":
        one(sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:7]))
    elif len(sys.argv) > 1 and sys.argv[1] == "ab":
        ab(sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:7]), *sys.argv[7:10])
    else:
        main(*(int(a) for a in sys.argv[1:3]))
