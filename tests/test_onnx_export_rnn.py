"""ONNX export of the recurrent layers in every arrangement pynn has: go_backwards (direction
"reverse"), return_state (Y_h, Y_c), Bidirectional with each merge mode, and masks from
Embedding(mask_zero=True) and Masking, on right-padded, left-padded, holed and fully
masked sequences. ONNX Runtime's output is compared with model.predict on random weights.

Tolerance (test_onnx_export._check): float32 on both sides through seven recurrent steps with
outputs of order 1; summation orders and tanh/sigmoid formulas differ by a few ulps a step,
well inside its 2e-5 (atol).
"""
from __future__ import annotations

import numpy as np
import pytest
from test_onnx_export import _check as _compare

import pynn
from pynn import layers as L

STEPS = 7


def _ids():
    x = np.random.default_rng(3).integers(1, 9, (6, STEPS)).astype(np.float32)
    x[0, 4:] = 0     # right padding (the case ONNX's sequence_lens covers by itself)
    x[1, :2] = 0     # left padding
    x[2, 3] = 0      # a hole
    x[3, :] = 0      # nothing left
    return x


def _features():
    x = np.random.default_rng(4).normal(size=(6, STEPS, 3)).astype(np.float32)
    x[0, 5:] = 0
    x[1, :2] = 0
    x[2, 3] = 0
    x[4] = 0
    return x


def _head(mask):
    """The model's input and the sequence the recurrent layer reads, with the mask asked."""
    if mask == "embedding":
        inp = pynn.Input((STEPS,))
        return inp, L.Embedding(9, 3, mask_zero=True)(inp), _ids()
    inp = pynn.Input((STEPS, 3))
    return inp, (L.Masking()(inp) if mask == "masking" else inp), _features()


CASES = [  # (cell, return_sequences, go_backwards, return_state): each flag on and off
    (L.SimpleRNN, True, True, False), (L.SimpleRNN, False, False, True),
    (L.LSTM, True, False, True), (L.LSTM, False, True, True), (L.LSTM, True, True, False),
    (L.GRU, False, True, False), (L.GRU, True, True, True), (L.GRU, True, False, False),
]


@pytest.mark.parametrize("mask", [None, "embedding", "masking"])
@pytest.mark.parametrize("cell,seqs,backwards,state", CASES)
def test_recurrent_layer_matches_predict(tmp_path, mask, cell, seqs, backwards, state):
    inp, h, x = _head(mask)
    out = cell(4, return_sequences=seqs, go_backwards=backwards, return_state=state)(h)
    _compare(pynn.Model(inp, out), x, tmp_path)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("mask", [None, "embedding", "masking"])
def test_bidirectional_matches_predict(tmp_path, merge_mode, mask):
    inp, h, x = _head(mask)
    y = L.Bidirectional(L.LSTM(4, return_sequences=True), merge_mode=merge_mode)(h)
    y = L.Bidirectional(L.GRU(3, return_state=True), merge_mode=merge_mode)(
        y if merge_mode is not None else L.Concatenate()(y))
    _compare(pynn.Model(inp, y), x, tmp_path)


def test_zero_output_for_mask(tmp_path):
    inp, h, x = _head("embedding")
    y = L.SimpleRNN(4, return_sequences=True, zero_output_for_mask=True)(h)
    _compare(pynn.Model(inp, y), x, tmp_path)
