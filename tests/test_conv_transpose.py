"""Transposed convolution: the conv_transpose graph op (csrc/nn/ops/conv_transpose.cpp), its
NumPy twin (pynn.reference.conv_transpose) and the Conv1DTranspose / Conv2DTranspose layers.
Keras's own numbers are checked in test_conv_transpose_keras.py.

One table of op cases (kernel 1, stride 1, stride larger than the kernel, odd sizes, a 1x1
input, dilation, output_padding, valid and same, softmax, no bias, a wide channel count)
drives:
  * forward: the C++ graph (float32) against the twin (float64), batches 0, 1 and 3;
  * the twin's backward against central differences (float64);
  * the C++ backward (input, kernel and bias gradients) against the twin's;
  * 1 and 2 threads bitwise, and one row alone bitwise equal to the same row in a batch.

Tolerances, as in test_conv.py: an output sums at most k = kh*kw*C products of O(1) float32
terms: rtol 1e-5 plus atol 1e-5 * sqrt(k). Central differences in float64 with h = 1e-6 err
by about 1e-10: rtol 1e-5 / atol 1e-7. The C++ gradients (float32) against float64 sums of at
most a few thousand terms: 2e-4 of the largest entry, which a missing or doubled term exceeds
by orders of magnitude.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
import test_conv as conv_tests

import pynn
from pynn import layers as L
from pynn.models.graph_spec import GraphSpec, ParamRef
from pynn.reference import conv_transpose as ref_ct
from pynn.reference import graph as ref_graph

LOSS = ("mean_squared_error", False, 1.0, 1.0)


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


class Case:
    """One conv_transpose node: input sample shape, kernel (k..., F, C) and attributes (the
    interface of test_conv.Case that test_conv's checks use)."""

    op = "conv_transpose"

    def __init__(self, name, shape, kernel, act="linear", **attrs):
        rank = len(shape) - 1
        self.name, self.shape, self.kernel = name, tuple(shape), tuple(kernel)
        self.attrs = {"strides": [1] * rank, "padding": "valid", "dilation_rate": [1] * rank,
                      "output_padding": [], "activation": act, "use_bias": True}
        self.attrs.update({k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()})

    def __repr__(self):
        return self.name

    @staticmethod
    def gen(rng, shape):
        return rng.standard_normal(shape)

    def params(self, rng):
        ps = [rng.standard_normal(self.kernel) * 0.5]
        if self.attrs["use_bias"]:
            ps.append(rng.standard_normal(self.kernel[-2]) * 0.1)
        return ps

    def node(self):
        return type("N", (), {"attrs": self.attrs})()

    def out_shape(self, ps):
        y, _ = ref_graph.OPS["conv_transpose"][0](self.node(), [np.zeros((1,) + self.shape)],
                                                   ps, None)
        return y.shape[1:]

    def spec(self, ps):
        spec = GraphSpec()
        x = spec.add_input(self.shape)
        pids = [spec.add_param(ParamRef(np.ascontiguousarray(p, dtype=np.float32), f"p{k}"))
                for k, p in enumerate(ps)]
        spec.outputs = spec.add_node("conv_transpose", [x], [self.out_shape(ps)], pids,
                                     self.attrs, self.name)
        return spec

    def atol(self):
        return 1e-5 * np.sqrt(np.prod(self.kernel[:-2]) * self.kernel[-1])


CASES = [
    Case("t2d_3x3_s2_same", (5, 6, 3), (3, 3, 4, 3), "relu", strides=(2, 2), padding="same"),
    Case("t2d_1x1", (4, 5, 6), (1, 1, 3, 6)),
    Case("t2d_1x1_s3_gaps", (3, 4, 2), (1, 1, 3, 2), strides=(3, 3)),
    Case("t2d_stride_gt_kernel_same", (4, 3, 2), (2, 2, 3, 2), "tanh", strides=(3, 3),
         padding="same"),
    Case("t2d_valid_output_padding", (4, 5, 3), (3, 3, 2, 3), "sigmoid", strides=(3, 3),
         output_padding=(1, 2)),
    Case("t2d_same_output_padding", (5, 4, 2), (4, 3, 3, 2), strides=(2, 2), padding="same",
         output_padding=(0, 1)),
    Case("t2d_odd_same_k5_s2_op0", (5, 3, 2), (5, 5, 2, 2), strides=(2, 2), padding="same",
         output_padding=(0, 0)),
    Case("t2d_dilation_same", (5, 5, 2), (3, 3, 2, 2), "tanh", padding="same",
         dilation_rate=(2, 2)),
    Case("t2d_dilation21_valid", (4, 3, 2), (2, 3, 3, 2), dilation_rate=(2, 1)),
    Case("t2d_stride1_valid", (6, 7, 3), (3, 2, 5, 3), "elu"),
    Case("t2d_kernel2_stride1_same", (4, 5, 2), (2, 2, 3, 2), padding="same"),
    Case("t2d_softmax", (3, 3, 2), (3, 3, 4, 2), "softmax", strides=(2, 2), padding="same"),
    Case("t2d_no_bias", (4, 4, 3), (2, 2, 3, 3), strides=(2, 2), use_bias=False),
    Case("t2d_1x1_input", (1, 1, 3), (3, 3, 2, 3), "tanh"),
    Case("t2d_wide_channels", (5, 5, 40), (3, 3, 20, 40), "relu", strides=(2, 2),
         padding="same"),
    Case("t1d_s2_same", (7, 3), (3, 4, 3), "relu", strides=(2,), padding="same"),
    Case("t1d_valid_output_padding", (5, 2), (4, 3, 2), strides=(3,), output_padding=(2,)),
    Case("t1d_dilation3", (6, 2), (3, 2, 2), "elu", dilation_rate=(3,)),
    Case("t1d_kernel1_stride1", (5, 4), (1, 2, 4)),
    Case("t1d_s4_k2_same", (3, 2), (2, 3, 2), strides=(4,), padding="same"),
]


@pytest.mark.parametrize("batch", [0, 1, 3])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_matches_twin(case, batch):
    rng = _rng("fwd", case.name, batch)
    ps = case.params(rng)
    x = rng.standard_normal((batch,) + case.shape).astype(np.float32)
    spec = case.spec(ps)
    got = np.full((batch,) + spec.shapes[spec.outputs[0]], np.nan, np.float32)
    spec.to_core().predict([x], [got])
    want = ref_graph.predict(spec, [x])[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=case.atol())


# (the wide case only adds GEMM blocking, which the twin does not have: 7,200 kernel entries
# of central differences would cost 15 s for nothing)
@pytest.mark.parametrize("case", [c for c in CASES if c.name != "t2d_wide_channels"], ids=repr)
def test_twin_gradients_match_finite_differences(case):
    conv_tests.test_twin_gradients_match_finite_differences(case)


def test_twin_is_the_adjoint_of_the_convolution_twin():
    """<conv_transpose(x), y> = <x, conv(y)> with the same kernel read as the convolution's
    (kh, kw, F, C): the transposed convolution really is the convolution's transpose."""
    from pynn.reference import conv as ref_conv

    rng = _rng("adjoint")
    for padding, strides, dil, shape in [("valid", (2, 3), (1, 1), (4, 3, 5)),
                                         ("same", (2, 2), (1, 1), (4, 4, 5)),
                                         ("valid", (1, 1), (2, 1), (3, 4, 5))]:
        k = rng.standard_normal((3, 2, 6, 5))
        x = rng.standard_normal((2,) + shape)
        y = ref_ct.conv_transpose_forward(x, k, None, strides, padding, None, dil)
        v = rng.standard_normal(y.shape)
        back = ref_conv.conv_forward(v, k, None, strides, padding, dil)
        if back.shape != x.shape:       # "same" conv of the upsampled size gives x's size
            pytest.fail(f"{padding}: conv of {v.shape} gave {back.shape}, not {x.shape}")
        np.testing.assert_allclose((y * v).sum(), (x * back).sum(), rtol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_core_gradients_match_twin(case):
    conv_tests.test_core_gradients_match_twin(case)


BIG = [
    Case("big_t2d_s2_same", (14, 13, 16), (3, 3, 8, 16), "relu", strides=(2, 2),
         padding="same"),
    Case("big_t2d_k4_s2_opad", (9, 10, 24), (4, 4, 12, 24), "tanh", strides=(2, 2),
         output_padding=(1, 0)),
    Case("big_t1d_dilation", (40, 12), (5, 20, 12), padding="same", dilation_rate=(2,)),
    # 2,304 input positions of 360 dcol values: a sample spans several forward chunks
    Case("big_t2d_sample_over_chunks", (48, 48, 4), (3, 3, 40, 4), "tanh", padding="same"),
]


@pytest.mark.parametrize("case", BIG, ids=repr)
def test_results_do_not_depend_on_threads_or_batch(case):
    conv_tests.test_results_do_not_depend_on_threads_or_batch(case)


# The forward and gradient checks above, run under each forced kernel set (PYNN_ARCH).
ISA_CHECK = """
import pynn
import test_conv_transpose as t
for case in t.BIG + [c for c in t.CASES if c.name in ("t2d_wide_channels", "t1d_s2_same")]:
    t.test_forward_matches_twin(case, 3)
    t.test_core_gradients_match_twin(case)
print(pynn.kernel_info()["arch"])
"""


@pytest.mark.parametrize("arch", ["generic", "avx2", "avx512"])
def test_every_supported_kernel_runs_the_transposed_convolution(arch):
    from pynn import _core

    if not _core.cpu_supports(arch):
        pytest.skip(f"this CPU has no {arch}")
    env = dict(os.environ, PYNN_ARCH=arch)
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(ISA_CHECK)], env=env,
                         capture_output=True, text=True, timeout=300, check=False,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [arch]


@pytest.mark.parametrize("attrs, kernel, words", [
    ({"strides": [1]}, (3, 3, 4, 2), "strides must have 2"),
    ({"padding": "causal"}, (3, 3, 4, 2), "padding must be"),
    ({"strides": [2, 2], "output_padding": [2, 0]}, (3, 3, 4, 2), "output_padding"),
    ({"output_padding": [0]}, (3, 3, 4, 2), "output_padding must have 2"),
    ({"dilation_rate": [0, 1]}, (3, 3, 4, 2), "dilation_rate must be >= 1"),
    ({}, (3, 3, 4, 3), "kernel shape"),
    ({}, (3, 4, 2), "kernel shape"),
    ({"padding": "same", "output_padding": [0, 0]}, (2, 2, 4, 2), "0 positions"),
    ({"activation": "rrelu"}, (3, 3, 4, 2), "rrelu"),
    ({"bogus": 1}, (3, 3, 4, 2), "bogus"),
])
def test_engine_rejects_bad_nodes_with_clear_messages(attrs, kernel, words):
    spec = GraphSpec()
    x = spec.add_input((1, 1, 2))
    k = spec.add_param(ParamRef(np.zeros(kernel, np.float32), "k"))
    b = spec.add_param(ParamRef(np.zeros(kernel[-2], np.float32), "b"))
    spec.outputs = spec.add_node("conv_transpose", [x], [(3, 3, kernel[-2])], [k, b], attrs,
                                 "bad_tconv")
    with pytest.raises(ValueError, match=words) as info:
        spec.to_core()
    assert "bad_tconv" in str(info.value)


# --- the layers ---------------------------------------------------------------------------
def _layer_cases():
    return [
        (L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu"), (5, 4, 3)),
        (L.Conv2DTranspose(3, (2, 3), strides=(3, 2), output_padding=(2, 1),
                           use_bias=False), (3, 4, 2)),
        (L.Conv2DTranspose(2, 3, dilation_rate=2, padding="same", activation="tanh"),
         (4, 5, 3)),
        (L.Conv1DTranspose(5, 3, strides=2, activation="sigmoid"), (6, 3)),
        (L.Conv1DTranspose(4, 4, strides=3, padding="same", output_padding=1), (5, 2)),
    ]


@pytest.mark.parametrize("index", range(5))
def test_layer_matches_twin_config_round_trip_and_channels_first(index):
    layer, shape = _layer_cases()[index]
    model = pynn.Sequential([pynn.Input(shape), layer])
    rng = _rng("layer", index)
    weights = [rng.standard_normal(w.shape).astype(np.float32) * 0.5
               for w in layer.get_weights()]
    layer.set_weights(weights)
    x = rng.standard_normal((3,) + shape).astype(np.float32)
    y = model.predict(x, verbose=0)
    assert model.output_shape == (None,) + y.shape[1:]
    want = ref_graph.predict(model._build_spec(), [x])[0]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    # a non-contiguous input gives the same bits
    wide = np.zeros((3,) + shape[:-1] + (2 * shape[-1],), np.float32)
    wide[..., ::2] = x
    np.testing.assert_array_equal(model.predict(wide[..., ::2], verbose=0), y)
    cfg = layer.get_config()
    clone = type(layer).from_config(cfg)
    assert clone.get_config() == cfg
    # channels_first: the same layer on transposed samples gives transposed outputs
    first = type(layer).from_config(dict(cfg, data_format="channels_first",
                                         name=cfg["name"] + "_cf"))
    moved = (len(shape),) + tuple(range(1, len(shape)))
    m2 = pynn.Sequential([pynn.Input((shape[-1],) + shape[:-1]), first])
    first.set_weights(weights)
    got = m2.predict(np.ascontiguousarray(np.transpose(x, (0,) + moved)), verbose=0)
    np.testing.assert_allclose(got, np.transpose(y, (0, y.ndim - 1) + tuple(range(1, y.ndim - 1))),
                               rtol=1e-6, atol=1e-6)


def test_names_shapes_weights_and_summary(capsys):
    import re

    assert re.fullmatch(r"conv2d_transpose(_\d+)?", L.Conv2DTranspose(2, 2).name)
    assert re.fullmatch(r"conv1d_transpose(_\d+)?", L.Conv1DTranspose(2, 2).name)
    model = pynn.Sequential([pynn.Input((7, 7, 16)),
                             L.Conv2DTranspose(8, 3, strides=2, padding="same"),
                             L.Conv2DTranspose(1, 3, strides=2)])
    assert model.layers[0].output_shape == (None, 14, 14, 8)
    assert model.layers[1].output_shape == (None, 29, 29, 1)
    assert [w.shape for w in model.get_weights()] == [(3, 3, 8, 16), (8,), (3, 3, 1, 8), (1,)]
    assert model.count_params() == 3 * 3 * 8 * 16 + 8 + 3 * 3 * 8 + 1
    model.summary()
    out = capsys.readouterr().out
    assert "Conv2DTranspose" in out and "(None, 29, 29, 1)" in out


def test_model_trains_saves_and_loads(tmp_path):
    """An upsampling decoder trains (loss falls), its weight gradients equal the twin's, and
    it comes back bit for bit from .safetensors and from pickle."""
    rng = _rng("model")
    pynn.utils.set_random_seed(2)
    model = pynn.Sequential([pynn.Input((4, 4, 3)),
                             L.Conv2DTranspose(6, 3, strides=2, padding="same",
                                               activation="relu"),
                             L.Conv2DTranspose(2, 2, strides=2),
                             L.Reshape((16, 16 * 2)),
                             L.Conv1DTranspose(3, 3, padding="same", activation="tanh")])
    model.compile(optimizer=pynn.optimizers.SGD(0.05), loss="mse")
    x = rng.standard_normal((8, 4, 4, 3)).astype(np.float32)
    t = np.tanh(rng.standard_normal((8, 16, 3))).astype(np.float32)
    w0 = model.get_weights()
    model.train_on_batch(x, t)
    spec, graph = model._spec, model._graph
    model.set_weights(w0)
    _, _, want, _ = ref_graph.gradients(spec, [x.astype(np.float64)], [t], [LOSS])
    model.train_on_batch(x, t)
    for pid, w in enumerate(want):
        got = graph.get_grad(pid)
        assert np.abs(got - w).max() <= 2e-4 * max(np.abs(w).max(), 1e-6), spec.params[pid].name
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="mse")
    hist = model.fit(x, t, epochs=30, batch_size=8, verbose=0).history["loss"]
    assert hist[-1] < 0.5 * hist[0], hist
    y = model.predict(x, verbose=0)
    path = tmp_path / "decoder.safetensors"
    model.save(path)
    np.testing.assert_array_equal(pynn.models.load_model(path).predict(x, verbose=0), y)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict(x, verbose=0), y)


@pytest.mark.parametrize("make, words", [
    (lambda: L.Conv2DTranspose(0, 3), "filters"),
    (lambda: L.Conv2DTranspose(4, (3,)), "kernel_size"),
    (lambda: L.Conv2DTranspose(4, 3, strides=0), "strides"),
    (lambda: L.Conv2DTranspose(4, 3, padding="causal"), "padding"),
    (lambda: L.Conv2DTranspose(4, 3, strides=2, output_padding=2), "output_padding"),
    (lambda: L.Conv2DTranspose(4, 3, output_padding=(0, -1)), "output_padding"),
    (lambda: L.Conv2DTranspose(4, 3, output_padding="x"), "output_padding"),
    (lambda: L.Conv2DTranspose(4, 3, strides=2, dilation_rate=2), "dilation_rate"),
    (lambda: L.Conv2DTranspose(4, 3, data_format="NCHW"), "data_format"),
    (lambda: L.Conv2DTranspose(4, 3, activation="nope"), "activation"),
    (lambda: L.Conv1DTranspose(4, (2, 2)), "kernel_size"),
    (lambda: L.Conv1DTranspose(4, 2, strides=2, output_padding=(1, 1)), "output_padding"),
])
def test_bad_arguments_name_themselves(make, words):
    with pytest.raises(ValueError, match=words):
        make()


@pytest.mark.parametrize("layer, shape, words", [
    (lambda: L.Conv2DTranspose(4, 3), (28, 28), "expects inputs of shape"),
    (lambda: L.Conv1DTranspose(4, 3), (5, 5, 1), "expects inputs of shape"),
    (lambda: L.Conv1DTranspose(4, 2, padding="same", output_padding=0), (1, 3), "empty"),
])
def test_bad_input_shapes_raise_naming_the_layer(layer, shape, words):
    with pytest.raises(ValueError, match=words):
        pynn.Sequential([pynn.Input(shape), layer()])


def test_fit_is_bitwise_the_same_on_one_and_two_threads():
    rng = _rng("fit_threads")
    x = rng.standard_normal((40, 6, 6, 8)).astype(np.float32)
    t = rng.random((40, 12, 12, 2)).astype(np.float32)
    before = pynn.get_num_threads()
    weights = []
    try:
        for threads in (1, 2):
            pynn.set_num_threads(threads)
            pynn.utils.set_random_seed(4)
            model = pynn.Sequential([
                pynn.Input((6, 6, 8)),
                L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="tanh"),
                L.Conv2DTranspose(2, 3, padding="same", activation="sigmoid")])
            model.compile(optimizer="adam", loss="binary_crossentropy")
            model.fit(x, t, epochs=2, batch_size=16, verbose=0)
            weights.append(model.get_weights())
    finally:
        pynn.set_num_threads(before)
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
