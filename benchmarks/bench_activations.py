"""Activation kernels against NumPy, measured in the same run (never a pass/fail threshold).

    pytest benchmarks/bench_activations.py --benchmark-group-by=param:name   # pytest-benchmark
    python benchmarks/bench_activations.py                                   # ratio table

The NumPy side is the plain composition a user would write (the stable form where the naive
one overflows); ours is the in-place kernel the GEMM epilogue calls.
"""
import timeit

import numpy as np
import pytest

from pynn import _core

SHAPE = (128, 256)  # one dense layer's output for batch 128 (the epilogue's working set)


def _np_sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


NUMPY = {
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": _np_sigmoid,
    "tanh": np.tanh,
    "silu": lambda z: z * _np_sigmoid(z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "softplus": lambda z: np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))),
    "mish": lambda z: z * np.tanh(np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))),
    "gelu": lambda z: 0.5 * z * (1 + np.tanh(0.7978845608 * (z + 0.044715 * z * z * z))),
}
PARAMS = {"elu": [1.0], "softplus": [1.0], "gelu": [1.0]}


def _data():
    return (np.random.default_rng(0).standard_normal(SHAPE) * 3).astype(np.float32)


@pytest.mark.parametrize("name", sorted(NUMPY))
@pytest.mark.parametrize("impl", ["pynn", "numpy"])
def test_forward(benchmark, name, impl):
    z = _data()
    if impl == "pynn":
        buf = z.copy()
        p = PARAMS.get(name, [])
        benchmark(lambda: _core.activation_forward(buf, name, p))  # in place, as in the epilogue
    else:
        benchmark(NUMPY[name], z)


def main():
    z = _data()
    buf = z.copy()
    print(f"arch={_core.arch()} shape={SHAPE} (float32), best of 7 x 200 calls")
    print(f"{'name':10s} {'pynn us':>9s} {'numpy us':>9s} {'speed-up':>9s}")
    for name in sorted(NUMPY):
        p = PARAMS.get(name, [])
        t_ours = min(timeit.repeat(lambda name=name, p=p: _core.activation_forward(buf, name, p),
                                   number=200, repeat=7)) / 200
        t_np = min(timeit.repeat(lambda name=name: NUMPY[name](z), number=200, repeat=7)) / 200
        print(f"{name:10s} {t_ours * 1e6:9.1f} {t_np * 1e6:9.1f} {t_np / t_ours:8.1f}x")


if __name__ == "__main__":
    main()
