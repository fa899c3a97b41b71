"""The N-D graph engine `_core.Graph`, built through `GraphSpec.to_core`.

* Sequential graphs give bitwise the same losses, weights and outputs as `_core.Network`
  (same initial weights, same batches, same random streams: node index = old op index).
* Graph-only structure (skip connections, concatenation, shared layers, several inputs and
  outputs, fan-out, the N-D ops) is checked against NumPy forward values and against central
  finite differences of the loss in float64.

Finite differences: the engine computes in float32 and sums the loss in double. With central
differences and eps = 1e-2 on smooth activations the truncation error is O(eps^2) ~ 1e-4 of
the third derivative's scale, and float32 rounding of the loss (~1e-7 relative) divided by
2*eps adds ~1e-5; so |fd - grad| <= 2e-3 + 2e-2 |grad| leaves a wide margin while a wrong
gradient (a missed or doubled contribution) is off by O(|grad|).
"""
from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import _core
from pynn.models.graph_spec import GraphSpec, ParamRef

RNG = np.random.default_rng(1234)


def _f32(*shape, scale=1.0, rng=None):
    rng = rng or RNG
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _glorot(a, b, rng):
    lim = np.sqrt(6.0 / (a + b))
    return rng.uniform(-lim, lim, (a, b)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Sequential layer lists built both ways

def _defaults(act):
    """The Network wants every activation parameter; the graph defaults empty act_params."""
    return [] if act == "softmax" else list(_core.activation_defaults(act))


def _build_pair(width, layers, seed=0):
    """(Network, GraphSpec, param arrays) for a chain of layers, with the same weights.

    layers: ("dense", units, activation) | ("activation", name) | ("dropout", rate, seed) |
            ("batchnorm",) | ("prelu",)
    """
    rng = np.random.default_rng(seed)
    net = _core.Network(width)
    spec = GraphSpec()
    h = spec.add_input((width,))
    w = width
    arrays = []  # in Network's parameter order
    for i, layer in enumerate(layers):
        kind = layer[0]
        name = f"l{i}"
        if kind == "dense":
            units, act = layer[1], layer[2]
            net.add_dense(units, act, _defaults(act), True)
            W = _glorot(w, units, rng)
            b = (rng.standard_normal(units) * 0.1).astype(np.float32)
            pk = spec.add_param(ParamRef(value=W, name=f"{name}/kernel"))
            pb = spec.add_param(ParamRef(value=b, name=f"{name}/bias"))
            arrays += [W, b]
            h = spec.add_node("dense", [h], [(units,)], [pk, pb],
                              {"units": units, "activation": act, "act_params": [],
                               "use_bias": True}, name)[0]
            w = units
        elif kind == "activation":
            net.add_activation(layer[1], _defaults(layer[1]), 7)
            h = spec.add_node("activation", [h], [(w,)], [],
                              {"activation": layer[1], "seed": 7}, name)[0]
        elif kind == "dropout":
            net.add_dropout(layer[1], layer[2])
            h = spec.add_node("dropout", [h], [(w,)], [], {"rate": layer[1], "seed": layer[2]},
                              name)[0]
        elif kind == "batchnorm":
            net.add_batchnorm(0.9, 1e-3, True, True)
            vals = [(1 + 0.1 * rng.standard_normal(w)).astype(np.float32),
                    (0.1 * rng.standard_normal(w)).astype(np.float32),
                    np.zeros(w, np.float32), np.ones(w, np.float32)]
            names = ["gamma", "beta", "moving_mean", "moving_variance"]
            pids = [spec.add_param(ParamRef(value=v, name=f"{name}/{n}", trainable=k < 2))
                    for k, (v, n) in enumerate(zip(vals, names))]
            arrays += vals
            h = spec.add_node("batchnorm", [h], [(w,)], pids,
                              {"momentum": 0.9, "epsilon": 1e-3, "center": True,
                               "scale": True}, name)[0]
        elif kind == "prelu":
            net.add_prelu()
            a = (0.25 + 0.05 * rng.standard_normal(w)).astype(np.float32)
            pa = spec.add_param(ParamRef(value=a, name=f"{name}/alpha"))
            arrays.append(a)
            h = spec.add_node("prelu", [h], [(w,)], [pa], {}, name)[0]
        else:
            raise AssertionError(kind)
    spec.outputs = [h]
    for i, arr in enumerate(arrays):
        net.set_param(i, arr)
    return net, spec, arrays


def _compare_training(width, layers, loss, n=96, batch=32, steps=4, opt="adam", targets=None,
                      seed=0, want_outputs=True, sample_weight=False):
    net, spec, arrays = _build_pair(width, layers, seed)
    g = spec.to_core([(loss, False, 1.0, 1.0)])
    cfg = {"learning_rate": 1e-2}
    net.set_loss(loss, False, 1.0)
    net.set_optimizer(opt, cfg)
    g.set_optimizer(opt, cfg)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((n, width)).astype(np.float32)
    y, labels = targets(rng, n)
    sw = rng.uniform(0.5, 1.5, n).astype(np.float32) if sample_weight else None
    for step in range(steps):
        idx = rng.permutation(n)[:batch].astype(np.int64)
        l_old, c_old, o_old = net.train_step(x, y, labels, sw, idx, want_outputs)
        total, losses, correct, outs = g.train_step([x], [labels if labels is not None else y],
                                                    [sw], idx, want_outputs)
        assert total == l_old, (step, total, l_old)
        assert losses == [l_old] and correct == [c_old]
        if want_outputs:
            assert np.array_equal(outs[0], o_old)
        for i, arr in enumerate(arrays):
            assert np.array_equal(arr, net.get_param(i)), (step, i)
    # Evaluation and prediction agree too.
    l_old, c_old, _ = net.test_step(x, y, labels, sw, None, False)
    total, _, correct, _ = g.test_step([x], [labels if labels is not None else y], [sw])
    assert total == l_old and correct == [c_old]
    out_old = np.zeros((n, net.output_width), np.float32)
    out_new = np.zeros_like(out_old)
    net.predict(x, out_old, 40)
    g.predict([x], [out_new], 40)
    assert np.array_equal(out_old, out_new)
    return net, g


def _sparse(classes):
    return lambda rng, n: (None, rng.integers(0, classes, n).astype(np.int32))


def _onehot(classes):
    def make(rng, n):
        return np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)], None
    return make


def _binary(width):
    return lambda rng, n: ((rng.random((n, width)) > 0.5).astype(np.float32), None)


def _regression(width):
    return lambda rng, n: (rng.standard_normal((n, width)).astype(np.float32), None)


MLP = [("dense", 256, "relu"), ("dense", 128, "relu"), ("dense", 10, "softmax")]


def test_mlp_sparse_ce_adam_bitwise_equal_to_network():
    _compare_training(784, MLP, "sparse_categorical_crossentropy", n=300, batch=128, steps=4,
                      targets=_sparse(10))


@pytest.mark.parametrize("case", ["categorical", "binary", "mse", "dropout", "batchnorm",
                                  "prelu", "activations", "rrelu", "sample_weight", "sgd"])
def test_sequential_bitwise_equal_to_network(case):
    if case == "categorical":
        _compare_training(20, [("dense", 16, "tanh"), ("dense", 5, "softmax")],
                          "categorical_crossentropy", targets=_onehot(5))
    elif case == "binary":
        _compare_training(20, [("dense", 16, "relu"), ("dense", 4, "sigmoid")],
                          "binary_crossentropy", targets=_binary(4))
    elif case == "mse":
        _compare_training(20, [("dense", 16, "elu"), ("dense", 3, "linear")],
                          "mean_squared_error", targets=_regression(3))
    elif case == "dropout":
        _compare_training(20, [("dense", 32, "relu"), ("dropout", 0.4, 11),
                               ("dense", 16, "relu"), ("dropout", 0.2, 12),
                               ("dense", 5, "softmax")],
                          "sparse_categorical_crossentropy", targets=_sparse(5), steps=5)
    elif case == "batchnorm":
        _compare_training(20, [("dense", 16, "linear"), ("batchnorm",), ("activation", "relu"),
                               ("dense", 5, "softmax")],
                          "sparse_categorical_crossentropy", targets=_sparse(5))
    elif case == "prelu":
        _compare_training(20, [("dense", 16, "linear"), ("prelu",), ("dense", 5, "softmax")],
                          "sparse_categorical_crossentropy", targets=_sparse(5))
    elif case == "activations":
        _compare_training(20, [("dense", 16, "linear"), ("activation", "gelu"),
                               ("dense", 8, "linear"), ("activation", "softmax")],
                          "categorical_crossentropy", targets=_onehot(8))
    elif case == "rrelu":
        _compare_training(20, [("dense", 16, "linear"), ("activation", "rrelu"),
                               ("dense", 4, "linear"), ("activation", "sigmoid")],
                          "binary_crossentropy", targets=_binary(4))
    elif case == "sample_weight":
        _compare_training(20, [("dense", 16, "swish"), ("dense", 3, "linear")], "huber",
                          targets=_regression(3), sample_weight=True)
    elif case == "sgd":
        _compare_training(20, [("dense", 16, "sigmoid"), ("dense", 3, "softmax")],
                          "sparse_categorical_crossentropy", targets=_sparse(3), opt="sgd")


def test_one_and_two_threads_bitwise():
    results = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        try:
            net, spec, arrays = _build_pair(784, MLP + [], seed=3)
            g = spec.to_core([("sparse_categorical_crossentropy", False, 1.0, 1.0)])
            g.set_optimizer("adam", {"learning_rate": 1e-3})
            rng = np.random.default_rng(5)
            x = rng.random((256, 784), dtype=np.float32)
            y = rng.integers(0, 10, 256).astype(np.int32)
            losses = [g.train_step([x], [y], None, rng.permutation(256)[:128].astype(np.int64))[0]
                      for _ in range(3)]
            results.append((losses, [a.copy() for a in arrays]))
        finally:
            pynn.set_num_threads(2)
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        assert np.array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# Graph-only structure: finite differences


class Builder:
    """A small GraphSpec builder with random parameters."""

    def __init__(self, seed=0):
        self.spec = GraphSpec()
        self.rng = np.random.default_rng(seed)
        self.n = 0

    def input(self, *shape):
        return self.spec.add_input(shape)

    def param(self, *shape, scale=0.5, name="p", trainable=True):
        v = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        return self.spec.add_param(ParamRef(value=v, name=name, trainable=trainable))

    def node(self, op, inputs, out_shape, params=(), **attrs):
        self.n += 1
        return self.spec.add_node(op, inputs, [out_shape], list(params), attrs,
                                  f"{op}_{self.n}")[0]

    def dense(self, x, units, act="tanh", kernel=None, bias=None):
        shape = self.spec.shapes[x]
        kernel = self.param(shape[-1], units, name="kernel") if kernel is None else kernel
        bias = self.param(units, scale=0.1, name="bias") if bias is None else bias
        return self.node("dense", [x], shape[:-1] + (units,), [kernel, bias], units=units,
                         activation=act), kernel, bias


def _param_grads(g, spec, xs, ys, sws=None):
    """Gradients via a train step with plain SGD at learning rate 0 (weights unchanged)."""
    g.set_optimizer("sgd", {"learning_rate": 0.0})
    g.train_step(xs, ys, sws)
    return [g.get_grad(p) for p in range(len(spec.params))]


def _check_fd(g, spec, xs, ys, pids=None, eps=1e-2, count=6, sws=None):
    grads = _param_grads(g, spec, xs, ys, sws)
    rng = np.random.default_rng(99)
    for pid in (range(len(spec.params)) if pids is None else pids):
        arr = spec.params[pid].value
        flat = arr.reshape(-1)
        for i in rng.choice(flat.size, min(count, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + eps
            up = g.test_step(xs, ys, sws)[0]
            flat[i] = old - eps
            down = g.test_step(xs, ys, sws)[0]
            flat[i] = old
            fd = (up - down) / (np.float64(old + eps) - np.float64(old - eps))
            got = grads[pid].reshape(-1)[i]
            assert abs(fd - got) <= 2e-3 + 2e-2 * abs(got), (spec.params[pid].name, i, fd, got)
    return grads


def test_skip_connection_add_gradients():
    b = Builder(1)
    x = b.input(6)
    h, *_ = b.dense(x, 6, "tanh")
    h2, *_ = b.dense(h, 6, "softplus")
    s = b.node("add", [h, h2, x], (6,))
    out, *_ = b.dense(s, 3, "linear")
    b.spec.outputs = [out]
    g = b.spec.to_core([("mean_squared_error", False, 1.0, 1.0)])
    xs = [_f32(16, 6)]
    ys = [_f32(16, 3)]
    _check_fd(g, b.spec, xs, ys)


def test_concatenate_and_fan_out_gradients():
    b = Builder(2)
    x = b.input(5)
    a, *_ = b.dense(x, 4, "sigmoid")      # x fans out to three nodes
    c, *_ = b.dense(x, 3, "tanh")
    cat = b.node("concatenate", [a, c, x], (12,), axis=-1)
    m = b.node("multiply", [cat, cat], (12,))  # a node that reads one tensor twice
    out, *_ = b.dense(m, 4, "softmax")
    b.spec.outputs = [out]
    g = b.spec.to_core([("categorical_crossentropy", False, 1.0, 1.0)])
    xs = [_f32(10, 5)]
    ys = [np.eye(4, dtype=np.float32)[RNG.integers(0, 4, 10)]]
    _check_fd(g, b.spec, xs, ys)


def test_shared_layer_called_twice_accumulates():
    b = Builder(3)
    x1 = b.input(4)
    x2 = b.input(4)
    h1, k, bias = b.dense(x1, 4, "tanh")
    h2, *_ = b.dense(x2, 4, "tanh", kernel=k, bias=bias)       # the same layer again
    h3, *_ = b.dense(h1, 4, "tanh", kernel=k, bias=bias)       # and a third time, in a chain
    s = b.node("subtract", [h3, h2], (4,))
    out, *_ = b.dense(s, 2, "linear")
    b.spec.outputs = [out]
    assert len(b.spec.params) == 4
    g = b.spec.to_core([("mean_squared_error", False, 1.0, 1.0)])
    xs = [_f32(12, 4), _f32(12, 4)]
    ys = [_f32(12, 2)]
    grads = _check_fd(g, b.spec, xs, ys, count=8)
    assert np.abs(grads[0]).sum() > 0


def test_two_inputs_two_outputs_with_loss_weights():
    b = Builder(4)
    xa = b.input(6)
    xb = b.input(3)
    ha, *_ = b.dense(xa, 5, "tanh")
    hb, *_ = b.dense(xb, 5, "tanh")
    avg = b.node("average", [ha, hb], (5,))
    o1, *_ = b.dense(avg, 3, "softmax")
    o2, *_ = b.dense(hb, 2, "linear")
    b.spec.outputs = [o1, o2]
    losses = [("sparse_categorical_crossentropy", False, 1.0, 0.7),
              ("mean_squared_error", False, 1.0, 2.5)]
    g = b.spec.to_core(losses)
    xs = [_f32(9, 6), _f32(9, 3)]
    ys = [RNG.integers(0, 3, 9).astype(np.int32), _f32(9, 2)]
    _check_fd(g, b.spec, xs, ys)
    total, per, correct, outs = g.test_step(xs, ys, None, None, True)
    assert total == pytest.approx(0.7 * per[0] + 2.5 * per[1], rel=1e-12)
    assert np.allclose(outs[0].sum(1), 1.0, atol=1e-6)  # probabilities, not logits
    assert correct[1] == 0 and 0 <= correct[0] <= 9
    # An output without a loss: no targets, and it gets no gradient from a loss.
    g2 = b.spec.to_core([losses[0], None])
    g2.set_optimizer("sgd", {"learning_rate": 0.0})
    g2.train_step(xs, [ys[0], None])
    assert not np.any(g2.get_grad(b.spec.nodes[-1].params[0]))


def test_nd_ops_forward_values():
    b = Builder(5)
    x = b.input(3, 4)
    d, k, bias = b.dense(x, 5, "relu")                         # dense on the last axis
    p = b.node("permute", [d], (5, 3), dims=[2, 1])
    r = b.node("reshape", [p], (15,), target_shape=[15])
    f = b.node("flatten", [d], (15,))
    mx = b.node("maximum", [r, f], (15,))
    mn = b.node("minimum", [r, f], (15,))
    rv = b.node("repeat_vector", [mx], (2, 15), n=2)
    v = b.input(4)
    w = b.input(4)
    dot1 = b.node("dot", [v, w], (1,), axes=[1, 1])
    cos = b.node("dot", [v, w], (1,), axes=[1, 1], normalize=True)
    dot2 = b.node("dot", [x, p], (4, 5), axes=[1, 2])          # (3,4) x (5,3) over 3
    cat = b.node("concatenate", [d, d], (3, 10), axis=-1)
    cat0 = b.node("concatenate", [x, x], (6, 4), axis=0)
    ident = b.node("identity", [mn], (15,))
    b.spec.outputs = [rv, dot1, cos, dot2, cat, cat0, ident]
    g = b.spec.to_core()
    n = 7
    X, V, W = _f32(n, 3, 4), _f32(n, 4), _f32(n, 4)
    outs = [np.zeros((n,) + b.spec.shapes[t], np.float32) for t in b.spec.outputs]
    g.predict([X, V, W], outs, 3)
    K, B = b.spec.params[k].value, b.spec.params[bias].value
    D = np.maximum(X @ K + B, 0)
    P = D.transpose(0, 2, 1)
    R, F = P.reshape(n, 15), D.reshape(n, 15)
    tol = dict(rtol=1e-5, atol=1e-5)
    assert np.allclose(outs[0], np.repeat(np.maximum(R, F)[:, None, :], 2, axis=1), **tol)
    assert np.allclose(outs[1][:, 0], (V * W).sum(1), **tol)
    cosv = (V * W).sum(1) / np.linalg.norm(V, axis=1) / np.linalg.norm(W, axis=1)
    assert np.allclose(outs[2][:, 0], cosv, **tol)
    assert np.allclose(outs[3], np.einsum("nai,nba->nib", X, P), **tol)
    assert np.allclose(outs[4], np.concatenate([D, D], -1), **tol)
    assert np.allclose(outs[5], np.concatenate([X, X], 1), **tol)
    assert np.allclose(outs[6], np.minimum(R, F), **tol)


def test_nd_ops_gradients():
    b = Builder(6)
    x = b.input(3, 4)
    d, *_ = b.dense(x, 5, "tanh")                 # (3, 5), rows = batch * 3
    p = b.node("permute", [d], (5, 3), dims=[2, 1])
    dt = b.node("dot", [p, d], (5, 5), axes=[2, 1])  # (5,3) x (3,5)
    cs = b.node("dot", [d, d], (5, 5), axes=[1, 1], normalize=True)
    s = b.node("add", [dt, cs], (5, 5))
    fl = b.node("flatten", [s], (25,))
    h, *_ = b.dense(fl, 6, "softplus")
    rv = b.node("repeat_vector", [h], (2, 6), n=2)
    pr = b.node("prelu", [rv], (2, 6), [b.param(2, 6, scale=0.1, name="alpha")])
    out, *_ = b.dense(pr, 3, "linear")           # (2, 3): loss rows = batch * 2
    b.spec.outputs = [out]
    g = b.spec.to_core([("mean_squared_error", False, 1.0, 1.0)])
    xs = [_f32(8, 3, 4)]
    ys = [_f32(8, 2, 3)]
    _check_fd(g, b.spec, xs, ys, count=5)


def test_input_gradient_matches_network_and_fd():
    net, spec, _ = _build_pair(12, [("dense", 8, "tanh"), ("dense", 4, "softmax")], seed=8)
    g = spec.to_core([("categorical_crossentropy", False, 1.0, 1.0)])  # fused output
    net.set_loss("categorical_crossentropy", False, 1.0)
    x = _f32(5, 12)
    seed = _f32(5, 4)
    dx = g.input_gradient([x], [seed])[0]
    assert np.array_equal(dx, net.input_gradient(x, seed))
    # Two inputs, one unused by the output: its gradient is zero.
    b = Builder(9)
    xa, _xb = b.input(3), b.input(2)
    h, *_ = b.dense(xa, 3, "sigmoid")
    b.spec.outputs = [h]
    g2 = b.spec.to_core()
    xa_v, xb_v = _f32(4, 3).astype(np.float64), _f32(4, 2)
    seed2 = _f32(4, 3)
    ga, gb = g2.input_gradient([xa_v.astype(np.float32), xb_v], [seed2])
    assert not gb.any()
    out = np.zeros((4, 3), np.float32)
    for i in range(3):
        e = np.zeros((4, 3))
        e[:, i] = 1e-2
        up, down = np.zeros_like(out), np.zeros_like(out)
        g2.predict([(xa_v + e).astype(np.float32), xb_v], [up], 4)
        g2.predict([(xa_v - e).astype(np.float32), xb_v], [down], 4)
        fd = ((up.astype(np.float64) - down) * seed2).sum(1) / 2e-2
        assert np.allclose(fd, ga[:, i], atol=2e-3, rtol=2e-2)


# ---------------------------------------------------------------------------------------------
# Trainable flags


def test_frozen_params_get_no_update_and_no_grad_bitwise_with_network():
    layers = [("dense", 16, "relu"), ("dense", 8, "relu"), ("dense", 3, "softmax")]
    net, spec, arrays = _build_pair(10, layers, seed=4)
    before = [a.copy() for a in arrays]
    spec.params[0].frozen = True
    spec.params[1].frozen = True
    g = spec.to_core([("sparse_categorical_crossentropy", False, 1.0, 1.0)])
    net.set_frozen(0, True)
    net.set_frozen(1, True)
    net.set_loss("sparse_categorical_crossentropy", False, 1.0)
    for o in (net, g):
        o.set_optimizer("adam", {"learning_rate": 1e-2})
    x = _f32(40, 10)
    y = RNG.integers(0, 3, 40).astype(np.int32)
    for _ in range(3):
        idx = RNG.permutation(40)[:16].astype(np.int64)
        assert net.train_step(x, None, y, None, idx)[0] == g.train_step([x], [y], None, idx)[0]
    assert np.array_equal(arrays[0], before[0]) and np.array_equal(arrays[1], before[1])
    assert not g.get_grad(0).any() and not g.get_grad(1).any()  # never computed
    for i in range(2, 6):
        assert not np.array_equal(arrays[i], before[i])
        assert np.array_equal(arrays[i], net.get_param(i))


def test_trainable_flag_flipped_between_steps():
    net, spec, arrays = _build_pair(10, [("dense", 8, "tanh"), ("dense", 3, "softmax")], seed=5)
    g = spec.to_core([("sparse_categorical_crossentropy", False, 1.0, 1.0)])
    g.set_optimizer("adam", {"learning_rate": 1e-2})
    slots = g.memory_info()["slot_bytes"]
    assert g.num_slots(0) == 2  # slots exist for every weight, frozen or not
    x = _f32(20, 10)
    y = RNG.integers(0, 3, 20).astype(np.int32)
    g.set_trainable(2, False)
    g.set_trainable(3, False)
    w_before = arrays[2].copy()
    k_before = arrays[0].copy()
    g.train_step([x], [y])
    assert np.array_equal(arrays[2], w_before) and not np.array_equal(arrays[0], k_before)
    g.set_trainable(2, True)
    g.set_trainable(3, True)
    g.set_trainable(0, False)
    g.set_trainable(1, False)
    k_before = arrays[0].copy()
    g.train_step([x], [y])
    assert not np.array_equal(arrays[2], w_before) and np.array_equal(arrays[0], k_before)
    assert g.memory_info()["slot_bytes"] == slots
    assert g.param_info(0) == ("l0/kernel", [10, 8], False)
    assert g.iterations == 2


def test_penalties_count_trainable_params_only_in_train_and_test():
    net, spec, arrays = _build_pair(6, [("dense", 4, "tanh"), ("dense", 2, "linear")], seed=6)
    spec.params[0].l2 = 0.5
    spec.params[2].l1 = 0.25
    g = spec.to_core([("mean_squared_error", False, 1.0, 1.0)])
    x, y = _f32(5, 6), _f32(5, 2)
    base = g.test_step([x], [y])[1][0]
    pen = 0.5 * float((arrays[0].astype(np.float64) ** 2).sum()) + \
        0.25 * float(np.abs(arrays[2].astype(np.float64)).sum())
    assert g.test_step([x], [y])[0] == pytest.approx(base + pen, rel=1e-6)
    g.set_trainable(0, False)
    assert g.test_step([x], [y])[0] == pytest.approx(
        base + 0.25 * float(np.abs(arrays[2].astype(np.float64)).sum()), rel=1e-6)
    g.set_optimizer("sgd", {"learning_rate": 0.0})
    total, losses, _, _ = g.train_step([x], [y])
    assert total == pytest.approx(losses[0] + 0.25 * float(np.abs(arrays[2]).sum()), rel=1e-6)


def test_frozen_batchnorm_runs_in_inference_mode():
    net, spec, arrays = _build_pair(6, [("dense", 4, "linear"), ("batchnorm",),
                                        ("dense", 2, "linear")], seed=7)
    for pid in range(2, 6):
        spec.params[pid].frozen = True    # the layer is frozen
    g = spec.to_core([("mean_squared_error", False, 1.0, 1.0)])
    assert [g.param_info(p)[2] for p in range(2, 6)] == [False] * 4
    g.set_optimizer("sgd", {"learning_rate": 0.1})
    mm, mv = arrays[4].copy(), arrays[5].copy()
    x, y = _f32(8, 6), _f32(8, 2)
    g.train_step([x], [y])
    assert np.array_equal(arrays[4], mm) and np.array_equal(arrays[5], mv)
    for pid in (2, 3, 4, 5):  # unfreezing the layer: batch statistics and updates again
        g.set_trainable(pid, True)
    g.train_step([x], [y])
    assert not np.array_equal(arrays[4], mm)
    assert g.num_slots(4) == 0 and not g.get_grad(4).any()


# ---------------------------------------------------------------------------------------------
# Memory, edge sizes


def test_memory_info_and_capacity_growth():
    net, spec, arrays = _build_pair(30, [("dense", 20, "relu"), ("dense", 10, "relu"),
                                         ("dense", 1, "sigmoid")], seed=9)
    g = spec.to_core([("binary_crossentropy", False, 1.0, 1.0)])
    g.set_optimizer("adam", {})
    x = _f32(50, 30)
    y = (RNG.random((50, 1)) > 0.5).astype(np.float32)
    g.train_step([x], [y], None, np.arange(1, dtype=np.int64))      # batch 1
    m1 = g.memory_info()
    assert m1["capacity"] == 1
    g.train_step([x], [y], None, np.arange(40, dtype=np.int64))     # capacity grows
    g.train_step([x], [y])                                          # all 50 rows, direct
    m = g.memory_info()
    assert m["capacity"] == 50
    assert m["train_activation_bytes"] > m1["train_activation_bytes"]
    assert 0 < m["predict_activation_bytes"] < m["train_activation_bytes"]
    assert m["param_bytes"] == sum(a.nbytes for a in arrays)
    assert m["grad_bytes"] == m["param_bytes"]
    assert m["slot_bytes"] == 2 * m["param_bytes"]
    allocated = m["allocated_arena_bytes"]
    for _ in range(3):
        g.train_step([x], [y], None, np.arange(20, dtype=np.int64))
    assert g.memory_info()["allocated_arena_bytes"] == allocated  # smaller batches: no growth
    # Predict at the same capacity needs no more than the values alive at once.
    out = np.zeros((50, 1), np.float32)
    g.predict([x], [out], 50)
    ref = np.zeros_like(out)
    for i, a in enumerate(arrays):
        net.set_param(i, a)
    net.set_loss("binary_crossentropy", False, 1.0)
    net.predict(x, ref, 50)
    assert np.array_equal(out, ref)


def test_width_one_and_batch_one():
    b = Builder(10)
    x = b.input(1)
    h, *_ = b.dense(x, 1, "tanh")
    out, *_ = b.dense(h, 1, "linear")
    b.spec.outputs = [out]
    g = b.spec.to_core([("mean_squared_error", False, 1.0, 1.0)])
    _check_fd(g, b.spec, [_f32(1, 1)], [_f32(1, 1)])
    o = np.zeros((1, 1), np.float32)
    g.predict([_f32(1, 1)], [o], 1)
    assert np.isfinite(o).all()


def test_rank2_input_as_flat_rows_and_nd_targets():
    b = Builder(11)
    x = b.input(2, 3)
    h, *_ = b.dense(x, 4, "softmax")      # softmax over the last axis, per (sample, row)
    b.spec.outputs = [h]
    g = b.spec.to_core([("sparse_categorical_crossentropy", False, 1.0, 1.0)])
    g.set_optimizer("sgd", {"learning_rate": 0.1})
    X = _f32(6, 2, 3)
    labels = RNG.integers(0, 4, (6, 2)).astype(np.int32)
    total, losses, correct, outs = g.train_step([X.reshape(6, 6)], [labels], None, None, True)
    assert outs[0].shape == (6, 2, 4) and np.allclose(outs[0].sum(-1), 1, atol=1e-6)
    assert 0 <= correct[0] <= 12


# ---------------------------------------------------------------------------------------------
# Bad input


def _small_graph():
    b = Builder(12)
    x = b.input(4)
    h, *_ = b.dense(x, 3, "softmax")
    b.spec.outputs = [h]
    return b.spec.to_core([("sparse_categorical_crossentropy", False, 1.0, 1.0)]), b


def test_bad_building_calls_raise():
    g = _core.Graph()
    x = g.add_input([4])
    W = np.zeros((4, 3), np.float32)
    pw = g.add_param(W, "k", True)
    with pytest.raises(ValueError, match="unknown op 'nope'.*dense"):
        g.add_node("nope", [x], [], {}, "n")
    with pytest.raises(ValueError, match="unknown attribute 'color'"):
        g.add_node("dense", [x], [pw], {"units": 3, "use_bias": False, "color": 1}, "d")
    with pytest.raises(ValueError, match=r"node 'd'.*kernel shape \(4, 3\).*expected \(4, 5\)"):
        g.add_node("dense", [x], [pw], {"units": 5, "use_bias": False}, "d")
    with pytest.raises(IndexError, match="tensor 9"):
        g.add_node("dense", [9], [pw], {"units": 3, "use_bias": False}, "d")
    with pytest.raises(IndexError, match="parameter 5"):
        g.add_node("dense", [x], [5], {"units": 3, "use_bias": False}, "d")
    with pytest.raises(ValueError, match="input 1 has shape"):
        y = g.add_input([5])
        g.add_node("add", [x, y], [], {}, "a")
    with pytest.raises(ValueError, match="cannot reshape"):
        g.add_node("reshape", [x], [], {"target_shape": [3]}, "r")
    with pytest.raises(ValueError, match="must be an integer"):
        g.add_node("dense", [x], [pw], {"units": "three", "use_bias": False}, "d")
    with pytest.raises(ValueError, match="unknown activation"):
        g.add_node("dense", [x], [pw], {"units": 3, "use_bias": False, "activation": "zz"}, "d")
    with pytest.raises(TypeError, match="float32"):
        g.add_param(np.zeros(3), "bad", True)
    with pytest.raises(ValueError, match="read-only"):
        ro = np.zeros(3, np.float32)
        ro.flags.writeable = False
        g.add_param(ro, "ro", True)
    with pytest.raises(ValueError, match="C-contiguous"):
        g.add_param(np.zeros((4, 4), np.float32)[:, ::2], "nc", True)
    with pytest.raises(ValueError, match="positive"):
        g.add_input([0, 3])
    with pytest.raises(IndexError):
        g.tensor_shape(100)
    with pytest.raises(IndexError):
        g.set_outputs([100])
    with pytest.raises(ValueError, match="listed twice"):
        g.set_outputs([x, x])
    with pytest.raises(IndexError):
        g.set_trainable(7, False)
    with pytest.raises(IndexError):
        g.get_grad(-1)
    with pytest.raises(ValueError, match="set_outputs"):
        g.set_losses([("mean_squared_error", False, 1.0, 1.0)])
    with pytest.raises(ValueError, match="no losses"):
        g.test_step([np.zeros((1, 4), np.float32)], [None])
    node = g.add_node("dense", [x], [pw], {"units": 3, "use_bias": False}, "d")
    g.set_outputs(node)
    with pytest.raises(ValueError, match="unknown loss"):
        g.set_losses([("hinge", False, 1.0, 1.0)])
    with pytest.raises(ValueError, match="one entry"):
        g.set_losses([None, None])
    g.set_losses([("mean_squared_error", False, 1.0, 1.0)])
    with pytest.raises(ValueError, match="no optimizer"):
        g.train_step([np.zeros((1, 4), np.float32)], [np.zeros((1, 3), np.float32)])
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'"):
        g.set_optimizer("adamx", {})
    with pytest.raises(ValueError, match="'lr' is not an argument of adam"):
        g.set_optimizer("adam", {"lr": 0.1})


def test_bad_step_arguments_raise():
    g, b = _small_graph()
    g.set_optimizer("adam", {})
    x = _f32(5, 4)
    y = np.zeros(5, np.int32)
    with pytest.raises(TypeError, match="xs"):
        g.train_step(x, [y])
    with pytest.raises(ValueError, match=r"xs: expected 1 array"):
        g.train_step([x, x], [y])
    with pytest.raises(TypeError, match=r"xs\[0\]: expected float32, got float64"):
        g.train_step([x.astype(np.float64)], [y])
    with pytest.raises(ValueError, match=r"xs\[0\]: expected shape \(rows, 4\)"):
        g.train_step([_f32(5, 3)], [y])
    with pytest.raises(TypeError, match="int32 labels"):
        g.train_step([x], [y.astype(np.float32)])
    with pytest.raises(ValueError, match=r"ys\[0\]: expected 5 rows"):
        g.train_step([x], [np.zeros(4, np.int32)])
    with pytest.raises(ValueError, match=r"ys\[0\].*required"):
        g.train_step([x], [None])
    with pytest.raises(ValueError, match="label 7"):
        g.train_step([x], [np.full(5, 7, np.int32)])
    with pytest.raises(IndexError, match="idx"):
        g.train_step([x], [y], None, np.array([0, 9], np.int64))
    with pytest.raises(TypeError, match="idx"):
        g.train_step([x], [y], None, np.array([0, 1], np.int32))
    with pytest.raises(ValueError, match="sample_weights"):
        g.train_step([x], [y], [np.ones(4, np.float32)])
    with pytest.raises(ValueError, match="chunk"):
        g.predict([x], [np.zeros((5, 3), np.float32)], 0)
    with pytest.raises(ValueError, match=r"outs\[0\]: expected shape"):
        g.predict([x], [np.zeros((5, 2), np.float32)], 4)
    with pytest.raises(ValueError, match=r"seeds: expected 1"):
        g.input_gradient([x], [])
    with pytest.raises(IndexError, match="slot"):
        g.get_slot(0, 5)
    with pytest.raises(TypeError, match=r"attrs\['units'\]"):
        g.add_node("dense", [0], [0], {"units": object()}, "d")
    # The graph still works after all of that.
    assert np.isfinite(g.train_step([x], [y])[0])


def test_optimizer_configs_of_the_python_classes_are_accepted():
    g, _ = _small_graph()
    for cls in (pynn.optimizers.SGD, pynn.optimizers.Adam, pynn.optimizers.RMSprop,
                pynn.optimizers.Adagrad, pynn.optimizers.Nadam):
        opt = cls()
        g.set_optimizer(opt.kind, opt._engine_config())


def test_fusion_follows_losses_and_outputs():
    b = Builder(13)
    x = b.input(5)
    h, *_ = b.dense(x, 4, "softmax")
    b.spec.outputs = [h]
    g = b.spec.to_core([("categorical_crossentropy", False, 1.0, 1.0)])  # fused: logits inside
    X = _f32(3, 5)
    p1 = np.zeros((3, 4), np.float32)
    g.predict([X], [p1], 3)
    g.set_outputs([h])                       # losses gone: no fusion, softmax in the node
    p2 = np.zeros_like(p1)
    g.predict([X], [p2], 3)
    assert np.allclose(p1.sum(1), 1, atol=1e-6) and np.allclose(p1, p2, atol=1e-6)
    # A second consumer of the output forbids fusion; results are the same probabilities.
    g.set_losses([("categorical_crossentropy", False, 1.0, 1.0)])
    ident = g.add_node("identity", [h], [], {}, "extra")
    p3 = np.zeros_like(p1)
    g.predict([X], [p3], 3)
    assert np.allclose(p3, p1, atol=1e-6) and g.tensor_shape(ident[0]) == (4,)
    y = np.eye(4, dtype=np.float32)[[0, 1, 2]]
    g.set_optimizer("adam", {"learning_rate": 1e-3})
    assert np.isfinite(g.train_step([X], [y])[0])
    assert g.num_slots(0) == 2
    g.set_slot(0, 1, np.full((5, 4), 0.5, np.float32))
    assert np.array_equal(g.get_slot(0, 1), np.full((5, 4), 0.5, np.float32))
    g.iterations = 7
    assert g.iterations == 7


def test_dense_rrelu_draws_reproducible_slopes_in_training():
    def make():
        b = Builder(14)
        x = b.input(6)
        h, *_ = b.dense(x, 8, "rrelu")
        b.spec.nodes[-1].attrs["seed"] = 5
        out, *_ = b.dense(h, 2, "linear")
        b.spec.outputs = [out]
        g = b.spec.to_core([("mean_squared_error", False, 1.0, 1.0)])
        g.set_optimizer("sgd", {"learning_rate": 0.05})
        return g, b.spec
    X, Y = _f32(16, 6, scale=2.0), _f32(16, 2)
    (g1, s1), (g2, s2) = make(), make()
    r1 = [g1.train_step([X], [Y])[0] for _ in range(3)]
    r2 = [g2.train_step([X], [Y])[0] for _ in range(3)]
    assert r1 == r2 and all(np.isfinite(r1))
    for a, b in zip(s1.params, s2.params):
        assert np.array_equal(a.value, b.value)
    # Training draws slopes; evaluation uses the mean slope: the two losses differ.
    g1.set_optimizer("sgd", {"learning_rate": 0.0})
    assert g1.train_step([X], [Y])[0] != g1.test_step([X], [Y])[0]
