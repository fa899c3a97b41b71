"""Keras 3's per-gate dropout masks of an lstm or gru with recurrent_dropout (its
implementation 1): one input mask and one recurrent mask per gate (4 for the lstm, 3 for the
gru: z, r and the candidate, whose mask a gru without reset_after applies to h' inside r h'),
independent, drawn once per sequence.

The op draws them as the dropout op over (n, G, F) and (n, G, u) arrays (tests/test_rnn.py's
_drop_masks); here the op's gradients must match the NumPy twin given those per-gate masks
and must not match the twin given gate 0's masks shared by every gate (so the gates really
use different masks), on batches that span several threads' blocks, bitwise the same on 1
and 2 threads. A statistical check then holds the per-gate draws to the Bernoulli law that
Keras's masks follow. Tolerance: 2e-4 of the largest gradient, as in test_rnn.py (float32
sums of up to F + u + 1 terms over T steps against float64).
"""
from __future__ import annotations

import numpy as np
import pytest
from test_rnn import MSE, Case, _drop_masks, _feed, _param_grads, _rng
from test_rnn_stacked import _on_threads

from pynn.reference import graph as ref_graph

CASES = [
    Case("lstm", 6, 5, 40, return_sequences=True, dropout=0.3, recurrent_dropout=0.4, seed=11),
    Case("lstm", 5, 3, 37, masked=True, go_backwards=True, recurrent_dropout=0.25, seed=5),
    Case("lstm", 4, 4, 20, activation="relu", dropout=0.2, recurrent_dropout=0.5, seed=2),
    Case("gru", 6, 5, 40, return_sequences=True, dropout=0.3, recurrent_dropout=0.4, seed=11),
    Case("gru", 5, 3, 37, masked=True, go_backwards=True, recurrent_dropout=0.25, seed=5),
    Case("gru", 4, 4, 20, reset_after=False, dropout=0.2, recurrent_dropout=0.5, seed=2),
    Case("gru", 5, 3, 24, reset_after=False, masked=True, return_state=True,
         recurrent_dropout=0.3, seed=8),
    Case("gru", 1, 4, 20, dropout=0.3, recurrent_dropout=0.4, seed=3),
    Case("gru", 4, 4, 20, activation="relu", use_bias=False, dropout=0.2,
         recurrent_dropout=0.5, seed=9),
]
GATES = {"lstm": 4, "gru": 3}


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_per_gate_masks_match_the_twin_on_one_and_two_threads(case):
    n = 30
    rng = _rng("pergate", case.name)
    ps, xs = case.params(rng), case.inputs(rng, n)
    spec = case.spec(ps, xs)
    out, _ = ref_graph.forward(spec, xs)
    target = rng.standard_normal(out[0].shape).astype(np.float32)

    def grads():
        return _param_grads(spec.to_core([MSE]), len(ps), _feed(xs), [target])

    g1, g2 = _on_threads(1, grads), _on_threads(2, grads)
    assert all(np.array_equal(a, b) for a, b in zip(g1, g2))
    masks = _drop_masks(n, case, 0)   # the first training step draws from stream 0
    G = GATES[case.cell]
    assert masks["h"].shape == (n, G, case.u)
    _, _, want, _ = ref_graph.gradients(spec, xs, [target], [MSE], dropout_masks={0: masks})
    for a, b in zip(g1, want):
        assert np.abs(a - b).max() <= 2e-4 * np.abs(b).max()
    shared = {k: np.repeat(m[:, :1], G, axis=1) for k, m in masks.items()}
    _, _, other, _ = ref_graph.gradients(spec, xs, [target], [MSE], dropout_masks={0: shared})
    if case.T > 1:   # (at T = 1 h' is the zero state: its masks cannot matter)
        assert np.abs(g1[1] - other[1]).max() > 1e-2 * np.abs(other[1]).max()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_per_gate_masks_are_independent_bernoulli_draws(cell):
    """Each gate keeps an entry with probability 1 - rate, scaled by 1 / (1 - rate), and two
    gates agree on an entry with probability p^2 + (1 - p)^2 (independence); for shared masks
    that would be 1. Bounds: 6 standard deviations of the binomial counts (n 4 u = 32000
    entries per gate, 8000 pairs compared per gate pair), a false alarm ~1e-9."""
    rate = 0.3
    case = Case(cell, 2, 3, 40, dropout=rate, recurrent_dropout=rate, seed=123)
    G = GATES[cell]
    n = 200
    for key in ("x", "h"):
        m = _drop_masks(n, case, 7)[key]
        width = m.shape[2]
        assert set(np.unique(m)) <= {0.0, np.float64(np.float32(1 / (1 - rate)))}
        kept = m != 0
        for g in range(G):
            count, total = kept[:, g].sum(), n * width
            sd = np.sqrt(total * rate * (1 - rate))
            assert abs(count - total * (1 - rate)) < 6 * sd
        p_same = rate ** 2 + (1 - rate) ** 2
        for g in range(G):
            for h in range(g + 1, G):
                same, total = (kept[:, g] == kept[:, h]).sum(), n * width
                sd = np.sqrt(total * p_same * (1 - p_same))
                assert abs(same - total * p_same) < 6 * sd


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_per_gate_training_ignores_layout_and_threads(reset_after):
    """fit with a per-gate-dropout GRU: strided and Fortran-ordered inputs and 2 threads give
    bitwise the weights of contiguous inputs on 1 thread (64 rows x 8 steps x 3 x 64 units x
    64 is past the op's threshold for splitting the batch rows between threads)."""
    import pynn
    from pynn import layers

    rng = np.random.default_rng(4)
    x = rng.standard_normal((128, 8, 3)).astype(np.float32)
    y = rng.standard_normal((128, 2)).astype(np.float32)
    wide = np.zeros((128, 16, 6), np.float32)
    wide[:, ::2, ::2] = x
    strided = wide[:, ::2, ::2]

    def train(data, threads):
        def run():
            pynn.utils.set_random_seed(1)
            model = pynn.Sequential([
                pynn.Input((8, 3)),
                layers.GRU(64, dropout=0.3, recurrent_dropout=0.4, reset_after=reset_after),
                layers.Dense(2)])
            model.compile(optimizer="adam", loss="mse")
            model.fit(data, y, batch_size=64, epochs=1, verbose=0)
            return model.get_weights()
        return _on_threads(threads, run)

    base = train(x, 1)
    for got in (train(strided, 1), train(np.asfortranarray(x), 2), train(x, 2)):
        assert all(np.array_equal(a, b) for a, b in zip(base, got))
