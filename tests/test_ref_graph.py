"""The NumPy graph executor (pynn.reference.graph) on whole graphs built by hand with
GraphSpec: every parameter and input gradient against central finite differences of `loss`.

Tolerance: float64 central differences with h = 1e-6 err by about h^2 f''' (~1e-12) plus
rounding 1e-16 |L| / h (~1e-10 for losses of order 1); a few layers deep the third derivatives
grow by a small factor, so rtol 1e-6 with atol 1e-8 still leaves a margin of two orders while
any missing or doubled contribution (a fan-out not summed, a shared weight counted once) is
off by far more. Kinks are kept away by construction: only smooth activations where the
difference quotient crosses them (no relu), maximum / minimum of inputs that come from
independent random projections (no ties), L1 weights away from 0.

Parameters are stored as float64 here (the contract's arrays are float32) so that a 1e-6 step
is representable; one test checks that float32 parameters are read the same way.
"""
import zlib

import numpy as np
import pytest
from test_ref_dense import numeric_grad

from pynn.models.graph_spec import GraphSpec, ParamRef
from pynn.reference import graph, merging, regularization
from pynn.reference import losses as ref_losses

RTOL, ATOL = 1e-6, 1e-8
SMOOTH = ["linear", "tanh", "sigmoid", "softplus", "silu", "gelu", "elu", "softsign"]


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


class Builder:
    """Builds a GraphSpec by hand, computing every output shape itself (so the executor's
    shape check judges the ops, not the other way round)."""

    def __init__(self, *key):
        self.spec = GraphSpec()
        self.rng = _rng(*key)

    def shape(self, t):
        return self.spec.shapes[t]

    def input(self, *shape):
        return self.spec.add_input(shape)

    def param(self, shape, name, scale=0.6, trainable=True, l1=0.0, l2=0.0, value=None):
        v = self.rng.standard_normal(shape) * scale if value is None else np.array(value, float)
        return self.spec.add_param(ParamRef(v, name, trainable, l1, l2))

    def node(self, op, inputs, out_shape, params=(), name="", **attrs):
        return self.spec.add_node(op, inputs, [out_shape], params, attrs, name or op)[0]

    def dense_params(self, n_in, units, name="dense", use_bias=True, **kw):
        ps = [self.param((n_in, units), f"{name}/kernel", **kw)]
        if use_bias:
            ps.append(self.param((units,), f"{name}/bias", scale=0.3))
        return ps

    def dense(self, x, units, activation="linear", act_params=(), use_bias=True, params=None,
              name="dense", **kw):
        if params is None:
            params = self.dense_params(self.shape(x)[-1], units, name, use_bias, **kw)
        return self.node("dense", [x], self.shape(x)[:-1] + (units,), params, name,
                         units=units, activation=activation, act_params=list(act_params),
                         use_bias=use_bias)

    def act(self, x, activation, *act_params):
        return self.node("activation", [x], self.shape(x), activation=activation,
                         act_params=list(act_params), seed=0)

    def merge(self, op, *xs):
        return self.node(op, list(xs), self.shape(xs[0]))

    def concat(self, xs, axis=-1):
        shape = list(self.shape(xs[0]))
        ax = merging.sample_axis(axis, len(shape) + 1) - 1
        shape[ax] = sum(self.shape(x)[ax] for x in xs)
        return self.node("concatenate", list(xs), tuple(shape), axis=axis)

    def batchnorm(self, x, center=True, scale=True, momentum=0.9, epsilon=1e-3, frozen=False):
        c = self.shape(x)[-1]
        ps = []
        if scale:
            ps.append(self.param((c,), "bn/gamma", value=1 + 0.3 * self.rng.standard_normal(c)))
        if center:
            ps.append(self.param((c,), "bn/beta", scale=0.3))
        ps.append(self.param((c,), "bn/moving_mean", trainable=False, scale=0.2))
        ps.append(self.param((c,), "bn/moving_variance", trainable=False,
                             value=self.rng.uniform(0.5, 2.0, c)))
        attrs = dict(momentum=momentum, epsilon=epsilon, center=center, scale=scale)
        if frozen:
            attrs["frozen"] = True
        return self.node("batchnorm", [x], self.shape(x), ps, **attrs)

    def prelu(self, x):
        alpha = self.param(self.shape(x), "prelu/alpha", value=self.rng.uniform(0.1, 0.5,
                                                                                self.shape(x)))
        return self.node("prelu", [x], self.shape(x), [alpha])

    def reshape(self, x, *target):
        return self.node("reshape", [x], target, target_shape=list(target))

    def flatten(self, x):
        return self.node("flatten", [x], (int(np.prod(self.shape(x))),))

    def identity(self, x):
        return self.node("identity", [x], self.shape(x))

    def permute(self, x, dims):
        return self.node("permute", [x], tuple(self.shape(x)[d - 1] for d in dims),
                         dims=list(dims))

    def repeat(self, x, n):
        return self.node("repeat_vector", [x], (n,) + self.shape(x), n=n)

    def dot(self, x, y, axes, normalize=False):
        sx, sy = self.shape(x), self.shape(y)
        ax, ay = merging.dot_axes(axes, len(sx) + 1, len(sy) + 1)
        rest = tuple(s for i, s in enumerate(sx) if i != ax - 1) + \
            tuple(s for i, s in enumerate(sy) if i != ay - 1)
        return self.node("dot", [x, y], rest or (1,), axes=axes, normalize=normalize)

    def dropout(self, x, rate=0.5):
        return self.node("dropout", [x], self.shape(x), rate=rate, seed=0)

    # data for the graph
    def inputs(self, batch, scale=1.0):
        return [self.rng.standard_normal((batch, *self.shape(t))) * scale
                for t in self.spec.inputs]

    def target(self, kind, batch, t):
        shape = (batch, *self.shape(t))
        if kind == "sparse_categorical_crossentropy":
            return self.rng.integers(0, shape[-1], shape[:-1]).astype(np.int64)
        if kind == "categorical_crossentropy":
            return self.rng.dirichlet(np.ones(shape[-1]), shape[:-1])
        if kind == "binary_crossentropy":
            return self.rng.uniform(0, 1, shape)
        return self.rng.standard_normal(shape)


def check_gradients(spec, xs, targets, losses, sample_weights=None, training=True,
                    dropout_masks=None, rrelu_slopes=None):
    """graph.gradients against finite differences of graph.loss for every param and input."""
    before = [p.value.copy() for p in spec.params]
    total, per_output, pgrads, igrads = graph.gradients(
        spec, xs, targets, losses, sample_weights, training=training,
        dropout_masks=dropout_masks, rrelu_slopes=rrelu_slopes)
    for p, v in zip(spec.params, before):         # the executor never writes a parameter
        np.testing.assert_array_equal(p.value, v)

    def f():
        outs, _ = graph.forward(spec, xs, training=training, dropout_masks=dropout_masks,
                                rrelu_slopes=rrelu_slopes)
        return graph.loss(spec, outs, targets, losses, sample_weights)[0]

    assert total == pytest.approx(f(), rel=1e-14, abs=1e-14)
    assert np.isfinite(total)
    assert len(pgrads) == len(spec.params) and len(igrads) == len(spec.inputs)
    for pid, p in enumerate(spec.params):
        if not p.trainable:
            assert pgrads[pid] is None
            continue
        assert pgrads[pid].shape == p.value.shape
        np.testing.assert_allclose(pgrads[pid], numeric_grad(f, p.value), rtol=RTOL, atol=ATOL,
                                   err_msg=f"param {pid} ({p.name})")
    for i, x in enumerate(xs):
        assert igrads[i].shape == x.shape
        np.testing.assert_allclose(igrads[i], numeric_grad(f, x), rtol=RTOL, atol=ATOL,
                                   err_msg=f"input {i}")
    return total, per_output, pgrads, igrads


# --- hand-built graphs -----------------------------------------------------------------------
def test_skip_connection_with_add():
    b = Builder("skip")
    x = b.input(5)
    h = b.dense(b.dense(x, 4, "tanh", name="d1"), 5, name="d2")
    y = b.dense(b.merge("add", x, h), 3, "softmax", name="out")
    b.spec.outputs = [y]
    xs = b.inputs(4)
    losses = [("categorical_crossentropy", False, 1.0, 1.0)]
    check_gradients(b.spec, xs, [b.target("categorical_crossentropy", 4, y)], losses)


def test_one_tensor_feeding_three_consumers():
    b = Builder("fanout")
    x = b.input(3)
    h = b.dense(x, 4, "tanh", name="h")
    a = b.dense(h, 4, "sigmoid", name="a")          # consumer 1
    s = b.act(h, "softplus")                        # consumer 2
    m = b.merge("multiply", h, a)                   # consumer 3 (and a second use of a)
    assert b.spec.consumers(h) == [1, 2, 3]
    y = b.dense(b.merge("average", a, s, m), 2, name="out")
    b.spec.outputs = [y]
    check_gradients(b.spec, b.inputs(5), [b.target("mean_squared_error", 5, y)],
                    [("mean_squared_error", False, 1.0, 1.0)])


def test_shared_dense_called_twice():
    b = Builder("shared")
    x1, x2 = b.input(4), b.input(4)
    shared = b.dense_params(4, 3, "shared")
    # the same arrays added again give the same ids: one parameter, two nodes
    assert [b.spec.add_param(b.spec.params[p]) for p in shared] == shared
    h1 = b.dense(x1, 3, "tanh", params=shared, name="shared")
    h2 = b.dense(x2, 3, "tanh", params=shared, name="shared")
    # and a square layer applied twice in a chain
    sq = b.dense_params(3, 3, "square")
    g = b.dense(b.dense(h2, 3, "sigmoid", params=sq), 3, "sigmoid", params=sq)
    y = b.dense(b.merge("subtract", h1, g), 2, name="out")
    b.spec.outputs = [y]
    assert len(b.spec.params) == 6
    _, _, pgrads, _ = check_gradients(b.spec, b.inputs(3), [b.target("huber", 3, y)],
                                      [("huber", False, 0.5, 1.0)])
    # the shared kernel's gradient is the sum of its two uses: not either alone
    assert np.abs(pgrads[shared[0]]).sum() > 0


def test_two_inputs_two_outputs_with_loss_and_sample_weights():
    b = Builder("two-two")
    x1, x2 = b.input(3), b.input(2, 4)
    f2 = b.flatten(x2)
    h = b.concat([b.dense(x1, 3, "tanh", name="a"), b.dense(f2, 2, "elu", name="b")])
    y1 = b.dense(h, 2, name="logits")                   # binary CE from logits
    y2 = b.dense(b.merge("maximum", b.dense(h, 3, name="p"), b.dense(x1, 3, name="q")), 3,
                 name="reg")
    b.spec.outputs = [y1, y2]
    batch = 4
    xs = b.inputs(batch)
    targets = [b.target("binary_crossentropy", batch, y1), b.target("huber", batch, y2)]
    losses = [("binary_crossentropy", True, 1.0, 0.7), ("huber", False, 1.0, 0.3)]
    sw = [b.rng.uniform(0.2, 2.0, batch), b.rng.uniform(0.2, 2.0, batch)]
    total, per, _, _ = check_gradients(b.spec, xs, targets, losses, sw)
    # total = weighted sum of the per-output losses (no penalties here)
    assert total == pytest.approx(0.7 * per[0] + 0.3 * per[1], rel=1e-13)
    outs = graph.predict(b.spec, xs)
    v1 = ref_losses.value_and_grad("binary_crossentropy", outs[0], targets[0], sw[0], True)[0]
    assert per[0] == pytest.approx(v1, rel=1e-13)
    # one sample-weight array for every output, too
    check_gradients(b.spec, xs, targets, losses, sw[0])


def test_an_output_without_loss_and_a_dead_branch():
    b = Builder("no-loss")
    x = b.input(3)
    h = b.dense(x, 4, "tanh", name="h")
    y1 = b.dense(h, 2, name="scored")
    y2 = b.dense(h, 2, name="unscored")                  # an output with no loss
    b.dense(h, 5, "sigmoid", name="dead")               # feeds nothing
    b.spec.outputs = [y1, y2]
    _, per, pgrads, _ = check_gradients(b.spec, b.inputs(3),
                                        [b.target("mean_absolute_error", 3, y1), None],
                                        [("mean_absolute_error", False, 1.0, 1.0), None])
    assert per[1] is None
    for pid, p in enumerate(b.spec.params):
        if p.name.startswith(("unscored", "dead")):
            np.testing.assert_array_equal(pgrads[pid], 0.0)


def test_concatenate_on_rank2_samples_and_identity():
    b = Builder("concat2")
    x = b.input(2, 3)
    a = b.dense(x, 4, "tanh", name="a")                  # (2, 4)
    c = b.concat([x, b.identity(a)], axis=-1)            # (2, 7)
    r = b.concat([c, b.dense(c, 7, "sigmoid", name="r")], axis=1)   # (4, 7)
    y = b.dense(b.flatten(r), 3, name="out")
    b.spec.outputs = [y]
    check_gradients(b.spec, b.inputs(3), [b.target("mean_squared_error", 3, y)],
                    [("mean_squared_error", False, 1.0, 1.0)])


def test_reshape_permute_repeat_chain_with_dense_on_nd_input():
    b = Builder("chain")
    x = b.input(6)
    h = b.reshape(b.dense(x, 12, "tanh", name="d1"), 3, 4)     # (3, 4)
    p = b.permute(h, (2, 1))                                   # (4, 3)
    d = b.dense(p, 2, "silu", name="nd")                        # dense on (4, 3) -> (4, 2)
    r = b.repeat(b.flatten(d), 2)                               # (2, 8)
    q = b.permute(b.reshape(r, 2, 2, 4), (3, 1, 2))             # (4, 2, 2)
    y = b.dense(b.flatten(q), 3, "softmax", name="out")
    b.spec.outputs = [y]
    check_gradients(b.spec, b.inputs(2), [b.target("sparse_categorical_crossentropy", 2, y)],
                    [("sparse_categorical_crossentropy", False, 1.0, 1.0)])


@pytest.mark.parametrize("normalize", [False, True])
def test_dot_vectors_and_matrices(normalize):
    b = Builder("dot", normalize)
    x1, x2 = b.input(4), b.input(5)
    u, v = b.dense(x1, 3, "tanh", name="u"), b.dense(x2, 3, "tanh", name="v")
    cos = b.dot(u, v, 1, normalize)                              # (1,)
    m1 = b.reshape(b.dense(x1, 6, name="m1"), 2, 3)
    m2 = b.reshape(b.dense(x2, 6, name="m2"), 3, 2)
    mm = b.dot(m1, m2, (2, 1), normalize)                        # (2, 2)
    mv = b.dot(m2, u, (1, 1), normalize)                         # (3, 2) . (3,) -> (2,)
    y1 = b.dense(cos, 1, name="o1")
    y2 = b.concat([b.flatten(mm), mv])
    b.spec.outputs = [y1, y2]
    check_gradients(b.spec, b.inputs(3),
                    [b.target("binary_crossentropy", 3, y1), b.target("mean_squared_error", 3, y2)],
                    [("binary_crossentropy", True, 1.0, 1.0), ("mean_squared_error", False, 1.0,
                                                                  0.5)])


@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False),
                                          (False, False)])
@pytest.mark.parametrize("batch", [1, 2, 6])
def test_batchnorm_in_training_mode(center, scale, batch):
    b = Builder("bn", center, scale, batch)
    x = b.input(2, 3)
    h = b.dense(x, 4, name="d")                                  # (2, 4)
    n = b.batchnorm(h, center, scale, momentum=0.8)              # rows = batch * 2
    y = b.dense(b.flatten(b.act(n, "tanh")), 2, name="out")
    b.spec.outputs = [y]
    xs = b.inputs(batch)
    targets = [b.target("mean_squared_error", batch, y)]
    losses = [("mean_squared_error", False, 1.0, 1.0)]
    check_gradients(b.spec, xs, targets, losses)
    # moving statistics: reported, not written
    bn_node = b.spec.nodes[1]
    mean_id, var_id = bn_node.params[-2:]
    _, cache = graph.forward(b.spec, xs, training=True)
    rows = graph.forward(b.spec, xs)[1].values[h].reshape(-1, 4)
    old_mean, old_var = b.spec.params[mean_id].value, b.spec.params[var_id].value
    np.testing.assert_allclose(cache.moving_stats[mean_id],
                               0.8 * old_mean + 0.2 * rows.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(cache.moving_stats[var_id],
                               0.8 * old_var + 0.2 * rows.var(axis=0), rtol=1e-13)
    # inference: moving statistics, and no updates
    _, cache = graph.forward(b.spec, xs, training=False)
    assert cache.moving_stats == {}
    check_gradients(b.spec, xs, targets, losses, training=False)


def test_frozen_batchnorm_runs_in_inference_mode_in_training():
    b = Builder("bn-frozen")
    x = b.input(3)
    n = b.batchnorm(x, frozen=True)
    b.spec.outputs = [n]
    xs = b.inputs(4)
    _, cache = graph.forward(b.spec, xs, training=True)
    assert cache.moving_stats == {}
    gamma, beta, mm, mv = (p.value for p in b.spec.params)
    np.testing.assert_allclose(graph.forward(b.spec, xs, training=True)[0][0],
                               regularization.batchnorm_forward_infer(xs[0], gamma, beta, mm, mv),
                               rtol=1e-14)


def test_batchnorm_of_a_frozen_layer_runs_in_inference_mode():
    class Layer:
        trainable = True

    class Weight:
        def __init__(self, layer):
            self.layer = layer

    b = Builder("bn-owner")
    x = b.input(3)
    n = b.batchnorm(x)
    b.spec.outputs = [n]
    layer = Layer()
    for p in b.spec.params:
        p.owner = Weight(layer)
    xs = b.inputs(4)
    _, cache = graph.forward(b.spec, xs, training=True)
    assert set(cache.moving_stats) == {2, 3}                   # a trainable layer: batch stats
    layer.trainable = False
    for p in b.spec.params:
        p.trainable = False                                    # as the flag reaches a ParamRef
    out, cache = graph.forward(b.spec, xs, training=True)
    assert cache.moving_stats == {}
    np.testing.assert_allclose(out[0], graph.predict(b.spec, xs)[0], rtol=1e-15)


def test_shared_batchnorm_updates_its_moving_stats_twice():
    b = Builder("bn-shared")
    x1, x2 = b.input(3), b.input(3)
    n1 = b.batchnorm(x1, momentum=0.5)
    ps = b.spec.nodes[0].params
    n2 = b.node("batchnorm", [x2], (3,), ps, momentum=0.5, epsilon=1e-3, center=True, scale=True)
    b.spec.outputs = [n1, n2]
    xs = b.inputs(5)
    _, cache = graph.forward(b.spec, xs, training=True)
    mm = b.spec.params[ps[2]].value
    once = 0.5 * mm + 0.5 * xs[0].mean(axis=0)
    np.testing.assert_allclose(cache.moving_stats[ps[2]], 0.5 * once + 0.5 * xs[1].mean(axis=0))
    check_gradients(b.spec, xs, [b.target("mean_squared_error", 5, n1),
                                 b.target("mean_squared_error", 5, n2)],
                    [("mean_squared_error", False, 1.0, 1.0)] * 2)


def test_prelu_with_alpha_of_the_full_sample_shape():
    b = Builder("prelu")
    x = b.input(3, 2)
    p = b.prelu(b.dense(x, 4, name="d"))                         # alpha (3, 4)
    assert b.spec.params[b.spec.nodes[1].params[0]].value.shape == (3, 4)
    y = b.dense(b.flatten(b.prelu(p)), 2, name="out")
    b.spec.outputs = [y]
    check_gradients(b.spec, b.inputs(4), [b.target("mean_squared_error", 4, y)],
                    [("mean_squared_error", False, 1.0, 1.0)])


def test_dropout_uses_the_given_masks_in_training_only():
    b = Builder("dropout")
    x = b.input(4)
    h = b.dense(x, 5, "tanh", name="h")
    d = b.dropout(h, 0.5)
    y = b.dense(d, 2, name="out")
    b.spec.outputs = [y]
    xs = b.inputs(3)
    mask = regularization.dropout_mask((3, 5), 0.5, 11)
    targets, losses = [b.target("mean_squared_error", 3, y)], [("mean_squared_error", False,
                                                                  1.0, 1.0)]
    check_gradients(b.spec, xs, targets, losses, dropout_masks={1: mask})
    _, cache = graph.forward(b.spec, xs, training=True, dropout_masks={1: mask})
    np.testing.assert_array_equal(cache.values[d], cache.values[h] * mask)
    # no mask: the identity, in training and at inference
    for training, masks in ((True, None), (False, {1: mask})):
        _, cache = graph.forward(b.spec, xs, training=training, dropout_masks=masks)
        np.testing.assert_array_equal(cache.values[d], cache.values[h])


def test_rrelu_uses_the_given_slopes_in_training():
    b = Builder("rrelu")
    x = b.input(6)
    r = b.act(b.dense(x, 4, name="d"), "rrelu", 0.1, 0.3)
    y = b.dense(r, 2, name="out")
    b.spec.outputs = [y]
    xs = b.inputs(3)
    slopes = b.rng.uniform(0.1, 0.3, (3, 4))
    targets, losses = [b.target("mean_squared_error", 3, y)], [("mean_squared_error", False,
                                                                  1.0, 1.0)]
    check_gradients(b.spec, xs, targets, losses, rrelu_slopes={1: slopes})
    _, cache = graph.forward(b.spec, xs, training=True, rrelu_slopes={1: slopes})
    z = cache.values[b.spec.nodes[0].outputs[0]]
    np.testing.assert_allclose(cache.values[r], np.where(z >= 0, z, slopes * z), rtol=1e-15)
    _, cache = graph.forward(b.spec, xs, training=False, rrelu_slopes={1: slopes})
    np.testing.assert_allclose(cache.values[r], np.where(z > 0, z, 0.2 * z), rtol=1e-15)


def test_activation_parameters_reach_the_twin():
    b = Builder("act-params")
    x = b.input(5)
    e = b.act(x, "elu", 0.5)
    s = b.act(x, "softplus", 2.0)
    g = b.dense(x, 5, "gelu", act_params=[1.0], name="g")        # approximate gelu
    b.spec.outputs = [e, s, g]
    xs = b.inputs(2)
    outs = graph.predict(b.spec, xs)
    np.testing.assert_allclose(outs[0], np.where(xs[0] > 0, xs[0], 0.5 * np.expm1(xs[0])))
    np.testing.assert_allclose(outs[1], np.log1p(np.exp(2 * xs[0])) / 2)
    k, bias = (b.spec.params[p].value for p in b.spec.nodes[2].params)
    z = xs[0] @ k + bias
    np.testing.assert_allclose(outs[2], 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) *
                                                              (z + 0.044715 * z ** 3))))
    mse = [("mean_squared_error", False, 1.0, 1.0)] * 3
    check_gradients(b.spec, xs, [b.target("mean_squared_error", 2, t) for t in (e, s, g)], mse)


def test_non_trainable_params_have_no_gradient_but_pass_one_on():
    b = Builder("frozen-dense")
    x = b.input(3)
    h = b.dense(x, 4, "tanh", name="frozen", trainable=False)
    y = b.dense(h, 2, name="out", l2=0.1)
    b.spec.outputs = [y]
    _, _, pgrads, igrads = check_gradients(b.spec, b.inputs(3),
                                           [b.target("mean_squared_error", 3, y)],
                                           [("mean_squared_error", False, 1.0, 1.0)])
    assert pgrads[0] is None
    assert np.abs(igrads[0]).sum() > 0


# --- every loss, with penalties --------------------------------------------------------------
LOSS_CASES = [(kind, fl) for kind in ref_losses.NAMES for fl in (False, True)
              if not fl or kind in ref_losses.CROSS_ENTROPIES]
OUT_ACT = {"binary_crossentropy": "sigmoid", "categorical_crossentropy": "softmax",
           "sparse_categorical_crossentropy": "softmax"}


@pytest.mark.parametrize("kind,from_logits", LOSS_CASES)
def test_every_loss_with_penalties(kind, from_logits):
    b = Builder("loss", kind, from_logits)
    x = b.input(4)
    h = b.dense(x, 5, "tanh", name="h", l1=0.01, l2=0.02)
    act = "linear" if from_logits else OUT_ACT.get(kind, "linear")
    y = b.dense(h, 3, act, name="out", l2=0.05)
    b.spec.outputs = [y]
    for p in b.spec.params:                                    # L1 has its kink at 0
        p.value[np.abs(p.value) < 1e-3] = 0.1
    batch = 5
    xs = b.inputs(batch)
    t = [b.target(kind, batch, y)]
    losses = [(kind, from_logits, 0.7, 0.6)]
    sw = b.rng.uniform(0.1, 2.0, batch)
    if kind in ("mean_absolute_error", "huber"):
        # keep |pred - target| away from the kinks at 0 and at delta
        pred = graph.predict(b.spec, xs)[0]
        e = pred - t[0]
        t[0] = np.where(np.abs(e) < 0.05, t[0] + 0.1, t[0])
        t[0] = np.where(np.abs(np.abs(pred - t[0]) - 0.7) < 0.05, t[0] + 0.2, t[0])
    total, per, _, _ = check_gradients(b.spec, xs, t, losses, sw)
    pred = graph.predict(b.spec, xs)[0]
    value = ref_losses.value_and_grad(kind, pred, t[0], sw, from_logits, 0.7)[0]
    penalty = sum(regularization.l1_l2_penalty(p.value, p.l1, p.l2)[0] for p in b.spec.params)
    assert per[0] == pytest.approx(value, rel=1e-13)
    assert total == pytest.approx(0.6 * value + penalty, rel=1e-13)


@pytest.mark.parametrize("kind", ["mean_squared_error", "sparse_categorical_crossentropy"])
def test_loss_on_rank2_outputs_averages_over_every_row(kind):
    b = Builder("nd-loss", kind)
    x = b.input(3, 2)
    y = b.dense(x, 4, "softmax" if kind.startswith("sparse") else "linear", name="out")
    b.spec.outputs = [y]
    xs = b.inputs(5)
    t = b.target(kind, 5, y)                                   # (5, 3, 4) or labels (5, 3)
    sw = b.rng.uniform(0.5, 1.5, 5)
    losses = [(kind, False, 1.0, 1.0)]
    total, _, _, _ = check_gradients(b.spec, xs, [t], losses, sw)
    pred = graph.predict(b.spec, xs)[0]
    if kind == "mean_squared_error":
        per_row = ((pred - t) ** 2).mean(axis=-1)              # (5, 3)
    else:
        per_row = -np.log(np.take_along_axis(pred, t[..., None], axis=-1)[..., 0])
    # Keras: every (sample, position) is a row with its sample's weight; divide by all rows
    assert total == pytest.approx((sw[:, None] * per_row).sum() / 15, rel=1e-12)


# --- random graphs ---------------------------------------------------------------------------
def random_graph(seed):
    """A random DAG over rank-1 tensors, with detours through rank-2 ops. Returns the builder,
    the inputs, targets, losses, sample weights and dropout masks for one batch."""
    b = Builder("random", seed)
    rng = b.rng
    batch = int(rng.choice([1, 2, 4]))
    pool = [b.input(int(rng.integers(1, 5))) for _ in range(int(rng.integers(1, 3)))]
    dropout_nodes = []

    def pick(k=1):
        return [pool[i] for i in rng.choice(len(pool), size=k, replace=len(pool) < k)]

    def width(t, d, name):
        """t projected to width d by a fresh linear dense (fresh weights: no ties later)."""
        return b.dense(t, d, name=name)

    kinds = ["dense", "act", "merge", "concat", "batchnorm", "prelu", "dot", "chain",
             "repeat", "rank2dot", "dropout"]
    for step in range(int(rng.integers(4, 9))):
        kind = kinds[int(rng.integers(len(kinds)))]
        name = f"{kind}{step}"
        (t,) = pick()
        if kind == "dense":
            new = b.dense(t, int(rng.integers(1, 5)), SMOOTH[int(rng.integers(len(SMOOTH)))],
                          name=name)
        elif kind == "act":
            new = b.act(t, SMOOTH[int(rng.integers(1, len(SMOOTH)))])
        elif kind == "merge":
            op = merging.MERGE_OPS[int(rng.integers(6))]
            k = 2 if op == "subtract" else int(rng.integers(2, 4))
            d = int(rng.integers(1, 4))
            new = b.merge(op, *[width(s, d, f"{name}_{i}") for i, s in enumerate(pick(k))])
        elif kind == "concat":
            new = b.concat(pick(2))
        elif kind == "batchnorm":
            new = b.batchnorm(t, bool(rng.integers(2)), bool(rng.integers(2)))
        elif kind == "prelu":
            new = b.prelu(t)
        elif kind == "dot":
            d = int(rng.integers(1, 4))
            s1, s2 = pick(2)
            new = b.dot(width(s1, d, name + "a"), width(s2, d, name + "b"), 1,
                        bool(rng.integers(2)))
        elif kind == "chain":
            p, q = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            m = b.permute(b.reshape(width(t, p * q, name), p, q), (2, 1))
            new = b.flatten(b.dense(m, int(rng.integers(1, 3)), "tanh", name=name + "nd"))
        elif kind == "repeat":
            r = b.repeat(t, int(rng.integers(1, 4)))
            new = b.flatten(b.dense(r, 2, "sigmoid", name=name))
        elif kind == "rank2dot":
            p, k, q = (int(v) for v in rng.integers(1, 4, 3))
            s1, s2 = pick(2)
            m1 = b.reshape(width(s1, p * k, name + "a"), p, k)
            m2 = b.reshape(width(s2, k * q, name + "b"), k, q)
            new = b.flatten(b.dot(m1, m2, (2, 1), bool(rng.integers(2))))
        else:  # dropout
            new = b.dropout(t)
            dropout_nodes.append(len(b.spec.nodes) - 1)
        pool.append(new)
    outs = [pool[-1]] + ([pool[int(rng.integers(len(pool) - 1))]] if rng.integers(2) else [])
    targets, losses = [], []
    for j, o in enumerate(outs):
        kind, from_logits = LOSS_CASES[int(rng.integers(len(LOSS_CASES)))]
        act = "linear" if from_logits else OUT_ACT.get(kind, "linear")
        c = int(rng.integers(2, 4))
        y = b.dense(o, c, act, name=f"out{j}", l2=float(rng.choice([0.0, 0.01])))
        b.spec.outputs.append(y)
        targets.append(b.target(kind, batch, y))
        losses.append((kind, from_logits, 1.0, float(rng.uniform(0.3, 1.5))))
    xs = b.inputs(batch)
    masks = {i: regularization.dropout_mask((batch, *b.shape(b.spec.nodes[i].outputs[0])),
                                            0.3, rng) for i in dropout_nodes}
    sw = rng.uniform(0.2, 2.0, batch) if rng.integers(2) else None
    return b, xs, targets, losses, sw, masks


@pytest.mark.parametrize("seed", range(24))
def test_random_graphs(seed):
    b, xs, targets, losses, sw, masks = random_graph(seed)
    check_gradients(b.spec, xs, targets, losses, sw, training=True, dropout_masks=masks)
    check_gradients(b.spec, xs, targets, losses, sw, training=False)


# --- contract details ------------------------------------------------------------------------
def test_float32_params_are_read_not_written_and_dtype_is_respected():
    b = Builder("f32")
    x = b.input(4)
    y = b.dense(b.batchnorm(b.dense(x, 3, "tanh", name="d")), 2, name="out")
    b.spec.outputs = [y]
    xs = b.inputs(3)
    ref64 = graph.predict(b.spec, xs)[0]
    for p in b.spec.params:
        p.value = p.value.astype(np.float32)
    copies = [p.value.copy() for p in b.spec.params]
    out64 = graph.predict(b.spec, xs)[0]
    assert out64.dtype == np.float64
    np.testing.assert_allclose(out64, ref64, rtol=1e-5, atol=1e-6)  # only the params rounded
    out32, _ = graph.forward(b.spec, xs, training=True, dtype=np.float32)
    assert out32[0].dtype == np.float32
    _, _, pgrads, igrads = graph.gradients(b.spec, xs, [b.target("mean_squared_error", 3, y)],
                                           [("mean_squared_error", False, 1.0, 1.0)],
                                           dtype=np.float32)
    assert all(g.dtype == np.float32 for g in pgrads if g is not None)
    assert igrads[0].dtype == np.float32
    for p, c in zip(b.spec.params, copies):
        np.testing.assert_array_equal(p.value, c)


def test_bad_inputs_and_shapes_are_refused():
    b = Builder("bad")
    x = b.input(3)
    y = b.node("dense", [x], (5,), b.dense_params(3, 4), units=4)  # the spec lies: 5, not 4
    b.spec.outputs = [y]
    with pytest.raises(ValueError, match="spec says"):
        graph.predict(b.spec, [np.zeros((2, 3))])
    with pytest.raises(ValueError, match="expected 1 input"):
        graph.predict(b.spec, [])
    with pytest.raises(ValueError, match="input tensor"):
        graph.predict(b.spec, [np.zeros((2, 4))])
    b2 = Builder("bad-op")
    x = b2.input(3)
    b2.spec.outputs = [b2.node("conv2d", [x], (3,))]
    with pytest.raises(ValueError, match="unknown op"):
        graph.predict(b2.spec, [np.zeros((1, 3))])
