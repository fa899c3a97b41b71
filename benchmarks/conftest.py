"""Shared benchmark plumbing: every bench records (group, case, impl, seconds, flops) and the
session ends with one table per group giving GFLOP/s, % of this core's measured FP32 peak, and
each implementation's speed relative to the baselines measured in the same run."""
from __future__ import annotations

import collections

import pytest

RESULTS: dict = collections.OrderedDict()
NOTES: list = []  # free lines printed after the tables (figures that are not times)


def record(group: str, case: str, impl: str, seconds: float, flops: float | None = None):
    RESULTS.setdefault(group, collections.OrderedDict()).setdefault(case, {})[impl] = (
        seconds, flops)


def torch_epoch(net, opt, xt, yt, batch):
    """One PyTorch training epoch over (xt, yt) in shuffled mini-batches, cross-entropy loss:
    the loop every side-by-side benchmark times against pynn's fit."""
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(xt)

    def epoch():
        net.train()
        perm = torch.randperm(n)
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xt[idx]), yt[idx]).backward()
            opt.step()
    return epoch


def thread_limits(threads):
    """NumPy's BLAS (threadpoolctl) and, when installed, PyTorch limited to `threads`."""
    from threadpoolctl import threadpool_limits

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(threads)
    return threadpool_limits(threads)


def timed(benchmark, fn, *, rounds=20, iterations=1, warmup=2):
    benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=warmup)
    # The minimum is the least disturbed by the other tenants of a shared machine.
    return benchmark.stats.stats.min


@pytest.fixture(scope="session")
def peak_gflops():
    from pynn import _core

    return max(_core.measure_fma_peak() for _ in range(3))


@pytest.fixture
def recorder():
    return record


def pytest_terminal_summary(terminalreporter):
    if NOTES:
        terminalreporter.section("pynn notes")
        for line in NOTES:
            terminalreporter.write_line(line)
    if not RESULTS:
        return
    tr = terminalreporter
    try:
        from pynn import _core

        peak = max(_core.measure_fma_peak() for _ in range(3))
    except Exception:  # pragma: no cover - only when the core is missing
        peak = None
    tr.section("pynn ratios (same run)")
    if peak:
        tr.write_line(f"measured FP32 FMA peak of one core: {peak:.1f} GFLOP/s")
    for group, cases in RESULTS.items():
        tr.write_line("")
        tr.write_line(f"[{group}]")
        impls = []
        for per in cases.values():
            for name in per:
                if name not in impls:
                    impls.append(name)
        header = f"{'case':34s}" + "".join(f"{i:>14s}" for i in impls)
        others = [i for i in impls if i != "pynn"]
        header += "".join(f"{'pynn vs ' + o:>18s}" for o in others)
        tr.write_line(header)
        for case, per in cases.items():
            line = f"{case:34s}"
            for impl in impls:
                if impl not in per:
                    line += f"{'-':>14s}"
                    continue
                sec, flops = per[impl]
                if flops:
                    gf = flops / sec / 1e9
                    threads = 2 if "2t" in case else 1
                    pct = f" {100 * gf / (peak * threads):3.0f}%" if peak else ""
                    line += f"{gf:8.1f}GF{pct:>4s}"
                else:
                    line += f"{sec * 1e6:11.1f}us "
            for o in others:
                if "pynn" in per and o in per:
                    line += f"{per[o][0] / per['pynn'][0]:17.2f}x"
                else:
                    line += f"{'-':>18s}"
            tr.write_line(line)
