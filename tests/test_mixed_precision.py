"""Mixed precision (pynn.mixed_precision): Keras 3's dtype policies, Dense on the bf16 GEMM.

A Dense layer under "mixed_bfloat16" multiplies bf16(input) by bf16(kernel) with float32 sums
(forward), and bf16(dz) with the rounded operands in both backward products; its kernel,
bias, the loss and the optimizer stay float32.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import pynn
from pynn import _core
from pynn import mixed_precision as mp
from pynn.layers import Dense
from pynn.reference import bf16 as ref_bf16

U32 = 2.0 ** -24
DATA = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _restore_global_policy():
    saved = mp.global_policy()
    yield
    mp.set_global_policy(saved)


def test_policies_have_keras_names_and_dtypes():
    # What Keras 3.15's keras.DTypePolicy(name) reports for (compute_dtype, variable_dtype)
    # (held here: importing Keras costs seconds).
    keras_values = {"float32": ("float32", "float32"), "mixed_bfloat16": ("bfloat16", "float32")}
    for name, (compute, variable) in keras_values.items():
        ours = mp.DTypePolicy(name)
        assert (ours.name, ours.compute_dtype, ours.variable_dtype) == (name, compute, variable)
    assert mp.Policy is mp.DTypePolicy
    assert mp.global_policy().name == "float32"


@pytest.mark.parametrize("bad,exc", [("mixed_float16", ValueError), ("float64", ValueError),
                                     ("bfloat16", ValueError), (3, TypeError)])
def test_unsupported_policies_raise(bad, exc):
    with pytest.raises(exc, match="dtype|name"):
        mp.set_global_policy(bad)
    with pytest.raises(exc, match="dtype|name"):
        Dense(3, dtype=bad)


def test_global_policy_and_per_layer_dtype():
    mp.set_global_policy("mixed_bfloat16")
    assert mp.global_policy() == mp.DTypePolicy("mixed_bfloat16")
    d = Dense(3)
    assert d.dtype_policy.name == "mixed_bfloat16"
    assert (d.compute_dtype, d.variable_dtype, d.dtype) == ("bfloat16", "float32", "float32")
    assert Dense(3, dtype="float32").compute_dtype == "float32"
    mp.set_global_policy("float32")
    assert d.compute_dtype == "bfloat16"  # a layer keeps the policy it was created with
    assert Dense(3).compute_dtype == "float32"
    keras_form = {"module": "keras", "class_name": "DTypePolicy",
                  "config": {"name": "mixed_bfloat16"}}
    assert Dense(3, dtype=keras_form).compute_dtype == "bfloat16"
    again = Dense.from_config(Dense(3, dtype="mixed_bfloat16").get_config())
    assert again.dtype_policy.name == "mixed_bfloat16"


def dense_model(dtype, units=7, d=40, activation="tanh"):
    pynn.utils.set_random_seed(5)
    model = pynn.Sequential([pynn.Input((d,)), Dense(units, activation=activation,
                                                     dtype=dtype)])
    model.compile(optimizer=pynn.optimizers.SGD(learning_rate=1e-3),
                  loss="mean_squared_error")
    return model


def test_dense_forward_is_the_bf16_twin():
    # One layer: z = bf16(x) bf16(W) + b summed in float32, so |z - z_twin| is at most the
    # float32 summation error (k + 4) u (|x'| |W'| + |b|) (exact products, see test_sbgemm),
    # and tanh is 1-Lipschitz plus a few ulps of its own evaluation.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((33, 40)).astype(np.float32)
    model = dense_model("mixed_bfloat16")
    W, b = model.get_weights()
    got = model.predict(x, verbose=0).astype(np.float64)
    xr, Wr = ref_bf16.round_bf16(x).astype(np.float64), ref_bf16.round_bf16(W).astype(np.float64)
    want = np.tanh(xr @ Wr + b)
    tol = (40 + 4) * U32 * (np.abs(xr) @ np.abs(Wr) + np.abs(b)) + 8 * U32
    assert np.all(np.abs(got - want) <= tol)
    # and not the float32 product: that differs by the input rounding, far above the bound
    assert np.max(np.abs(got - np.tanh(x.astype(np.float64) @ W + b)) / tol) > 10


def test_dense_gradients_follow_the_bf16_twin():
    # dW = bf16(x)^T bf16(dz). The engine's dz is float32, the twin's float64, so a few
    # elements of bf16(dz) round differently (by 2^-8 of that element) and no elementwise
    # bound holds; but over the whole gradient the engine must be far closer to the bf16 twin
    # than to the float32 gradient (which differs by the rounding of every operand).
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 40)).astype(np.float32)
    y = rng.standard_normal((64, 7)).astype(np.float32)
    model = dense_model("mixed_bfloat16", activation="linear")
    W, b = [w.astype(np.float64) for w in model.get_weights()]
    model.train_on_batch(x, y)
    net = model._net
    dW = net.get_grad(0)
    xr, Wr = ref_bf16.round_bf16(x).astype(np.float64), ref_bf16.round_bf16(W).astype(np.float64)
    dz = 2 * (xr @ Wr + b - y) / y.size
    twin = ref_bf16.round_bf16(xr).astype(np.float64).T @ ref_bf16.round_bf16(dz)
    exact = x.astype(np.float64).T @ (2 * (x @ W + b - y) / y.size)
    assert np.mean(np.abs(dW - twin)) * 10 < np.mean(np.abs(dW - exact))
    assert np.allclose(net.get_grad(1), dz.sum(axis=0), rtol=1e-4, atol=1e-7)


def mlp(dtype=None):
    return pynn.Sequential([pynn.Input((784,)), Dense(256, activation="relu", dtype=dtype),
                            Dense(128, activation="relu", dtype=dtype),
                            Dense(10, activation="softmax", dtype=dtype)])


def train(policy, x, y, epochs, threads=None):
    mp.set_global_policy(policy)
    pynn.utils.set_random_seed(0)
    model = mlp()
    mp.set_global_policy("float32")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    saved = pynn.get_num_threads()
    try:
        if threads is not None:
            pynn.set_num_threads(threads)
        model.fit(x, y, epochs=epochs, batch_size=128, shuffle=True, verbose=0)
    finally:
        pynn.set_num_threads(saved)
    return model


def test_training_is_bitwise_identical_on_1_and_2_threads():
    rng = np.random.default_rng(2)
    x = rng.random((600, 784)).astype(np.float32)
    y = rng.integers(0, 10, 600)
    one = train("mixed_bfloat16", x, y, 2, threads=1).get_weights()
    two = train("mixed_bfloat16", x, y, 2, threads=2).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(one, two))


def logit_error_bound(model, x):
    """Rigorous bound on |p_bf16 - p_fp32| for the same weights, layer by layer: a layer's
    input h (error e from the layers before) and kernel W are rounded (relative 2^-9 each),
    so |z_bf16 - z_fp32| <= |e| |W| + (2 * 2^-9 + 2^-18) (|h| + |e|) |W| plus the two float32
    sums (k + 4) u (|h| + |e|) |W| each; ReLU is 1-Lipschitz, and a softmax output moves by
    at most half the largest change of its row's logits (its Jacobian's rows sum to <= 1/2
    in absolute value)."""
    h = x.astype(np.float64)
    e = np.zeros_like(h)
    for layer in model.layers:
        W, b = [w.astype(np.float64) for w in layer.get_weights()]
        k = W.shape[0]
        mag = (np.abs(h) + e) @ np.abs(W)
        e = e @ np.abs(W) + (2 * 2.0 ** -9 + 2.0 ** -18 + 2 * (k + 4) * U32) * mag
        z = h @ W + b
        h = np.maximum(z, 0) if layer.activation == "relu" else z
    return 0.5 * e.max(axis=1, keepdims=True)


@pytest.mark.skipif(not os.path.isdir(DATA),
                    reason="the real data set needs `apt-get install dataset-fashion-mnist`")
def test_mlp_on_fashion_mnist_matches_float32(tmp_path):
    from pynn.datasets import fashion_mnist

    (x, y), (xt, yt) = fashion_mnist.load_data()
    # 20,000 training images, 3 epochs of Adam (batch 128), the whole 10,000-image test set.
    x = x[:20000].reshape(-1, 784).astype(np.float32) / 255
    y = y[:20000]
    xt = xt.reshape(-1, 784).astype(np.float32) / 255
    f32 = train("float32", x, y, 3)
    b16 = train("mixed_bfloat16", x, y, 3)
    acc32 = f32.evaluate(xt, yt, verbose=0)[1]
    acc16 = b16.evaluate(xt, yt, verbose=0)[1]
    assert acc32 > 0.8
    assert abs(acc16 - acc32) <= 0.005, (acc16, acc32)
    # The float32-trained weights under the bf16 policy: predictions within the bound above.
    same = mlp("mixed_bfloat16")
    same.set_weights(f32.get_weights())
    p32 = f32.predict(xt[:500], verbose=0).astype(np.float64)
    p16 = same.predict(xt[:500], verbose=0).astype(np.float64)
    assert np.all(np.abs(p16 - p32) <= logit_error_bound(f32, xt[:500]) + 1e-6)
    assert np.any(p16 != p32)  # the bf16 path did run
    # save/load keeps the policy and the predictions
    path = tmp_path / "b16.safetensors"
    b16.save(path)
    again = pynn.load_model(path)
    assert [lay.dtype_policy.name for lay in again.layers] == ["mixed_bfloat16"] * 3
    assert np.array_equal(again.predict(xt[:100], verbose=0), b16.predict(xt[:100], verbose=0))


def test_engine_follows_the_graph_twin():
    # The NumPy graph executor honours the dense op's compute_dtype attribute. Two layers:
    # the first layer's output differs from the twin's by its float32 sum error e1, so the
    # second layer's rounded input differs by at most |e1| + 2^-8 |h1| per element (a bf16
    # rounding may go the other way); ReLU is 1-Lipschitz.
    from test_conv import _param_grads

    from pynn.reference import graph as ref_graph

    rng = np.random.default_rng(3)
    model = pynn.Sequential([pynn.Input((40,)), Dense(16, activation="relu", dtype="mixed_bfloat16"),
                             Dense(5, dtype="mixed_bfloat16")])
    spec = model._build_spec()
    assert all(n.attrs.get("compute_dtype") == "bfloat16" for n in spec.nodes)
    x = rng.standard_normal((20, 40)).astype(np.float32)
    got = model.predict(x, verbose=0).astype(np.float64)
    want = ref_graph.predict(spec, [x])[0]
    (W1, b1, W2, _) = [w.astype(np.float64) for w in model.get_weights()]
    h1 = np.maximum(ref_bf16.round_bf16(x).astype(np.float64) @ ref_bf16.round_bf16(W1) + b1, 0)
    e1 = (40 + 4) * U32 * (np.abs(x) @ np.abs(W1) + np.abs(b1))
    tol = (e1 + 2.0 ** -8 * h1) @ np.abs(W2) + (16 + 4) * U32 * (h1 @ np.abs(W2)) + 1e-30
    assert np.all(np.abs(got - want) <= tol)
    # gradients of a squared error: as in test_dense_gradients_follow_the_bf16_twin, far
    # closer to the twin than to the float32 gradients
    target = rng.standard_normal((20, 5)).astype(np.float32)
    loss = ("mean_squared_error", False, 1.0, 1.0)
    engine = _param_grads(spec.to_core([loss]), 4, [x], [target])
    _, _, twin, _ = ref_graph.gradients(spec, [x.astype(np.float64)], [target], [loss])
    f32 = spec_float32(spec)
    _, _, exact, _ = ref_graph.gradients(f32, [x.astype(np.float64)], [target], [loss])
    for g, t, e in zip(engine, twin, exact):
        assert np.mean(np.abs(g - t)) * 5 < np.mean(np.abs(g - e))


def spec_float32(spec):
    import copy

    f32 = copy.deepcopy(spec)
    for n in f32.nodes:
        n.attrs.pop("compute_dtype", None)
    return f32


def _sbgemm(a, b, bias=None):
    out = np.empty((a.shape[0], b.shape[1]), np.float32)
    return _core.sbgemm(a, b, out, bias=bias, nthreads=1)


def _with_threads(threads, fn):
    saved = pynn.get_num_threads()
    try:
        pynn.set_num_threads(threads)
        return fn()
    finally:
        pynn.set_num_threads(saved)


# (rows, inputs, units): outputs up to 16 narrower than the input take the transposed weight
# gradient (dW^T = dz^T x); on 2 threads, products with more rows than columns and at least
# 2^21 multiply-adds are cut along their rows (the dW of a wide layer, dx of many rows, the
# forward of a narrow layer). Edge sizes around the 12 x 32 register tile and the 2^21 bound.
PRODUCT_CASES = [(1, 40, 10), (13, 40, 1), (128, 128, 10), (128, 300, 16), (64, 30, 17),
                 (20, 10, 12), (128, 784, 64), (131, 401, 41), (128, 2000, 10), (256, 200, 64),
                 (600, 40, 100), (256, 200, 64, "relu"), (130, 784, 256, "relu")]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", PRODUCT_CASES, ids=repr)
def test_dense_products_are_the_bf16_gemm(case, threads):
    # Whatever path and thread split a product of a mixed_bfloat16 Dense layer takes, every
    # element is what one sbgemm call on one thread gives for it: bitwise, not within a
    # tolerance (see csrc/nn/dense.cpp for why the paths agree exactly). With relu the
    # forward also saves z for the backward, cut along the rows with the product.
    rows, d, units = case[:3]
    relu = case[3:] == ("relu",)
    rng = np.random.default_rng(rows * 7919 + d * 31 + units)
    model = dense_model("mixed_bfloat16", units=units, d=d,
                        activation="relu" if relu else "linear")
    W, b = model.get_weights()
    x = rng.standard_normal((rows, d)).astype(np.float32)
    t = rng.standard_normal((rows, units)).astype(np.float32)
    z = _sbgemm(x, W, b)
    y = np.maximum(z, 0) if relu else z
    assert np.array_equal(_with_threads(threads, lambda: model.predict(x, verbose=0)), y)
    # the weight gradient of a mean squared error: dz is the loss kernel's float32 gradient,
    # 2 (y - t) / (rows * units) evaluated in float64 in this order, times relu'(z)
    dz = ((2.0 * (y.astype(np.float64) - t)) * (1.0 / rows) / units).astype(np.float32)
    if relu:
        dz = np.where(z > 0, dz, np.float32(0))
    g = model._build_spec().to_core([("mean_squared_error", False, 1.0, 1.0)])
    g.set_optimizer("sgd", {"learning_rate": 0.0})
    _with_threads(threads, lambda: g.train_step([x], [t]))
    assert np.array_equal(g.get_grad(0), _sbgemm(x.T, dz))
    # the input gradient for a given output gradient: dx = seed W^T
    seed = rng.standard_normal((rows, units)).astype(np.float32)
    dx = _with_threads(threads, lambda: g.input_gradient([x], [seed])[0])
    assert np.array_equal(dx, _sbgemm(np.where(z > 0, seed, 0) if relu else seed, W.T))


# (op, input shape, output shape, param shapes, attrs) of one node of each op that takes the
# compute_dtype attribute
_COMPUTE_NODES = [
    ("dense", (5,), (3,), [(5, 3), (3,)], {"units": 3}),
    ("conv", (6, 6, 2), (4, 4, 4), [(3, 3, 2, 4), (4,)], {}),
    ("conv_transpose", (4, 4, 2), (6, 6, 3), [(3, 3, 3, 2), (3,)], {}),
    ("rnn", (7, 5), (3,), [(5, 12), (3, 12), (12,)], {"cell": "lstm", "units": 3}),
]


@pytest.mark.parametrize("op,x_shape,y_shape,params,attrs", _COMPUTE_NODES,
                         ids=[n[0] for n in _COMPUTE_NODES])
@pytest.mark.parametrize("compute", ["float32", "bfloat16", "float16", ""])
def test_engine_checks_compute_dtype(op, x_shape, y_shape, params, attrs, compute):
    from pynn.models.graph_spec import GraphSpec, ParamRef

    spec = GraphSpec()
    x = spec.add_input(x_shape)
    pids = [spec.add_param(ParamRef(np.zeros(s, np.float32), f"p{i}"))
            for i, s in enumerate(params)]
    spec.outputs = spec.add_node(op, [x], [y_shape], pids,
                                 dict(attrs, compute_dtype=compute), "node")
    if compute in ("float32", "bfloat16"):
        spec.to_core()  # accepted, and the node's shapes are the ones given
        return
    with pytest.raises(ValueError, match="compute_dtype must be 'float32' or 'bfloat16', "
                                         f"got '{compute}'") as info:
        spec.to_core()
    assert "node" in str(info.value)
