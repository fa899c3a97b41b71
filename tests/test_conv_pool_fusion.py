"""conv followed by a 2x2 max pooling of stride 2, computed as one op (nn/ops/fusion.h).

The engine fuses the pair when the conv runs its direct forward kernel (groups 1, patches
of at most 1152 values), its activation is relu or linear, and the pooling is the conv
output's only reader and tiles it. With 1-4 input channels and no input gradient, dW comes
straight from the pooled gradient; otherwise the unpooled dz is formed first. The fused path must give the bits of the two ops apart: each case builds the
same network twice, once with the conv output also a graph output (which keeps the two ops
apart), and compares, bitwise (int32 views, so signed zeros count; NaN is NaN):
predictions, parameter gradients of a training step, input gradients; on 1 and 2 threads.
It also compares against the NumPy twin with test_conv's tolerances (see its docstring).

Edge sizes: conv outputs of odd height or width (a row or column no window covers), one
window (1x1 pooled), pooled widths that leave 1 and 2 windows after the AVX-512 blocks of 3,
filters 1, 5, 17 and 33 (vector tails), "same" padding (border windows take the checked
path), strides and dilation, no bias, batch 1, ties (relu zeros) and NaN / inf inputs.
Layers of 8 and 32 channels, and a second layer (input gradient wanted), take the
unpooled-dz path.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_conv import _rng

import pynn
from pynn.models.graph_spec import GraphSpec, ParamRef
from pynn.reference import graph as ref_graph

MSE = ("mean_squared_error", False, 1.0, 1.0)


def _conv_attrs(act, **kw):
    a = {"strides": [1, 1], "padding": "valid", "dilation_rate": [1, 1], "groups": 1,
         "activation": act, "use_bias": True}
    a.update({k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()})
    return a


def _out_shape(op, attrs, shape, ps):
    node = type("N", (), {"attrs": attrs})()
    y, _ = ref_graph.OPS[op][0](node, [np.zeros((1,) + tuple(shape))], ps, None)
    return y.shape[1:]


def build(shape, layers, ps, apart):
    """input -> [conv (-> max_pool 2x2)] per layer; `apart`: every conv output is also a
    graph output (no loss), which keeps conv and max_pool two ops. The graph gets copies of
    the parameters (a training step at learning rate 0 still writes NaN where a gradient is
    NaN)."""
    spec = GraphSpec()
    t = spec.add_input(shape)
    cur = tuple(shape)
    extra = []
    for (_kernel, attrs, pooled), (k, b) in zip(layers, ps):
        pids = [spec.add_param(ParamRef(k.copy(), f"k{len(extra)}"))]
        if b is not None:
            pids.append(spec.add_param(ParamRef(b.copy(), f"b{len(extra)}")))
        cur = _out_shape("conv", attrs, cur, [k] + ([b] if b is not None else []))
        (t,) = spec.add_node("conv", [t], [cur], pids, attrs, f"conv{len(extra)}")
        extra.append(t)
        if pooled:
            pa = {"pool_size": [2, 2], "padding": "valid"}
            cur = _out_shape("max_pool", pa, cur, [])
            (t,) = spec.add_node("max_pool", [t], [cur], [], pa, f"pool{len(extra)}")
    spec.outputs = [t] + (extra if apart else [])
    return spec


def make_params(rng, layers):
    ps = []
    for kernel, attrs, _ in layers:
        k = (rng.standard_normal(kernel) * 0.5).astype(np.float32)
        b = (rng.standard_normal(kernel[-1]) * 0.1).astype(np.float32) \
            if attrs["use_bias"] else None
        ps.append((k, b))
    return ps


def run(spec, ps, x, seed, target, threads):
    """(prediction, input gradient, parameter gradients) of the spec's first output."""
    nparams = len(spec.params)
    losses = [MSE] + [None] * (len(spec.outputs) - 1)
    before = pynn.get_num_threads()
    try:
        pynn.set_num_threads(threads)
        g = spec.to_core(losses)
        y = np.empty((len(x),) + spec.shapes[spec.outputs[0]], np.float32)
        outs = [y] + [np.empty((len(x),) + spec.shapes[t], np.float32) for t in spec.outputs[1:]]
        g.predict([x], outs)
        seeds = [seed] + [np.zeros_like(o) for o in outs[1:]]
        dx = g.input_gradient([x], seeds)[0]
        targets = [target] + [None] * (len(outs) - 1)
        g.set_optimizer("sgd", {"learning_rate": 0.0})
        g.train_step([x], targets)
        grads = [g.get_grad(p) for p in range(nparams)]
    finally:
        pynn.set_num_threads(before)
    return y, dx, grads


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.int32)


def same_bits(a, b):
    """Equal bits, except that any NaN equals any NaN: which NaN operand an FMA passes on
    depends on the operand order the compiler picked for that instruction, so payloads and
    signs of NaNs are not part of a result."""
    if a.shape != b.shape:
        return False
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    return np.array_equal(nan_a, nan_b) and np.array_equal(bits(a)[~nan_a], bits(b)[~nan_b])


# (name, input shape, [(kernel, conv attrs, pooled)], batch)
ONE = [
    ("mnist_26x26x32", (28, 28, 1), [((3, 3, 1, 32), _conv_attrs("relu"), True)], 3),
    ("odd_7x8_f5", (9, 10, 2), [((3, 3, 2, 5), _conv_attrs("relu"), True)], 3),
    ("same_linear_f17", (6, 6, 3), [((2, 2, 3, 17), _conv_attrs("linear", padding="same"),
                                     True)], 2),
    ("stride2_one_window_f33", (5, 5, 4),
     [((3, 3, 4, 33), _conv_attrs("relu", strides=(2, 2), padding="same"), True)], 3),
    ("one_window_f1", (4, 4, 1), [((3, 3, 1, 1), _conv_attrs("relu"), True)], 1),
    ("pooled_w14_tail2", (12, 30, 1), [((3, 3, 1, 16), _conv_attrs("relu"), True)], 2),
    ("dilation_no_bias", (11, 12, 2),
     [((3, 3, 2, 8), _conv_attrs("relu", dilation_rate=(2, 2), use_bias=False), True)], 2),
    ("second_layer_dx", (10, 10, 3), [((3, 3, 3, 3), _conv_attrs("linear", padding="same"),
                                       False),
                                      ((3, 3, 3, 20), _conv_attrs("relu"), True)], 3),
    ("wide_c32_f64", (13, 13, 32), [((3, 3, 32, 64), _conv_attrs("relu"), True)], 2),
    ("wide_second_layer", (8, 9, 2), [((3, 3, 2, 8), _conv_attrs("relu", padding="same"),
                                       True),
                                      ((2, 2, 8, 24), _conv_attrs("linear", padding="same"),
                                       True)], 2),
    # second layers (input gradient wanted) with an odd output: the unpooled dz, dW and dx
    # cover the pooled rows and columns only, by the GEMM path and by the direct dW
    ("odd_second_layer_c6_f40", (11, 12, 3),
     [((3, 3, 3, 6), _conv_attrs("linear", padding="same"), False),
      ((3, 3, 6, 40), _conv_attrs("relu"), True)], 3),
    ("odd_second_layer_c3_f20", (11, 10, 2),
     [((1, 1, 2, 3), _conv_attrs("linear"), False),
      ((3, 2, 3, 20), _conv_attrs("relu", strides=(1, 2)), True)], 2),
]


@pytest.mark.parametrize("case", ONE, ids=lambda c: c[0])
def test_fused_equals_apart_bitwise_and_matches_twin(case):
    name, shape, layers, n = case
    rng = _rng("fusion", name)
    ps = make_params(rng, layers)
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    fused, apart = build(shape, layers, ps, False), build(shape, layers, ps, True)
    out = (n,) + fused.shapes[fused.outputs[0]]
    seed = rng.standard_normal(out).astype(np.float32)
    target = rng.standard_normal(out).astype(np.float32)
    results = {}
    for threads in (1, 2):
        a = run(apart, ps, x, seed, target, threads)
        f = run(fused, ps, x, seed, target, threads)
        assert same_bits(a[0], f[0]), "prediction"
        assert same_bits(a[1], f[1]), "input gradient"
        for k, (ga, gf) in enumerate(zip(a[2], f[2])):
            assert same_bits(ga, gf), f"gradient of parameter {k}"
        results[threads] = f
    f1, f2 = results[1], results[2]
    assert same_bits(f1[0], f2[0]) and same_bits(f1[1], f2[1])
    assert all(same_bits(a, b) for a, b in zip(f1[2], f2[2]))
    # the NumPy twin: float32 sums of at most kh*kw*C terms against float64
    want = ref_graph.predict(fused, [x])[0]
    np.testing.assert_allclose(f1[0], want, rtol=1e-5, atol=1e-4)
    _, _, want_g, _ = ref_graph.gradients(fused, [x.astype(np.float64)], [target], [MSE])
    for got, w in zip(f1[2], want_g):
        assert np.abs(got - w).max() <= 2e-4 * np.abs(w).max()


def test_ties_nan_and_inf_keep_the_bits():
    """relu zeros tie in most windows (the first tap wins); a NaN input makes NaN outputs
    that win their windows and NaN gradients; an inf input gives inf * 0 = NaN in dW where
    the unfused sums multiply it by a zero dz: the fused sums do the same."""
    rng = _rng("fusion", "nan")
    layers = [((3, 3, 1, 16), _conv_attrs("relu"), True)]
    ps = make_params(rng, layers)
    ps[0][1][:] = -2.0  # mostly negative pre-activations: relu ties at +0
    x = rng.standard_normal((4, 14, 14, 1)).astype(np.float32)
    x[1, 3, 4, 0] = np.nan
    x[2, 7, 7, 0] = np.inf
    x[3, 9, 2, 0] = -np.inf
    x[3, :5] = 0.0
    fused, apart = build(x.shape[1:], layers, ps, False), build(x.shape[1:], layers, ps, True)
    out = (4,) + fused.shapes[fused.outputs[0]]
    seed = rng.standard_normal(out).astype(np.float32)
    target = rng.standard_normal(out).astype(np.float32)
    a = run(apart, ps, x, seed, target, 1)
    f = run(fused, ps, x, seed, target, 2)
    assert np.isnan(f[0]).any() and (f[0] == 0).any()
    assert same_bits(a[0], f[0]) and same_bits(a[1], f[1])
    assert all(same_bits(ga, gf) for ga, gf in zip(a[2], f[2]))


def test_fusion_takes_place_and_only_when_allowed():
    """The fused pooling is a view of the conv's storage: the inference arena holds one
    buffer fewer than with the same ops apart. Not fused: tanh (its derivative needs the
    unpooled values), 3x3 windows, groups (the GEMM path)."""
    def predict_bytes(shape, kernel, act, pool_size=(2, 2), groups=1):
        rng = _rng("bytes", shape, act)
        k = (rng.standard_normal(kernel) * 0.5).astype(np.float32)
        b = np.zeros(kernel[-1], np.float32)
        spec = GraphSpec()
        t = spec.add_input(shape)
        attrs = _conv_attrs(act, groups=groups)
        cshape = _out_shape("conv", attrs, shape, [k, b])
        (t,) = spec.add_node("conv", [t], [cshape], [spec.add_param(ParamRef(k, "k")),
                                                     spec.add_param(ParamRef(b, "b"))], attrs)
        pa = {"pool_size": list(pool_size), "padding": "valid"}
        (t,) = spec.add_node("max_pool", [t], [_out_shape("max_pool", pa, cshape, [])], [], pa)
        spec.outputs = [t]
        g = spec.to_core()
        x = rng.standard_normal((8,) + shape).astype(np.float32)
        y = np.empty((8,) + spec.shapes[t], np.float32)
        g.predict([x], [y])
        return g.memory_info()["predict_activation_bytes"], y

    fused, y_relu = predict_bytes((16, 16, 1), (3, 3, 1, 16), "relu")
    apart, _ = predict_bytes((16, 16, 1), (3, 3, 1, 16), "tanh")
    assert fused < apart
    assert np.isfinite(y_relu).all()
    assert predict_bytes((16, 16, 8), (3, 3, 8, 16), "relu")[0] < \
        predict_bytes((16, 16, 8), (3, 3, 8, 16), "tanh")[0]
    # 3x3 pooling and groups stay apart: their arenas are the tanh ones'
    assert predict_bytes((16, 16, 1), (3, 3, 1, 16), "relu", (3, 3))[0] == \
        predict_bytes((16, 16, 1), (3, 3, 1, 16), "tanh", (3, 3))[0]
    assert predict_bytes((16, 16, 8), (3, 3, 4, 16), "relu", groups=2)[0] == \
        predict_bytes((16, 16, 8), (3, 3, 4, 16), "tanh", groups=2)[0]


_AVX2 = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    import pynn
    import test_conv_pool_fusion as t
    for case in t.ONE[:3] + t.ONE[5:6] + t.ONE[-2:]:
        t.test_fused_equals_apart_bitwise_and_matches_twin(case)
    print(pynn.kernel_info()["arch"])
""")


def test_avx2_kernels_fuse_alike():
    """The AVX2 instantiation (a block of one window) on a subprocess forced to AVX2."""
    from pynn import _core

    if not _core.cpu_supports("avx2"):
        pytest.skip("this CPU has no avx2")
    env = dict(os.environ, PYNN_ARCH="avx2")
    code = _AVX2.format(tests=os.path.dirname(os.path.abspath(__file__)))
    # cwd "/": the child imports the installed pynn, not a source tree in the working directory
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd="/", timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-1] == "avx2"


def test_convnet_training_bitwise_on_threads_and_strided_input():
    """The keras.io convnet's layer pattern (conv -> pool -> conv with an odd output -> pool,
    a Dense head; the second conv has 16 input channels: Winograd forward and dW) trained a
    few Adam steps: the same weights, bit for bit, on 1 and 2 threads and from a
    non-contiguous input (every other column of a wider array)."""
    from pynn import layers

    rng = _rng("fusion", "convnet")
    wide = rng.random((48, 16, 32, 1), dtype=np.float32)
    x = wide[:, :, ::2]  # (48, 16, 16, 1), not contiguous
    y = rng.integers(0, 5, 48)

    def train(data, threads):
        before = pynn.get_num_threads()
        try:
            pynn.set_num_threads(threads)
            pynn.utils.set_random_seed(3)
            m = pynn.Sequential([
                pynn.Input((16, 16, 1)),
                layers.Conv2D(16, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
                layers.Conv2D(16, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
                layers.Flatten(), layers.Dropout(0.5), layers.Dense(5, activation="softmax")])
            m.compile(optimizer=pynn.optimizers.Adam(1e-2),
                      loss="sparse_categorical_crossentropy")
            m.fit(data, y, batch_size=16, epochs=2, verbose=0)
            return m.get_weights()
        finally:
            pynn.set_num_threads(before)

    w1, w2 = train(x, 1), train(x, 2)
    wc = train(np.ascontiguousarray(x), 2)
    assert all(same_bits(a, b) and same_bits(a, c) for a, b, c in zip(w1, w2, wc))
