"""pynn.ops on symbolic tensors, the graph ops behind them, Lambda, and mean_of_output.

One table of cases drives three checks per op:
  * forward: a tiny pynn.Model built with pynn.ops, its predict (the C++ graph, float32)
    against the same pynn.ops calls on NumPy arrays (eager, float32), batch 1 and batch > 1;
  * the NumPy twin's backward (pynn.reference.ops through pynn.reference.graph, float64)
    against central differences of sum(R * output);
  * the C++ backward (`_core.Graph.input_gradient`) against the twin's, on the same spec.

Tolerances. Forward: float32 kernels against NumPy's float32, a few ulps (rtol 1e-5) plus
atol 1e-5 for sums and products of O(1) terms. Differences in float64 with h = 1e-6 err by
about h^2 f''' + 1e-16 |f| / h (~1e-10), so rtol 1e-5 / atol 1e-7 is wide but catches a wrong
term. The C++ gradients are float32 against float64: rtol 2e-4, atol 2e-5 (O(1) values summed
over at most a few dozen terms). Inputs keep kinks (|x| at 0, clip bounds, max/min ties,
integer boundaries of one_hot) at least 0.05 away, so no difference steps over one.
"""
import zlib

import numpy as np
import pytest

import pynn
from pynn import _core, ops
from pynn import layers as L
from pynn.models.graph_spec import GraphSpec
from pynn.reference import graph as ref_graph
from pynn.reference import losses as ref_losses
from pynn.reference import ops as ref_ops


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# --- input generators: (rng, shape) -> float64 array -----------------------------------------
def normal(rng, shape):
    return rng.standard_normal(shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(rng, shape):
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 1.5, shape)


def away_from_clip(rng, shape):       # clip bounds are -0.3 and 0.4
    return rng.choice([-0.9, -0.6, -0.1, 0.1, 0.2, 0.7], shape) + rng.uniform(-0.04, 0.04, shape)


def condition(rng, shape):            # 0 is false; differences at 0 flip both ways alike
    return rng.choice([0.0, 0.0, 1.0, -2.0], shape)


def class_index(rng, shape):          # k + 0.5: truncates to k; some out of [0, 4)
    return rng.integers(-2, 6, shape) + 0.5


W45 = np.linspace(-1.0, 1.0, 20).reshape(4, 5)


class Case:
    def __init__(self, name, shapes, build, eager=None, gens=None):
        self.name, self.shapes, self.build = name, shapes, build
        self.eager = eager or build          # pynn.ops on arrays: the same code, eagerly
        self.gens = gens or [normal] * len(shapes)

    def __repr__(self):
        return self.name

    def arrays(self, rng, batch):
        return [g(rng, (batch,) + s) for g, s in zip(self.gens, self.shapes)]


def _row(a):      # (n, 4) -> (n, 1, 4): NumPy's alignment of a lower-rank sample, batch kept
    return a[:, None, ...]


CASES = [
    # unary
    *[Case(f"unary_{fn}_{s}", [s], getattr(ops, fn), gens=[g])
      for fn, g in [("negative", normal), ("square", normal), ("sqrt", positive),
                    ("exp", normal), ("log", positive), ("abs", away_from_zero),
                    ("sign", away_from_zero), ("reciprocal", away_from_zero)]
      for s in [(3, 4), (1,)]],
    Case("clip", [(2, 5)], lambda x: ops.clip(x, -0.3, 0.4), gens=[away_from_clip]),
    Case("power_exponent", [(6,)], lambda x: x ** 3),
    Case("power_half", [(6,)], lambda x: ops.power(x, 0.5), gens=[positive]),
    Case("power_zero", [(3,)], lambda x: ops.power(x, 0.0)),
    # binary, per-sample broadcasting
    *[Case(f"binary_{fn}_{sa}_{sb}", [sa, sb], getattr(ops, fn),
           eager=(lambda f: lambda a, b: f(a, _row(b)) if a.ndim == 3 and b.ndim == 2
                  else f(a, b))(getattr(ops, fn)),
           gens=[positive, normal] if fn == "power" else
           [normal, away_from_zero] if fn == "divide" else None)
      for fn in ref_ops.BINARY_FNS if fn not in ref_ops.COMPARISONS
      for sa, sb in [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 4), (4,)), ((1,), (5,))]],
    # comparisons (eagerly NumPy bools; symbolic 1.0 / 0.0; away from ties, see below)
    *[Case(f"compare_{fn}_{sa}_{sb}", [sa, sb], getattr(ops, fn),
           eager=(lambda f: lambda a, b: f(a, b).astype(np.float32))(getattr(ops, fn)))
      for fn in ref_ops.COMPARISONS for sa, sb in [((3, 4), (3, 4)), ((3, 1), (1, 4))]],
    Case("compare_scalar", [(5,)], lambda x: x > 0.25,
         eager=lambda x: (x > 0.25).astype(np.float32)),
    Case("compare_rscalar", [(5,)], lambda x: 0.25 >= x,
         eager=lambda x: (0.25 >= x).astype(np.float32)),
    # binary_scalar (x fn c and c fn x)
    Case("scalar_add", [(3, 2)], lambda x: x + 2.5),
    Case("scalar_radd", [(3, 2)], lambda x: 2.5 + x),
    Case("scalar_rsub", [(4,)], lambda x: 1.5 - x),
    Case("scalar_sub", [(4,)], lambda x: x - 1.5),
    Case("scalar_mul", [(4,)], lambda x: 3 * x),
    Case("scalar_div", [(4,)], lambda x: x / 4.0),
    Case("scalar_rdiv", [(4,)], lambda x: 3.0 / x, gens=[away_from_zero]),
    Case("scalar_max", [(5,)], lambda x: ops.maximum(x, 0.1), gens=[away_from_clip]),
    Case("scalar_rmin", [(5,)], lambda x: ops.minimum(0.1, x), gens=[away_from_clip]),
    Case("scalar_rpow", [(5,)], lambda x: 2.0 ** x),
    Case("neg_operator", [(2, 2)], lambda x: -x),
    # constants (arrays) mixed with symbolic tensors
    Case("const_multiply", [(3, 4)], lambda x: ops.multiply(x, np.arange(4.0) - 1.5)),
    Case("const_add_first", [(3, 4)], lambda x: ops.add(np.ones((3, 1)), x)),
    # reductions
    # (symbolic axis=None reduces each sample; eagerly that is axes 1..3)
    *[Case(f"reduce_{fn}_{ax}_{kd}", [(2, 3, 4)],
           (lambda f, a, k: lambda x: f(x, axis=a, keepdims=k))(getattr(ops, fn), ax, kd),
           eager=(lambda f, a, k: lambda x: f(x, axis=(1, 2, 3) if a is None else a,
                                              keepdims=k))(getattr(ops, fn), ax, kd))
      for fn in ref_ops.REDUCE_FNS
      for ax, kd in [(-1, False), (1, True), ((1, 3), False), (None, False), (2, False)]],
    Case("reduce_sum_size1", [(1, 3, 1)], lambda x: ops.sum(x, axis=(1, 3))),
    # matmul
    Case("matmul_2x2", [(3, 4), (4, 5)], ops.matmul),
    # (per sample: a vector operand is a row / a column, then loses its axis)
    Case("matmul_1x2", [(4,), (4, 5)], ops.matmul,
         eager=lambda a, b: ops.matmul(a[:, None, :], b)[:, 0]),
    Case("matmul_2x1", [(3, 4), (4,)], ops.matmul,
         eager=lambda a, b: ops.matmul(a, b[:, :, None])[..., 0]),
    Case("matmul_1x1", [(4,), (4,)], ops.matmul,
         eager=lambda a, b: ops.sum(a * b, axis=-1)),
    Case("matmul_const", [(3, 4)], lambda x: ops.matmul(x, W45)),
    Case("matmul_operator", [(2, 4)], lambda x: x @ W45, eager=lambda x: ops.matmul(x, W45)),
    # transpose (the permute op)
    Case("transpose", [(2, 3, 4)], lambda x: ops.transpose(x, (0, 3, 1, 2))),
    # where
    Case("where_same", [(3, 4), (3, 4), (3, 4)], ops.where, gens=[condition, normal, normal]),
    Case("where_broadcast", [(3, 1), (1, 4), (3, 4)], ops.where,
         gens=[condition, normal, normal]),
    Case("where_scalar", [(5,), (5,)], lambda c, x: ops.where(c, x, 0.5),
         gens=[condition, normal]),
    # one_hot, argmax (no gradient)
    Case("one_hot", [(3,)], lambda x: ops.one_hot(x, 4), gens=[class_index]),
    Case("argmax_last", [(3, 5)], lambda x: ops.argmax(x, axis=-1)),
    Case("argmax_mid_keep", [(3, 5)], lambda x: ops.argmax(x, axis=1, keepdims=True)),
    Case("argmax_flat", [(3, 5)], lambda x: ops.argmax(x),
         eager=lambda a: ops.argmax(a.reshape(a.shape[0], -1), axis=-1)),
    Case("one_hot_of_argmax", [(6,)], lambda x: ops.one_hot(ops.argmax(x, axis=-1), 6)),
    # shape ops and activations of pynn.ops over the existing graph ops
    Case("reshape", [(3, 4)], lambda x: ops.reshape(x, (-1, 2, 6))),
    Case("expand_squeeze", [(3, 1)], lambda x: ops.squeeze(ops.expand_dims(x, 1), axis=-1)),
    Case("concatenate", [(2, 3), (2, 1)], lambda a, b: ops.concatenate([a, b], axis=-1)),
    Case("softmax_axis1", [(3, 4)], lambda x: ops.softmax(x, axis=1)),
    *[Case(f"act_{fn}", [(5,)], getattr(ops, fn), gens=[away_from_zero])
      for fn in ("relu", "sigmoid", "tanh", "elu", "gelu", "softplus", "silu", "leaky_relu")],
    # compositions: a tensor fed twice, and a custom-loss-like chain
    Case("fed_twice_multiply", [(3, 2)], lambda x: ops.multiply(x, x)),
    Case("fed_twice_matmul", [(3, 3)], lambda x: ops.matmul(x, x)),
    Case("fed_three_where", [(4,)], lambda x: ops.where(x, x, x * 2.0), gens=[away_from_zero]),
    Case("two_consumers", [(3, 4)], lambda x: ops.sum(ops.square(x) - ops.exp(x) / 3.0,
                                                       axis=-1)),
    Case("mse_like", [(4,), (4,)], lambda t, p: ops.mean(ops.square(t - p), axis=-1)),
]


def _model(case):
    ins = [pynn.Input(s) for s in case.shapes]
    out = case.build(*ins)
    return pynn.Model(ins if len(ins) > 1 else ins[0], out)


def _spec(model, shapes):
    spec = GraphSpec()
    tids = [spec.add_input(s) for s in shapes]
    spec.outputs = model._emit(spec, tids)
    return spec


# --- forward: the graph against eager NumPy ---------------------------------------------------
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_matches_eager(case, batch):
    xs = [a.astype(np.float32) for a in case.arrays(_rng("fwd", case.name, batch), batch)]
    model = _model(case)
    got = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    want = np.asarray(case.eager(*xs))
    assert want.dtype in (np.float32, np.int32)
    # a per-sample scalar is (batch, 1) in the graph, (batch,) in Keras
    if got.shape != want.shape:
        assert got.shape == want.shape + (1,), (got.shape, want.shape)
        got = got.reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# --- the twin's gradients against differences ----------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_twin_gradients_match_finite_differences(case):
    from test_ref_dense import numeric_grad

    rng = _rng("fd", case.name)
    xs = case.arrays(rng, 2)
    spec = _spec(_model(case), case.shapes)
    out, cache = ref_graph.forward(spec, xs)
    R = rng.standard_normal(out[0].shape)
    _, grads = ref_graph.backward(spec, cache, [R])

    def f():
        return float((R * ref_graph.forward(spec, xs)[0][0]).sum())

    for x, g in zip(xs, grads):
        assert g.shape == x.shape
        np.testing.assert_allclose(g, numeric_grad(f, x), rtol=1e-5, atol=1e-7)


# --- the C++ backward against the twin -------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_core_gradients_match_twin(case):
    rng = _rng("core", case.name)
    xs = [a.astype(np.float32) for a in case.arrays(rng, 3)]
    spec = _spec(_model(case), case.shapes)
    out, cache = ref_graph.forward(spec, [x.astype(np.float64) for x in xs])
    seed = rng.standard_normal(out[0].shape).astype(np.float32)
    _, want = ref_graph.backward(spec, cache, [seed.astype(np.float64)])
    g = spec.to_core()
    got = g.input_gradient(xs, [seed])
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=f"input {k}")
    # forward values of the engine against the twin as well
    pred = [np.empty((3,) + spec.shapes[t], np.float32) for t in spec.outputs]
    g.predict(xs, pred)
    np.testing.assert_allclose(pred[0], out[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["binary_multiply_(3, 1)_(1, 4)", "reduce_max_(1, 3)_False",
                                  "where_broadcast", "matmul_2x2", "two_consumers",
                                  "reduce_mean_None_False"])
def test_core_results_do_not_depend_on_threads_or_batch(name):
    case = next(c for c in CASES if c.name == name)
    rng = _rng("threads", name)
    xs = [a.astype(np.float32) for a in case.arrays(rng, 7)]
    spec = _spec(_model(case), case.shapes)
    g = spec.to_core()
    seed = rng.standard_normal((7,) + spec.shapes[spec.outputs[0]]).astype(np.float32)
    before = pynn.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            pynn.set_num_threads(threads)
            out = np.empty_like(seed)
            g.predict(xs, [out])
            results.append((out, g.input_gradient(xs, [seed])))
    finally:
        pynn.set_num_threads(before)
    (o1, d1), (o2, d2) = results
    assert np.array_equal(o1, o2)
    assert all(np.array_equal(a, b) for a, b in zip(d1, d2))
    # one row alone gives the same bits as inside the batch
    one = np.empty_like(seed[2:3])
    g.predict([x[2:3] for x in xs], [one])
    assert np.array_equal(one, o1[2:3])


def test_no_gradient_ops_declare_none_and_write_zeros():
    for op in ("one_hot", "argmax", "constant"):
        assert ref_ops.OPS[op][1](None, None, np.ones((2, 3))) == ([], [])
    # in the engine their input gets exactly zero (also where's condition and sign)
    x = pynn.Input((4,))
    out = ops.one_hot(ops.argmax(x, axis=-1), 4) + ops.sign(x) + ops.where(x, 1.0, 2.0)
    spec = _spec(pynn.Model(x, out), [(4,)])
    g = spec.to_core()
    xv = _rng("zero").standard_normal((3, 4)).astype(np.float32)
    dx = g.input_gradient([xv], [np.ones((3, 4), np.float32)])[0]
    assert np.array_equal(dx, np.zeros_like(xv))


def test_comparisons_at_ties_and_nan_follow_numpy():
    # operands on a coarse grid so that ties occur; NaN compares false except not_equal
    rng = _rng("ties")
    a = rng.integers(-1, 2, (6, 4)).astype(np.float32)
    b = rng.integers(-1, 2, (6, 4)).astype(np.float32)
    a[0, 0] = np.nan
    assert (a == b).any() and (a < b).any() and (a > b).any()
    x, y = pynn.Input((4,)), pynn.Input((4,))
    fns = list(ref_ops.COMPARISONS)
    model = pynn.Model([x, y], [getattr(ops, fn)(x, y) for fn in fns])
    got = model.predict([a, b], verbose=0)
    spec = _spec(model, [(4,), (4,)])
    twin, _ = ref_graph.forward(spec, [a.astype(np.float64), b.astype(np.float64)])
    for fn, g, t in zip(fns, got, twin):
        want = getattr(np, fn)(a, b).astype(np.float32)
        assert np.array_equal(g, want), fn
        assert np.array_equal(t, want), fn
        assert np.array_equal(ops.convert_to_tensor(getattr(ops, fn)(a, b)), want), fn
    # no gradient flows through a comparison, also at ties
    g = _spec(pynn.Model([x, y], ops.sum(ops.less_equal(x, y) * x, axis=-1)),
              [(4,), (4,)]).to_core()
    da, db = g.input_gradient([np.nan_to_num(a), b], [np.ones((6, 1), np.float32)])
    assert np.array_equal(da, (np.nan_to_num(a) <= b).astype(np.float32))
    assert np.array_equal(db, np.zeros_like(b))


def test_nan_and_ties_follow_numpy_and_first_extreme():
    x = pynn.Input((4,))
    model = pynn.Model(x, [ops.max(x, axis=-1), ops.argmax(x, axis=-1), ops.maximum(x, 0.0)])
    v = np.array([[1.0, 3.0, 3.0, -1.0], [np.nan, 2.0, np.nan, 5.0]], np.float32)
    mx, am, mz = model.predict(v, verbose=0)
    assert mx.shape == am.shape == (2,)   # a value per sample: Keras's (n,)
    assert mx[0] == 3.0 and np.isnan(mx[1])
    assert list(am) == [1.0, 0.0]
    assert np.isnan(mz[1, 0]) and mz[0, 3] == 0.0
    # the gradient of max goes to the first maximal element only
    spec = _spec(pynn.Model(x, ops.max(x, axis=-1)), [(4,)])
    dx = spec.to_core().input_gradient([v[:1]], [np.ones((1, 1), np.float32)])[0]
    assert list(dx[0]) == [0.0, 1.0, 0.0, 0.0]
    _, cache = ref_graph.forward(spec, [v[:1]])
    assert list(ref_graph.backward(spec, cache, [np.ones((1, 1))])[1][0][0]) == [0, 1, 0, 0]


# --- eager semantics ----------------------------------------------------------------------
def test_eager_ops_are_float32_numpy():
    a = np.array([[1, 2], [3, 4]])
    assert ops.add(a, 1).dtype == np.float32
    np.testing.assert_array_equal(ops.add(a, 1), a + 1)
    np.testing.assert_array_equal(ops.mean(a, axis=0), [2.0, 3.0])
    assert ops.sum(a).shape == () and ops.sum(a) == 10
    assert ops.argmax(a, axis=-1).dtype == np.int32
    np.testing.assert_array_equal(ops.one_hot(np.array([0, 2, 5]), 3),
                                  [[1, 0, 0], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(ops.where(a > 2, a, 0), [[0, 0], [3, 4]])
    np.testing.assert_allclose(ops.softmax(np.zeros((2, 3)), axis=0), np.full((2, 3), 0.5))
    np.testing.assert_array_equal(ops.clip(a, 2, 3), [[2, 2], [3, 3]])
    assert ops.power(2, 3) == 8.0


# --- symbolic ops in every kind of model ---------------------------------------------------
def test_operators_with_scalars_and_tensors():
    x = pynn.Input((3,))
    y = pynn.Input((1,))
    outs = [1 + x, 1 - x, 2 * x, x / 2, 2 / (x * x + 1), -x, x ** 2, 2 ** x, x * y, x - y,
            abs(x)]
    model = pynn.Model([x, y], outs)
    xv = _rng("operators").standard_normal((4, 3)).astype(np.float32)
    yv = _rng("operators", 1).standard_normal((4, 1)).astype(np.float32)
    want = [1 + xv, 1 - xv, 2 * xv, xv / 2, 2 / (xv * xv + 1), -xv, xv ** 2, 2 ** xv, xv * yv,
            xv - yv, np.abs(xv)]
    for got, w in zip(model.predict([xv, yv], verbose=0), want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)
    # tensor-tensor arithmetic of one shape still makes the merge layers
    assert type((x + x)._history[0]).__name__ == "Add"


def test_ops_in_subclassed_and_nested_models():
    class Net(pynn.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(3)

        def call(self, x):
            h = ops.relu(self.d(x)) * 2.0 - 1.0
            return ops.concatenate([h, ops.sum(h, axis=-1, keepdims=True)], axis=-1)

    pynn.utils.set_random_seed(1)
    net = Net()
    xv = _rng("subclass").standard_normal((5, 4)).astype(np.float32)
    got = net.predict(xv, verbose=0)
    W, b = net.d.get_weights()
    h = np.maximum(xv @ W + b, 0) * 2 - 1
    np.testing.assert_allclose(got, np.concatenate([h, h.sum(-1, keepdims=True)], -1),
                               rtol=1e-5, atol=1e-5)
    # nested: an inner model made of ops, called twice from an outer one
    i = pynn.Input((4,))
    inner = pynn.Model(i, ops.tanh(i) * 0.5)
    o = pynn.Input((4,))
    outer = pynn.Model(o, inner(inner(o)) + ops.mean(o, axis=-1, keepdims=True))
    want = np.tanh(np.tanh(xv) * 0.5) * 0.5 + xv.mean(-1, keepdims=True)
    np.testing.assert_allclose(outer.predict(xv, verbose=0), want, rtol=1e-5, atol=1e-6)


def test_ops_train_inside_a_model():
    pynn.utils.set_random_seed(2)
    x = pynn.Input((3,))
    h = L.Dense(8)(x)
    y = L.Dense(1)(ops.where(h, ops.square(h), 0.0) * 0.1 + ops.tanh(h))
    model = pynn.Model(x, y)
    model.compile(optimizer="adam", loss="mse")
    xv = _rng("train").standard_normal((64, 3)).astype(np.float32)
    yv = (xv[:, :1] ** 2 - xv[:, 1:2]).astype(np.float32)
    hist = model.fit(xv, yv, epochs=8, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]


# --- Lambda ------------------------------------------------------------------------------------
def test_lambda_in_a_functional_model_trains():
    pynn.utils.set_random_seed(3)
    x = pynn.Input((4,))
    h = L.Dense(8)(x)
    h = L.Lambda(lambda t: ops.tanh(t) + 0.1 * ops.square(t))(h)
    y = L.Dense(1)(h)
    model = pynn.Model(x, y)
    model.compile(optimizer="adam", loss="mse")
    xv = _rng("lambda").standard_normal((64, 4)).astype(np.float32)
    yv = (xv.sum(1, keepdims=True) ** 2 * 0.1).astype(np.float32)
    hist = model.fit(xv, yv, epochs=10, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < 0.9 * hist.history["loss"][0]


def test_lambda_traces_once_per_shape_and_runs_eagerly():
    calls = []

    def fn(t, scale):
        calls.append(1)
        return ops.square(t) * scale

    lam = L.Lambda(fn, arguments={"scale": 3.0})
    a = pynn.Input((2,))
    y1 = lam(a)
    y2 = lam(y1)
    model = pynn.Model(a, y2)
    model.predict(np.ones((2, 2), np.float32), verbose=0)
    model.predict(np.ones((3, 2), np.float32), verbose=0)
    assert len(calls) == 1           # one trace for shape (2,), reused by every emission
    b = pynn.Input((5,))
    lam(b)
    assert len(calls) == 2           # a new shape, a new trace
    v = np.full((1, 2), 2.0, np.float32)
    np.testing.assert_array_equal(lam(v), 12.0 * np.ones((1, 2)))   # eager: the function
    np.testing.assert_allclose(model.predict(v, verbose=0), 3 * (3 * 4.0) ** 2)


def test_lambda_with_several_inputs_and_outputs():
    a, b = pynn.Input((3,)), pynn.Input((3,))
    lam = L.Lambda(lambda ts: [ts[0] * ts[1], ops.max(ts[0] - ts[1], axis=-1)],
                   output_shape=None)
    p, q = lam([a, b])
    assert p.shape == (None, 3) and q.shape == (None, 1)
    model = pynn.Model([a, b], [p, q])
    av, bv = (_rng("multi", k).standard_normal((2, 3)).astype(np.float32) for k in range(2))
    gp, gq = model.predict([av, bv], verbose=0)
    np.testing.assert_allclose(gp, av * bv, rtol=1e-6)
    np.testing.assert_allclose(gq[:, 0], (av - bv).max(-1), rtol=1e-6)


def test_lambda_config_and_loading_is_refused():
    lam = L.Lambda(lambda t: t * 2.0, name="double")
    assert lam.get_config() == {"name": "double"}
    assert "Lambda" in L.__all__ and "Lambda" not in L._CLASSES
    with pytest.raises(ValueError, match="Lambda"):
        L.deserialize({"class_name": "Lambda", "config": {"name": "double"}})


def test_lambda_bad_functions():
    x = pynn.Input((3,))
    with pytest.raises(TypeError, match="lambda.*symbolic tensors"):
        L.Lambda(lambda t: 3.0)(x)
    with pytest.raises(ValueError, match="output_shape"):
        L.Lambda(lambda t: ops.sum(t, axis=-1, keepdims=True), output_shape=(3,))(x)
    L.Lambda(lambda t: ops.sum(t, axis=-1), output_shape=(None,))(x)   # (None,) is (None, 1)
    other = pynn.Input((3,))
    with pytest.raises(ValueError, match="depend only on its input"):
        L.Lambda(lambda t: t + other)(x)
    with pytest.raises(ValueError, match=r"lambda.*add.*\(None, 3\).*\(None, 4\)"):
        L.Lambda(lambda ts: ops.add(ts[0], ts[1]))([x, pynn.Input((4,))])


# --- bad input ---------------------------------------------------------------------------------
def test_bad_symbolic_calls_name_the_op_and_the_shapes():
    x = pynn.Input((3, 4))
    y = pynn.Input((5,))
    with pytest.raises(ValueError, match=r"add.*\(None, 3, 4\).*\(None, 5\)"):
        ops.add(x, y)
    with pytest.raises(ValueError, match=r"where.*\(None, 3, 4\).*\(None, 5\)"):
        ops.where(x, x, y)
    with pytest.raises(ValueError, match=r"matmul.*\(None, 3, 4\).*\(None, 5\)"):
        ops.matmul(x, y)
    with pytest.raises(ValueError, match=r"ops.sum: axis 3 is out of range.*\(None, 3, 4\)"):
        ops.sum(x, axis=3)
    with pytest.raises(ValueError, match=r"ops.mean: axis 0 is the batch axis"):
        ops.mean(x, axis=0)
    with pytest.raises(ValueError, match=r"ops.argmax: axis -3"):
        ops.argmax(x, axis=-3)
    with pytest.raises(ValueError, match="batch axis"):
        ops.transpose(x)
    with pytest.raises(ValueError, match="moves the batch axis"):
        ops.transpose(x, (1, 0, 2))
    with pytest.raises(ValueError, match=r"cannot reshape.*\(None, 3, 4\)"):
        ops.reshape(x, (-1, 5))
    with pytest.raises(ValueError, match=r"concatenate.*\(None, 3, 4\).*\(None, 5\)"):
        ops.concatenate([x, y], axis=-1)
    with pytest.raises(ValueError, match=r"constant of shape \(2, 3, 4\)"):
        ops.add(x, np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="class axis must be the last"):
        ops.one_hot(y, 3, axis=0)


def test_core_ops_refuse_bad_attributes_naming_the_node():
    def graph(shapes):
        g = _core.Graph()
        return g, [g.add_input(list(s)) for s in shapes]

    g, (a, b) = graph([(3, 4), (5,)])
    with pytest.raises(ValueError, match=r"node 'bad'.*\(3, 4\).*\(5,\).*do not broadcast"):
        g.add_node("binary", [a, b], [], {"fn": "add"}, "bad")
    with pytest.raises(ValueError, match=r"node 'bad'.*unknown fn 'frobnicate'"):
        g.add_node("binary", [a, a], [], {"fn": "frobnicate"}, "bad")
    with pytest.raises(ValueError, match=r"node 'bad'.*axis 2 is out of range.*\(3, 4\)"):
        g.add_node("reduce", [a], [], {"fn": "sum", "axes": [2]}, "bad")
    with pytest.raises(ValueError, match=r"node 'bad'.*given twice"):
        g.add_node("reduce", [a], [], {"fn": "sum", "axes": [1, -1]}, "bad")
    with pytest.raises(ValueError, match=r"node 'bad'.*\(3, 4\).*\(5,\).*matrix product"):
        g.add_node("matmul", [a, b], [], {}, "bad")
    with pytest.raises(ValueError, match=r"node 'bad'.*fn 'clip' needs"):
        g.add_node("unary", [a], [], {"fn": "clip", "min": 0.0}, "bad")
    with pytest.raises(ValueError, match=r"node 'bad'.*value has 2 numbers"):
        g.add_node("constant", [a], [], {"value": [1.0, 2.0], "shape": [3]}, "bad")
    with pytest.raises(ValueError, match=r"node 'bad'.*num_classes must be positive"):
        g.add_node("one_hot", [a], [], {"num_classes": 0}, "bad")
    with pytest.raises(ValueError, match=r"node 'bad'.*unknown attribute 'axis'"):
        g.add_node("unary", [a], [], {"fn": "exp", "axis": 1}, "bad")


# --- the loss a traced custom loss ends in -------------------------------------------------
def test_mean_of_output_twin():
    from test_ref_dense import numeric_grad

    rng = _rng("mean_of_output")
    pred = rng.standard_normal((5, 3))
    w = rng.uniform(0.2, 2.0, 5)
    value, grad = ref_losses.value_and_grad("mean_of_output", pred, None, w)
    assert value == pytest.approx(float((w * pred.mean(1)).sum() / 5), rel=1e-12)
    np.testing.assert_allclose(grad, np.broadcast_to((w / (5 * 3))[:, None], (5, 3)), rtol=1e-12)
    num = numeric_grad(lambda: ref_losses.value_and_grad("mean_of_output", pred, None, w)[0], pred)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)
    assert "mean_of_output" not in ref_losses.NAMES   # not a compile() name
    # in the graph executor, on a traced custom loss: mean over the batch of the per-sample mse
    t, p = pynn.Input((4,)), pynn.Input((4,))
    spec = _spec(pynn.Model([t, p], ops.mean(ops.square(t - p), axis=-1)), [(4,), (4,)])
    tv, pv = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    total, _, _, (dt, dp) = ref_graph.gradients(spec, [tv, pv], [np.zeros((6, 1))],
                                                [("mean_of_output", False, None, 1.0)])
    assert total == pytest.approx(ref_losses.value_and_grad("mean_squared_error", pv, tv)[0])
    np.testing.assert_allclose(dp, ref_losses.value_and_grad("mean_squared_error", pv, tv)[1])
    np.testing.assert_allclose(dt, -dp)


def test_mean_of_output_core():
    assert "mean_of_output" in _core.loss_names()
    rng = _rng("mean_of_output_core")
    pred = rng.standard_normal((5, 3)).astype(np.float32)
    w = rng.uniform(0.2, 2.0, 5).astype(np.float32)
    value, grad = _core.loss_value_grad("mean_of_output", pred, np.zeros_like(pred), w)
    want_v, want_g = ref_losses.value_and_grad("mean_of_output", pred.astype(np.float64), None, w)
    assert value == pytest.approx(want_v, rel=1e-6)
    np.testing.assert_allclose(grad, want_g, rtol=1e-6)


# --- saving models that use pynn.ops ---------------------------------------------------------
def test_models_with_ops_round_trip_through_save(tmp_path):
    x = pynn.Input((4,))
    h = L.Dense(3)(x)
    out = ops.tanh(h) * 2.0 + ops.mean(h, axis=-1, keepdims=True) - np.arange(3.0)
    model = pynn.Model(x, [out, ops.max(h, axis=-1), ops.matmul(h, W45[:3, :2]),
                           ops.where(ops.greater(h, 0.0), h, 0.5 * h)])
    path = tmp_path / "ops.safetensors"
    model.save(path)
    loaded = pynn.saving.load_model(path)
    v = _rng("save").standard_normal((5, 4)).astype(np.float32)
    for a, b in zip(model.predict(v, verbose=0), loaded.predict(v, verbose=0)):
        assert np.array_equal(a, b)


def test_op_layer_configs_are_checked():
    from pynn.layers.ops_layer import OpLayer

    good = {"name": "t", "op": "unary", "attrs": {"fn": "exp"}, "label": "exp",
            "rule": "same_shape", "operands": [0]}
    assert isinstance(OpLayer.from_config(good), OpLayer)
    for bad, match in [({"rule": "os.system"}, "unknown shape rule"),
                       ({"op": 3}, "'op' must be a string"),
                       ({"operands": [{"shape": [2], "value": [1.0]}]}, "shape and that many"),
                       ({"operands": ["x"]}, "invalid operand")]:
        with pytest.raises(ValueError, match=match):
            OpLayer.from_config({**good, **bad})


def test_mean_of_output_in_the_graph_engine():
    # A traced custom loss (per-sample mse written with pynn.ops) ends in mean_of_output: the
    # engine takes it in set_losses, reads no targets (None is fine), reports the batch mean and
    # trains through it.
    rng = _rng("mean_of_output_graph")
    t, x = pynn.Input((4,)), pynn.Input((3,))
    dense = L.Dense(4, use_bias=False)
    model = pynn.Model([t, x], ops.mean(ops.square(t - dense(x)), axis=-1))
    spec = _spec(model, [(4,), (3,)])
    g = spec.to_core([("mean_of_output", False, None, 1.0)])
    g.set_optimizer("sgd", {"learning_rate": 0.0})
    tv = rng.standard_normal((6, 4)).astype(np.float32)
    xv = rng.standard_normal((6, 3)).astype(np.float32)
    kernel = spec.params[0].value.astype(np.float64)
    pv = xv.astype(np.float64) @ kernel
    want, dp = ref_losses.value_and_grad("mean_squared_error", pv, tv.astype(np.float64))
    total, per, _, _ = g.test_step([tv, xv], [None])
    assert total == pytest.approx(want, rel=1e-5) and per[0] == pytest.approx(want, rel=1e-5)
    assert g.train_step([tv, xv], [None])[0] == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(g.get_grad(0), xv.T @ dp, rtol=1e-4, atol=1e-6)
    # rows picked by idx, with sample weights: still no target read
    idx = np.array([4, 0, 2], np.int64)
    w = rng.uniform(0.5, 2.0, 6).astype(np.float32)
    sub = ref_losses.value_and_grad("mean_squared_error", pv[idx], tv[idx].astype(np.float64),
                                    w[idx].astype(np.float64))[0]
    assert g.test_step([tv, xv], [None], [w], idx)[0] == pytest.approx(sub, rel=1e-5)


def test_mean_of_output_is_not_a_compile_name():
    assert "mean_of_output" in [d["name"] for d in _core.loss_descriptors() if d["internal"]]
    with pytest.raises(ValueError, match="unknown name 'mean_of_output'"):
        pynn.losses.get("mean_of_output")
    model = pynn.Sequential([L.Input((3,)), L.Dense(1)])
    with pytest.raises(ValueError, match="mean_of_output"):
        model.compile("sgd", "mean_of_output")
    # the target is not read: the core needs none
    pred = np.arange(6, dtype=np.float32).reshape(2, 3)
    value, grad = _core.loss_value_grad("mean_of_output", pred)
    assert value == pytest.approx(2.5) and np.all(grad == np.float32(1 / 6))
