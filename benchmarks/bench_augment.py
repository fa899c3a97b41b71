"""RandomRotation's resampling (the image_augment op, bilinear, forward and input gradient)
against PyTorch's affine_grid + grid_sample doing the same work, in the same run.

    PYTHONPATH=. python benchmarks/bench_augment.py

Prints, per shape and thread count, the median of 7 repeats of each side and pynn / torch.
The two are not bit-equal (torch pads with zeros or reflection about pixel edges), only the
same amount of work: one bilinear sample per output value, one scatter per input gradient.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch

import pynn
from pynn import layers as L
from pynn.models.graph_spec import GraphSpec


def _median(fn, repeats=7):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(shape, threads):
    n, h, w, c = shape
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    layer = L.RandomRotation(0.2, fill_mode="constant", seed=1)
    layer._force_training = True            # active outside training, as layer(x, True)
    spec = GraphSpec()
    spec.outputs = layer._emit(spec, [spec.add_input(shape[1:])])
    g = spec.to_core()
    out = np.empty_like(x)
    dy = np.ones_like(x)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_(True)
    ang = torch.rand(n) * 0.4 * np.pi
    theta = torch.stack([torch.stack([ang.cos(), -ang.sin(), torch.zeros(n)], 1),
                         torch.stack([ang.sin(), ang.cos(), torch.zeros(n)], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(xt.shape), align_corners=True)

    def torch_fwd():
        with torch.no_grad():
            torch.nn.functional.grid_sample(xt, grid, align_corners=True)

    def torch_fwd_bwd():
        xt.grad = None
        torch.nn.functional.grid_sample(xt, grid, align_corners=True).sum().backward()

    pynn.set_num_threads(threads)
    torch.set_num_threads(threads)
    p_f = _median(lambda: g.predict([x.reshape(n, -1)], [out], n))
    t_f = _median(torch_fwd)
    p_b = _median(lambda: g.input_gradient([x], [dy]))
    t_b = _median(torch_fwd_bwd)
    print(f"{str(shape):18s} threads {threads}  forward pynn {p_f * 1e3:7.2f} ms torch "
          f"{t_f * 1e3:7.2f} ms ratio {p_f / t_f:5.2f} | fwd+input grad pynn {p_b * 1e3:7.2f} "
          f"ms torch {t_b * 1e3:7.2f} ms ratio {p_b / t_b:5.2f}")


if __name__ == "__main__":
    before = pynn.get_num_threads()
    for shape in ((128, 28, 28, 1), (64, 32, 32, 3), (16, 64, 64, 16)):
        for threads in (1, 2):
            bench(shape, threads)
    pynn.set_num_threads(before)
