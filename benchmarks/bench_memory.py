"""Peak memory of training the Fashion-MNIST MLP (784-256-128-10, ReLU, Adam 1e-3, batch 128)
on the full training set, against the size of the data.

A report, not a threshold test: run it as a script (or through pytest, which prints the same
table). Each figure comes from a fresh child process, so nothing else is resident:

    python -P benchmarks/bench_memory.py [--epochs 1]
    pytest benchmarks/bench_memory.py -s

Figures (RSS from /proc/self/statm, peak from VmHWM in /proc/self/status):
    baseline       after `import pynn` and NumPy
    data           after loading the uint8 images and converting them to float32 / 255
    peak           the process's peak RSS over the whole run (VmHWM)
    during fit     the largest RSS sampled at fit's batch boundaries
    over data      during fit - data: what training adds on top of the user's arrays
The float32 training images are 60000 x 784 x 4 B = 179.4 MiB; pynn gathers batches by index
from them, so training should add little beyond the model (0.9 MiB of weights, x4 with Adam's
slots and gradients) and per-batch buffers.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys


def _rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib():
    # VmHWM: this process's high-water mark (ru_maxrss would include the parent's, as it
    # survives exec)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(epochs=1, validation=False):
    """Runs in the child: returns the figures as a dict."""
    import time

    import numpy as np

    import pynn
    from pynn.datasets import fashion_mnist

    base = _rss_mib()
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(download=False)
    x = (x_train.reshape(len(x_train), -1).astype(np.float32) / 255.0)
    del x_train
    data_bytes = x.nbytes + y_train.nbytes
    after_data = _rss_mib()
    peak_before_fit = _peak_mib()
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([pynn.Input((784,)), pynn.layers.Dense(256, activation="relu"),
                             pynn.layers.Dense(128, activation="relu"),
                             pynn.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    during = [_rss_mib()]
    # RSS sampled at every batch boundary: the high-water mark of fit itself (ru_maxrss is
    # dominated by the conversion of the images above).
    probe = pynn.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: during.append(_rss_mib()),
        on_epoch_end=lambda epoch, logs: during.append(_rss_mib()))
    t0 = time.perf_counter()
    model.fit(x, y_train, epochs=epochs, batch_size=128, verbose=0, callbacks=[probe],
              validation_split=0.1 if validation else 0.0)
    seconds = time.perf_counter() - t0
    after_fit = _rss_mib()
    peak = _peak_mib()
    return {"samples": int(len(x)), "data_mib": data_bytes / 2**20, "baseline_mib": base,
            "after_data_mib": after_data, "peak_before_fit_mib": peak_before_fit,
            "after_fit_mib": after_fit, "peak_mib": peak,
            "fit_max_rss_mib": max(during), "fit_over_data_mib": max(during) - after_data,
            "params": int(model.count_params()), "epochs": epochs, "seconds": seconds}


def run(epochs=1, validation=False):
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys, json; sys.path.insert(0, {here!r}); "
            f"import bench_memory as b; print(json.dumps(b.measure({epochs}, {validation})))")
    proc = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(r):
    lines = [f"Fashion-MNIST MLP 784-256-128-10 ({r['params']:,} parameters), "
             f"{r['samples']} samples, {r['epochs']} epoch(s) in {r['seconds']:.2f} s",
             f"  data (float32 x + labels)   {r['data_mib']:8.1f} MiB",
             f"  RSS baseline (import pynn)  {r['baseline_mib']:8.1f} MiB",
             f"  RSS after loading data      {r['after_data_mib']:8.1f} MiB",
             f"  peak RSS before fit         {r['peak_before_fit_mib']:8.1f} MiB "
             f"(the uint8 -> float32 conversion)",
             f"  peak RSS (whole run)        {r['peak_mib']:8.1f} MiB",
             f"  max RSS during fit          {r['fit_max_rss_mib']:8.1f} MiB",
             f"  RSS after fit               {r['after_fit_mib']:8.1f} MiB",
             f"  fit adds over the data      {r['fit_over_data_mib']:8.1f} MiB",
             f"  peak / data                 {r['peak_mib'] / r['data_mib']:8.2f}",
             f"  max during fit / data       {r['fit_max_rss_mib'] / r['data_mib']:8.2f}"]
    return "\n".join(lines)


def test_peak_memory_of_the_fashion_mnist_mlp():
    import pytest

    try:
        r = run(1)
    except RuntimeError as exc:
        if "DataNotFoundError" in str(exc):
            pytest.skip("the full Fashion-MNIST is not installed (apt-get install "
                        "dataset-fashion-mnist)")
        raise
    print("\n" + report(r))
    assert r["peak_mib"] >= r["data_mib"]  # a sanity check of the measurement, not a target


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--validation", action="store_true", help="validation_split=0.1")
    args = ap.parse_args()
    print(report(run(args.epochs, args.validation)))
