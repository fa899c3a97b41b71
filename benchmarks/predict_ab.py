"""Predict of the 784-256-128-10 MLP against ONNX Runtime in one process, for comparing two
builds of pynn on a shared machine: run it once per build, alternating, several times.

    PYTHONPATH=/path/to/build_a python benchmarks/predict_ab.py 2
    PYTHONPATH=/path/to/build_b python benchmarks/predict_ab.py 2

Prints, for the given thread count: one-row latency (best 20-call window of 600: the windows
when the process had its core and its cache) and 10,000-row throughput (best and median of 25
calls, and the process CPU seconds per call, which other tenants disturb less than wall time),
each beside ONNX Runtime's in the same run.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_predict import SIZES, onnx_session  # noqa: E402

import pynn  # noqa: E402
from pynn import layers as L  # noqa: E402


def best_window(fn: Callable[[], object], windows: int = 600, calls: int = 20) -> float:
    best = float("inf")
    for _ in range(windows):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t) / calls)
    return best


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else pynn.get_num_threads()
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([pynn.Input((SIZES[0],)), L.Dense(SIZES[1], activation="relu"),
                             L.Dense(SIZES[2], activation="relu"),
                             L.Dense(SIZES[3], activation="softmax")])
    model.build()
    pynn.set_num_threads(threads)
    sess = onnx_session(model.get_weights())
    rng = np.random.default_rng(2)
    one = rng.random((1, SIZES[0]), dtype=np.float32)
    big = rng.random((10000, SIZES[0]), dtype=np.float32)
    load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
    print(f"{threads} thread(s), load {load}")

    p1 = best_window(lambda: model.predict(one, verbose=0))
    o1 = best_window(lambda: sess.run(None, {"x": one}))
    print(f"1 row: pynn {p1 * 1e6:.2f} us, onnxruntime {o1 * 1e6:.2f} us "
          f"(pynn time / ort time {p1 / o1:.2f})")

    fns = {"pynn": lambda: model.predict(big, batch_size=10000, verbose=0),
           "ort": lambda: sess.run(None, {"x": big})}
    wall: dict = {k: [] for k in fns}
    cpu: dict = {k: [] for k in fns}
    for _ in range(25):
        for k, f in fns.items():
            c, t = time.process_time(), time.perf_counter()
            f()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    p, o = sorted(wall["pynn"]), sorted(wall["ort"])
    print(f"10,000 rows: pynn best {1e4 / p[0]:,.0f} rows/s median {1e4 / p[12]:,.0f}; "
          f"onnxruntime best {1e4 / o[0]:,.0f} median {1e4 / o[12]:,.0f}; pynn/ort "
          f"{o[0] / p[0]:.2f}x best, {o[12] / p[12]:.2f}x median; CPU s per call pynn "
          f"{min(cpu['pynn']):.4f}, onnxruntime {min(cpu['ort']):.4f}")


if __name__ == "__main__":
    main()
