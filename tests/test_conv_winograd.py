"""The Winograd F(2x2, 3x3) forward of the conv op (nn/conv_direct_impl.h, wino_forward):
3x3 windows of stride 1 and dilation 1, groups 1, at least 16 input channels, on AVX2 /
AVX-512, unfused and fused with a 2x2 max pooling; with at least 16 filters the input
gradient too (conv.cpp, input_grad_wino: the same kernel on dz in a zero border, with the
kernel turned and transposed), checked by test_conv's gradient test on every case here.

Edge sizes: odd output heights and widths (tiles cut by the output's edge), outputs of one
position, "same" padding (tiles reading zeros past every border), channel counts that are
not a multiple of a vector (17, 20), filter counts 1, 5, 33 (vector tails) and 64, tile
counts that leave blocks of 1..WT-1 tiles, no bias; non-contiguous inputs.

Tolerances. Winograd's sums are not the plain ones: the 16 products per channel are taken
on transformed inputs (sums of up to 4 inputs) and transformed weights (sums of up to 9
weights, times 1/4), and each output is then a sum of 9 of those products, so a result
carries a few more roundings of terms up to about 4x the size of a plain product. Against
the float64 twin: test_conv's forward tolerance (rtol 1e-5 + atol 1e-5 sqrt(9 C)) scaled by
4 for that; gradients, computed from these outputs by the unchanged backward, keep
test_conv's 2e-4 of the largest entry. A wrong transform entry misses by O(1).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import test_conv as tc
from test_conv import _rng, conv
from test_conv_pool_fusion import ONE, _conv_attrs, test_fused_equals_apart_bitwise_and_matches_twin

import pynn
from pynn.reference import graph as ref_graph

CASES = [
    conv("wino_c16_odd_5x6", (7, 8, 16), (3, 3, 16, 5), "relu"),
    conv("wino_c17_same_f33", (6, 5, 17), (3, 3, 17, 33), padding="same"),
    conv("wino_c32_f64_mnist", (13, 13, 32), (3, 3, 32, 64), "relu"),
    conv("wino_c20_one_position_f1", (3, 3, 20), (3, 3, 20, 1), "tanh"),
    conv("wino_c40_same_2x9_nobias", (2, 9, 40), (3, 3, 40, 7), padding="same",
         use_bias=False),
    conv("wino_c16_same_11x13_tiles", (11, 13, 16), (3, 3, 16, 18), "relu", padding="same"),
    # the input gradient by Winograd: channels (its outputs) and filters (its inputs) not
    # multiples of a vector, an odd output in both axes with "valid" padding; one position
    conv("wino_dx_c24_f20_valid_odd", (6, 9, 24), (3, 3, 24, 20), "relu"),
    conv("wino_dx_one_position_f16", (3, 3, 16), (3, 3, 16, 16), "linear"),
]


def _forward_close(case, batch):
    rng = _rng("wino_fwd", case.name, batch)
    ps = case.params(rng)
    x = rng.standard_normal((batch,) + case.shape).astype(np.float32)
    spec = case.spec(ps)
    got = np.empty((batch,) + spec.shapes[spec.outputs[0]], np.float32)
    spec.to_core().predict([x], [got])
    want = ref_graph.predict(spec, [x])[0]
    np.testing.assert_allclose(got, want, rtol=4e-5, atol=4 * tc._atol(case))
    return got, want


# large enough for the weight gradient to split its 16 sums between two threads, and for
# its chunks of 100 tiles to end inside a sample (64 tiles each)
BIG = conv("wino_big_c32_f64_same", (16, 16, 32), (3, 3, 32, 64), "relu", padding="same")


@pytest.mark.parametrize("case", CASES + [BIG], ids=repr)
def test_winograd_forward_and_gradients_match_twin(case):
    _forward_close(case, 3)
    tc.test_core_gradients_match_twin(case)


def test_winograd_error_on_the_mnist_layer_is_of_rounding_size():
    """The keras.io convnet's second layer at batch 4: the worst error, relative to the
    largest output, stays within 1e-5 (float32 rounding of the transformed sums)."""
    got, want = _forward_close(CASES[2], 4)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert 0 < err < 1e-5


@pytest.mark.parametrize("case", [CASES[1], CASES[5], CASES[6], BIG], ids=repr)
def test_winograd_threads_and_batch_bitwise(case):
    tc.test_results_do_not_depend_on_threads_or_batch(case)


def test_winograd_layer_on_a_non_contiguous_input():
    from pynn import layers

    rng = _rng("wino", "strided")
    wide = rng.standard_normal((3, 9, 20, 24)).astype(np.float32)
    x = wide[:, :, ::2, 2:18]          # (3, 9, 10, 16), strided in two axes
    model = pynn.Sequential([pynn.Input((9, 10, 16)),
                             layers.Conv2D(21, (3, 3), padding="same", activation="relu")])
    got = model.predict(x, verbose=0)
    assert np.array_equal(got, model.predict(np.ascontiguousarray(x), verbose=0))
    k, b = model.get_weights()
    case = conv("strided", (9, 10, 16), k.shape, "relu", padding="same")
    want = ref_graph.predict(case.spec([k, b]), [np.ascontiguousarray(x)])[0]
    np.testing.assert_allclose(got, want, rtol=4e-5, atol=4 * tc._atol(case))


FUSED = [
    ("wino_pool_same_c17_f33", (7, 9, 17),
     [((3, 3, 17, 33), _conv_attrs("relu", padding="same"), True)], 3),
    ("wino_pool_odd_c16_f5_nobias", (10, 11, 16),
     [((3, 3, 16, 5), _conv_attrs("linear", use_bias=False), True)], 2),
    # a second layer (dx wanted) by Winograd, fused: its 9x10 output pooled to 4x5, so dz
    # covers 8x10 positions and dx is computed on rows 0..9 of 11 only (all 11 apart)
    ("wino_pool_second_layer_c16_f24", (11, 12, 3),
     [((3, 3, 3, 16), _conv_attrs("linear", padding="same"), False),
      ((3, 3, 16, 24), _conv_attrs("relu"), True)], 3),
]


@pytest.mark.parametrize("case", FUSED, ids=lambda c: c[0])
def test_winograd_fused_with_pooling_equals_apart(case):
    test_fused_equals_apart_bitwise_and_matches_twin(case)


_OTHER_ISA = """
import sys
sys.path.insert(0, {tests!r})
import pynn, test_conv_winograd as t
for case in t.CASES:
    t.test_winograd_forward_and_gradients_match_twin(case)
for case in t.FUSED + [t.ONE_WIDE]:
    t.test_winograd_fused_with_pooling_equals_apart(case)
print(pynn.kernel_info()["arch"])
"""
ONE_WIDE = next(c for c in ONE if c[0] == "wide_c32_f64")


@pytest.mark.parametrize("arch", ["avx2", "avx512"])
def test_winograd_on_every_simd_kernel(arch):
    """Both instantiations (AVX2: blocks of 6 tiles, AVX-512: 12) in a subprocess."""
    from pynn import _core

    if not _core.cpu_supports(arch):
        pytest.skip(f"this CPU has no {arch}")
    code = _OTHER_ISA.format(tests=os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYNN_ARCH=arch),
                         capture_output=True, text=True, timeout=300, check=False, cwd="/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-1] == arch
