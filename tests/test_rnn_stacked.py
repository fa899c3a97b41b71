"""The rnn op's per-step paths at sizes where they split: simple and lstm multiply each step's
rows [x, 1, h'] by the stacked [W; b; U] and add each step's share of [dW; db; dU] into a
partial sum per fixed block of batch rows (with sigmoid/tanh gates activated in place, an lstm
with those in one fused pass per row, other activations through a pre-activation copy, no bias
without the column of ones; the first step, whose h' is zero, multiplies [x, 1] by [W; b]
alone and adds nothing to dU, also when it is the only step); gru keeps its own input
projection.

Each case runs a batch spanning several GEMM row panels (6 rows on AVX-512, 6 or 8 on the
others) and big enough that the recurrence is cut among threads (n T G u u >= 2^21), against
the NumPy twin on 1, 2 and 3 threads, and the thread counts must agree bit for bit. simple and
lstm keep each backward block's rows time major (two blocks, split on a panel boundary):
1 thread runs its rows as two pieces, and on 3 threads (30 rows, 5 panels of 6) the middle
thread's rows straddle the split, so both ways of cutting a thread's rows at it are run.
Tolerances. Forward: float32 against float64, sums of up to F + u + 1 = 107 products of
weights ~0.5 through up to 9 steps: the rounding of one such sum is ~107 * 6e-8 * (sum of
|terms| ~ 50) ~ 3e-4 at worst and ~1e-5 typically, so 1e-4 times the output's scale
(max(1, largest |output|): the relu cell is no contraction and its outputs reach ~15); a
wrong gate or a swapped weight block moves outputs by ~0.1. Gradients 2e-4 of the largest
entry, as in test_rnn.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from test_rnn import MSE, Case, _feed, _param_grads, _rng

import pynn
from pynn.reference import graph as ref_graph

BATCH = 30
CASES = [
    Case("lstm", 8, 5, 48),
    Case("lstm", 40, 3, 21, masked=True, return_sequences=True),  # long, u off the lanes
    Case("lstm", 7, 3, 52, masked=True, go_backwards=True, return_sequences=True),
    Case("lstm", 8, 4, 47, use_bias=False, return_state=True),
    Case("lstm", 1, 3, 140, return_state=True),  # the first step is the only one
    Case("simple", 1, 4, 280, use_bias=False),
    Case("lstm", 9, 3, 45, activation="relu", return_sequences=True),
    Case("simple", 8, 6, 100, masked=True, return_sequences=True),
    Case("simple", 8, 2, 95, activation="softsign", return_state=True),
    Case("gru", 8, 4, 64, masked=True, return_sequences=True),
]


def _on_threads(threads, fn):
    before = pynn.get_num_threads()
    try:
        pynn.set_num_threads(threads)
        return fn()
    finally:
        pynn.set_num_threads(before)


def _case_big_enough_to_split(case):
    gates = {"simple": 1, "lstm": 4, "gru": 3}[case.cell]
    return BATCH * case.T * gates * case.u * case.u >= 1 << 21


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_and_gradients_match_twin_on_one_and_two_threads(case):
    assert _case_big_enough_to_split(case)
    rng = _rng("stacked", case.name)
    ps, xs = case.params(rng), case.inputs(rng, BATCH)
    spec = case.spec(ps, xs)
    want_y = ref_graph.predict(spec, xs)[0]
    out, _ = ref_graph.forward(spec, xs)
    target = rng.standard_normal(out[0].shape).astype(np.float32)
    _, _, want_g, _ = ref_graph.gradients(spec, xs, [target], [MSE])

    def run():
        y = np.empty(want_y.shape, np.float32)
        spec.to_core().predict(_feed(xs), [y])
        return y, _param_grads(spec.to_core([MSE]), len(ps), _feed(xs), [target])

    results = [_on_threads(t, run) for t in (1, 2, 3)]
    for y, grads in results:
        np.testing.assert_allclose(y, want_y, rtol=0,
                                   atol=1e-4 * max(1.0, float(np.abs(want_y).max())))
        for k, (a, b) in enumerate(zip(grads, want_g)):
            assert a.shape == b.shape
            assert np.abs(a - b).max() <= 2e-4 * np.abs(b).max(), (case.name, k)
    (y1, g1), *others = results
    for y2, g2 in others:
        assert np.array_equal(y1, y2)
        assert all(np.array_equal(a, b) for a, b in zip(g1, g2))


def test_lstm_training_is_bitwise_identical_on_one_two_and_three_threads():
    """A whole fit (the stacked step GEMM, the fused gates, the per-block gradient sums, Adam)."""
    rng = _rng("fit")
    x = rng.standard_normal((64, 10, 7)).astype(np.float32)
    y = rng.integers(0, 4, 64)

    def fit():
        pynn.utils.set_random_seed(3)
        model = pynn.Sequential([pynn.Input((10, 7)), pynn.layers.LSTM(40),
                                 pynn.layers.Dense(4, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        return model.get_weights()

    w1 = _on_threads(1, fit)
    for threads in (2, 3):
        assert all(np.array_equal(a, b) for a, b in zip(w1, _on_threads(threads, fit)))

