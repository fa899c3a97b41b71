"""Forecasting a noisy sine wave with recurrent networks (SimpleRNN and GRU).

    python examples/sine_forecast.py            # 2,000 windows, 20 epochs
    python examples/sine_forecast.py --small    # a few hundred windows, a few epochs

The series is a sum of two sines plus noise. Each sample is a window of 30 past values; the
target is the next value. Both networks are compared with the naive forecast "the next value
equals the last one" on a held-out stretch of the series.
"""
from __future__ import annotations

import argparse

import numpy as np

import pynn
from pynn import layers

WINDOW = 30


def make_series(length, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)
    series = np.sin(0.1 * t) + 0.5 * np.sin(0.033 * t + 1.0) + 0.05 * rng.standard_normal(length)
    return series.astype(np.float32)


def windows(series, window=WINDOW):
    """(n, window, 1) inputs and (n, 1) next values."""
    idx = np.arange(len(series) - window)[:, None] + np.arange(window)
    return series[idx][:, :, None], series[window:][:, None]


def build(kind, seed):
    pynn.utils.set_random_seed(seed)
    rnn = layers.SimpleRNN(32) if kind == "SimpleRNN" else layers.GRU(32)
    model = pynn.Sequential([pynn.Input((WINDOW, 1)), rnn, layers.Dense(1)])
    model.compile(optimizer=pynn.optimizers.Adam(3e-3), loss="mse")
    return model


def main(small=False, epochs=None, seed=0):
    length = 600 if small else 2600
    series = make_series(length, seed)
    split = int(length * 0.75)
    x_train, y_train = windows(series[:split])
    x_test, y_test = windows(series[split - WINDOW:])
    epochs = epochs or (4 if small else 20)
    naive = float(np.mean((x_test[:, -1] - y_test) ** 2))
    print(f"naive forecast (repeat the last value): test mse {naive:.4f}")
    results = {"naive": naive}
    for kind in ("SimpleRNN", "GRU"):
        model = build(kind, seed)
        model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
        mse = float(model.evaluate(x_test, y_test, verbose=0))
        results[kind] = mse
        print(f"{kind}(32): test mse {mse:.4f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    main(small=args.small, epochs=args.epochs)
